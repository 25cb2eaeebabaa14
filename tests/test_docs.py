"""The repository explains itself: the README speaks to users in about 300 lines with a
table of contents and links to docs/; docs/api.md documents exactly the routes of the
route table and of the OpenAPI document; every link resolves; every test the docs cite
exists; every setting and every command is documented."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import todo_wsgi
import todo_wsgi_cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = (
    "api.md",
    "walkthrough.sh",
    "performance.md",
    "security.md",
    "deployment.md",
    "operations.md",
    "testing.md",
    "architecture.md",
)
# Routes that are not part of the HTTP API and so have no section in docs/api.md
# (say, the files of a browser client). Add to it only with a reason.
NOT_API: set[tuple[str, str]] = {
    # The browser client's page and files (docs/web-client.md describes them): not JSON,
    # not in the OpenAPI document; "" is the mount prefix without its slash (a 308 to "/").
    ("GET", ""),
    ("GET", "/"),
    ("GET", "/client.js"),
    ("GET", "/client.css"),
}
# Links to pages that arrive with another branch's work.
ARRIVING: set[str] = set()


def headings(text: str) -> list[str]:
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.findall(r"^#{2,3} (.+)$", outside_code, flags=re.MULTILINE)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_short_enough_to_read() -> None:
    assert len(README.read_text().splitlines()) <= 310


def test_the_readme_has_a_table_of_contents_naming_every_section() -> None:
    text = README.read_text()
    contents = re.search(r"^## Contents\n\n((?:- \[.*\]\(#.*\)\n)+)", text, flags=re.MULTILINE)
    assert contents, "no '## Contents' list of links"
    listed = re.findall(r"\(#([^)]+)\)", contents[1])
    sections = [anchor(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE) if h != "Contents"]
    assert listed == sections


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_speak_to_users_not_of_the_projects_history(page: Path) -> None:
    text = page.read_text()
    assert "../shared" not in text and "API.md" not in text  # nothing outside the repository
    assert not re.search(r"\bissues? #?[0-9]", text, flags=re.IGNORECASE), "an issue number"
    assert not re.search(r"\bthe issue\b|\bfirst cut\b", text, flags=re.IGNORECASE)


@pytest.mark.parametrize("page", [*PAGES, ROOT / "docs" / "walkthrough.sh"], ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        resolved = (page.parent / target).resolve()
        if str(resolved.relative_to(ROOT)) in ARRIVING:
            continue
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"


def test_every_in_page_anchor_resolves() -> None:
    for page in PAGES:
        text = page.read_text()
        anchors = {anchor(h) for h in headings(text)} | {"contents"}
        for target in re.findall(r"\]\(#([^)]+)\)", text):
            assert target in anchors, f"{page.name}: #{target}"


def test_the_readme_links_every_page_of_docs() -> None:
    text = README.read_text()
    for name in DOCS:
        assert f"](docs/{name})" in text, name
        assert (ROOT / "docs" / name).exists(), name


def test_the_readme_configuration_table_names_every_setting() -> None:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| `(TODO_\w+)` \| .+ \|$", section, flags=re.MULTILINE)}
    assert set(rows) == {field.name for field in dataclasses.fields(todo_wsgi.Settings)}


@pytest.mark.parametrize("page", ["README.md", "docs/operations.md"])
def test_every_operator_command_is_documented(page: str) -> None:
    text = (ROOT / page).read_text()
    for command in todo_wsgi_cli.COMMANDS:
        assert re.search(rf"^\| (?:`[^`]*` / )*`{command}[ `]", text, flags=re.MULTILINE), command


def route_path(pattern: str) -> str:
    """A route pattern as docs/api.md and the OpenAPI document write it: ``{name}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern)


def test_docs_api_documents_exactly_the_routes_of_the_route_table_and_the_openapi_document() -> None:
    routes = {(method, route_path(pattern)) for method, pattern, _ in todo_wsgi.ROUTES}
    document = json.loads(todo_wsgi.OPENAPI_PATH.read_text(encoding="utf-8"))
    published = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }
    documented = {
        (m[1], m[2]) for m in re.finditer(r"^### `([A-Z]+) (/\S*)`$", (ROOT / "docs" / "api.md").read_text(), re.M)
    }
    assert not NOT_API & documented
    assert documented == (routes | published) - NOT_API


def test_every_test_the_docs_cite_exists() -> None:
    cited = set()
    for page in PAGES:
        cited |= set(re.findall(r"tests/(test_\w+)\.py::(test_\w+)", page.read_text()))
    assert cited
    for module, name in cited:
        source = (ROOT / "tests" / f"{module}.py").read_text()
        assert re.search(rf"^def {name}\(", source, flags=re.MULTILINE), f"tests/{module}.py::{name}"


def test_the_module_table_counts_each_files_lines_as_wc_does() -> None:
    table = (ROOT / "docs" / "architecture.md").read_text()
    counted = dict(re.findall(r"^\| `([\w.]+\.py)` \| (\d+) \|", table, flags=re.MULTILINE))
    assert set(counted) == {"todo_wsgi.py", "router.py", "store.py", "store_pg.py", "todo_wsgi_cli.py"}
    for name, lines in counted.items():
        assert int(lines) == len((ROOT / name).read_text().splitlines()), name
    app_lines = re.search(r"^\| the app module, lines \| .*? \| (\d+) ", table, flags=re.MULTILINE)
    assert app_lines is not None and app_lines[1] == counted["todo_wsgi.py"]
