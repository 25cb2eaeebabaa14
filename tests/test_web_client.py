"""The browser client's files as the app serves them (API.md, "Browser client"; issue 18).

What the files do in a browser is tests/test_browser.py's; here: the serving
rules (headers, validators, the switch, the mount prefix) and what can be read
off the files themselves (no inline script, nothing from another origin).
"""

from __future__ import annotations

import importlib.resources
import re
from html.parser import HTMLParser
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi

CSP = "default-src 'self'; frame-ancestors 'none'"
FILES = {"/": "index.html", "/client.js": "client.js", "/client.css": "client.css"}
TYPES = {
    "/": "text/html; charset=utf-8",
    "/client.js": "text/javascript; charset=utf-8",
    "/client.css": "text/css; charset=utf-8",
}


def package_file(name: str) -> bytes:
    return importlib.resources.files("todo_wsgi_web").joinpath(name).read_bytes()


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def page_tags() -> Tags:
    parser = Tags()
    parser.feed(package_file("index.html").decode("utf-8"))
    return parser


# -- the files as served ----------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_each_client_file_is_served_as_it_is_in_the_package_with_its_type(client, path):
    response = client.get(path, status=200)
    assert response.body == package_file(FILES[path])
    assert response.headers.getall("Content-Type") == [TYPES[path]]
    assert response.headers["Content-Length"] == str(len(response.body))


@pytest.mark.parametrize("path", FILES)
def test_each_client_file_carries_the_csp_nosniff_and_no_cache(client, path):
    response = client.get(path, status=200)
    assert response.headers["Content-Security-Policy"] == CSP
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-cache"


def test_client_files_need_no_token(client):
    for path in FILES:
        client.get(path, status=200)


@pytest.mark.parametrize("path", FILES)
def test_each_client_file_has_a_strong_etag_that_answers_304(client, path):
    etag = client.get(path, status=200).headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get(path, headers={"If-None-Match": if_none_match}, status=304)
        assert response.body == b""
        assert response.headers["ETag"] == etag
        assert "Content-Type" not in response.headers


def test_another_etag_gets_the_whole_file(client):
    response = client.get("/client.js", headers={"If-None-Match": '"0123"'}, status=200)
    assert response.body == package_file("client.js")


def test_etags_differ_between_files_and_stay_across_apps(make_app):
    first, second = TestApp(validator(make_app())), TestApp(validator(make_app()))
    etags = [first.get(path, status=200).headers["ETag"] for path in FILES]
    assert len(set(etags)) == len(FILES)
    assert etags == [second.get(path, status=200).headers["ETag"] for path in FILES]


def test_head_on_the_page_answers_its_headers_without_content(client):
    response = client.head("/", status=200)
    assert response.body == b""
    assert response.headers["Content-Length"] == str(len(package_file("index.html")))
    assert response.headers["Content-Security-Policy"] == CSP


def test_other_methods_on_the_client_files_answer_405_in_json(client):
    response = client.post("/", status=405)
    assert response.json == {"message": "Method not allowed"}
    assert response.headers["Allow"] == "GET, HEAD"


def test_api_answers_keep_one_json_content_type_and_no_client_headers(client, user_headers):
    for path, headers in (("/healthz", {}), ("/todo", user_headers), ("/nowhere", {}), ("/openapi.json", {})):
        response = client.get(path, headers=headers, status="*")
        assert response.headers.getall("Content-Type") == ["application/json"], path
        assert "Content-Security-Policy" not in response.headers, path
        assert "ETag" not in response.headers or path != "/healthz"


# -- the switch: web_client / TODO_WEB_CLIENT ---------------------------------------------


def test_web_client_is_on_by_default():
    assert todo_wsgi.Settings.resolve(environ={}).web_client is True


def test_web_client_false_answers_404_on_the_page_and_its_files(make_app):
    client = TestApp(validator(make_app(web_client=False)))
    for path in FILES:
        assert client.get(path, status=404).json == {"message": "Not found"}
    mounted = TestApp(validator(make_app(web_client=False)), extra_environ={"SCRIPT_NAME": "/app"})
    assert mounted.get("", status=404).json == {"message": "Not found"}
    client.get("/healthz", status=200)


@pytest.mark.parametrize("value", ["off", "OFF", " off "])
def test_TODO_WEB_CLIENT_off_answers_404_on_the_page_and_its_files(make_app, monkeypatch, value):
    monkeypatch.setenv("TODO_WEB_CLIENT", value)
    client = TestApp(validator(make_app()))
    for path in FILES:
        assert client.get(path, status=404).json == {"message": "Not found"}


def test_TODO_WEB_CLIENT_on_serves_and_the_argument_wins_over_it(make_app, monkeypatch):
    monkeypatch.setenv("TODO_WEB_CLIENT", "on")
    TestApp(validator(make_app())).get("/", status=200)
    monkeypatch.setenv("TODO_WEB_CLIENT", "off")
    TestApp(validator(make_app(web_client=True))).get("/", status=200)


def test_TODO_WEB_CLIENT_other_than_on_or_off_is_refused_at_start():
    with pytest.raises(ValueError, match="web_client .TODO_WEB_CLIENT. must be on or off"):
        todo_wsgi.Settings.resolve(environ={"TODO_WEB_CLIENT": "maybe"})


# -- under a mount prefix -------------------------------------------------------------------


def test_the_prefix_without_its_slash_redirects_308_to_the_prefix_with_one(app):
    mounted = TestApp(validator(app), extra_environ={"SCRIPT_NAME": "/app"})
    response = mounted.get("", status=308)
    assert response.headers["Location"] == "/app/"
    mounted.head("", status=308)


def test_the_page_is_served_below_the_prefix(app):
    mounted = TestApp(validator(app), extra_environ={"SCRIPT_NAME": "/app"})
    assert mounted.get("/", status=200).body == package_file("index.html")
    mounted.get("/client.js", status=200)


def test_an_empty_path_without_a_prefix_is_the_root_page(app):
    environ = {"SCRIPT_NAME": "", "PATH_INFO": ""}
    assert TestApp(validator(app), extra_environ=environ).get("", status=200).body == package_file("index.html")


# -- what the files hold ------------------------------------------------------------------


def test_the_page_has_no_inline_script_style_or_event_handler():
    parser = page_tags()
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert parser.script_text == []
    for tag, attrs in parser.tags:
        assert tag != "style", "an inline <style> element"
        assert "style" not in attrs, (tag, attrs)
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert not str(attrs.get("href", "")).lower().startswith("javascript:"), (tag, attrs)


def test_the_page_loads_its_files_by_relative_urls():
    parser = page_tags()
    urls = [attrs.get("src") or attrs.get("href") for tag, attrs in parser.tags if tag in ("script", "link")]
    # "#": the icon is the page itself, so the browser asks for no /favicon.ico (a 404 in its console).
    assert sorted(str(url) for url in urls) == ["#", "client.css", "client.js"]


@pytest.mark.parametrize("name", FILES.values())
def test_no_client_file_names_another_origin(name):
    text = package_file(name).decode("utf-8")
    assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]", text, re.IGNORECASE), name
    assert "@import" not in text and "url(" not in text


def test_the_client_never_sets_markup_from_data():
    source = package_file("client.js").decode("utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink


def test_the_client_keeps_the_access_token_out_of_storage_and_sends_no_cookies():
    source = package_file("client.js").decode("utf-8")
    assert "localStorage" not in source
    assert re.findall(r"sessionStorage\.setItem\((\w+)", source) == ["REFRESH_KEY"]
    assert 'credentials: "omit"' in source


def test_the_client_calls_the_api_by_relative_paths_only():
    source = package_file("client.js").decode("utf-8")
    paths = re.findall(r'(?:api|send)\("[A-Z]+", [`"]([^`"]*)[`"]', source)
    assert paths and all(not path.startswith("/") for path in paths), paths


def test_the_client_files_together_are_about_600_lines_or_fewer():
    lines = sum(package_file(name).count(b"\n") for name in FILES.values())
    assert lines <= 600, lines
