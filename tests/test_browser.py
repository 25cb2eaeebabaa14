"""The browser client in a real browser: a person's flows (API.md, "Browser client"; issue 18).

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``), driven by
selenium, against a live waitress server (tests/live.py) of a fresh app each
test. Elements are found the way a person (or a screen reader) finds them:
by label text and accessible name, never by a CSS class. Without Chromium
the module is skipped, and the summary says how to enable it (conftest.py).

SQLite only: what is under test is the client, and the store behaves alike on
both backends (the rest of the suite checks that).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import todo_wsgi
from tests.conftest import ADMIN_PASSWORD, BROWSER_SKIPPED, USER_PASSWORD, add_account, store_caller
from tests.live import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOW_TO_ENABLE = "apt-get install chromium chromium-driver"

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"{BROWSER_SKIPPED}: chromium or chromedriver not found ({HOW_TO_ENABLE})", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (after the skip: only needed when Chromium is here)
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.sqlite_only

HOSTILE = "<img src=x onerror=alert(1)>"


# -- the browser and the server ---------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module; each test has its own server, so its own origin."""
    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium-manager phones home otherwise
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The module's Chromium at a desktop size, its console log emptied."""
    chromium.set_window_size(1280, 800)
    chromium.get_log("browser")
    yield chromium
    try:
        chromium.switch_to.alert.dismiss()
    except NoAlertPresentException:
        pass


class Site:
    """A live server of a fresh app, its accounts, and requests to it outside the browser."""

    def __init__(self, app: todo_wsgi.TodoApp, server: LiveServer, prefix: str = "") -> None:
        self.app, self.server = app, server
        self.url = server.url + prefix
        self.admin = add_account(app, "admin", ADMIN_PASSWORD, admin=True)
        self.alice = add_account(app, "alice", USER_PASSWORD)

    def add_todos(self, account: dict[str, Any], *texts: str) -> list[dict[str, Any]]:
        owner = store_caller(self.app, account["name"])
        with self.app.db.connection() as conn:
            return [self.app.store.create_todo(conn, owner, text, 10000) for text in texts]

    def todos(self, account: dict[str, Any]) -> list[dict[str, Any]]:
        with self.app.db.connection() as conn:
            account_id = self.app.store.get_user(conn, account["public_id"])["id"]
            rows = conn.execute("SELECT id, text, complete FROM todos WHERE owner_id = ? ORDER BY id", (account_id,))
            return [{"id": i, "text": t, "complete": bool(c)} for i, t, c in rows]

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        connection = self.server.connect()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, json.loads(data) if data else None


@pytest.fixture
def site(make_app: Callable[..., todo_wsgi.TodoApp]) -> Iterator[Site]:
    app = make_app(clock=time.time)
    server = LiveServer(app)
    try:
        yield Site(app, server)
    finally:
        server.close()


# -- finding things as a person does ---------------------------------------------------------


def wait(browser: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], what: str) -> Any:
    try:
        return WebDriverWait(browser, 10).until(condition)
    except TimeoutException:
        raise AssertionError(f"waited 10 s for {what}; the message says: {message(browser)!r}") from None


def field(browser: webdriver.Chrome, label: str) -> WebElement:
    """The visible field whose accessible name (its label) is ``label``."""
    return named(browser, "input", label)


def named(browser: webdriver.Chrome, css: str, name: str) -> WebElement:
    """The visible element matching ``css`` whose accessible name is ``name``, once there is one."""

    def find(driver: webdriver.Chrome) -> WebElement | None:
        try:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if element.is_displayed() and element.accessible_name == name:
                    return element
        except StaleElementReferenceException:  # redrawn meanwhile: look again
            pass
        return None

    return wait(browser, find, f"{css} named {name!r}")  # type: ignore[no-any-return]


def gone(browser: webdriver.Chrome, css: str, name: str) -> None:
    wait(browser, lambda d: not any(e.accessible_name == name for e in d.find_elements(By.CSS_SELECTOR, css)),
         f"{css} named {name!r} to go")  # fmt: skip


def press(browser: webdriver.Chrome, name: str) -> None:
    named(browser, "button", name).click()


def message(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "message").text)


def says(browser: webdriver.Chrome, text: str) -> None:
    wait(browser, lambda d: text in message(d), f"the message {text!r}")


def texts(browser: webdriver.Chrome) -> list[str] | None:
    """The to-dos shown, by their checkboxes' accessible names (None while the list is redrawn)."""
    try:
        return [b.accessible_name for b in browser.find_elements(By.CSS_SELECTOR, "#todo-list input[type=checkbox]")]
    except StaleElementReferenceException:
        return None


def shows(browser: webdriver.Chrome, expected: list[str]) -> None:
    wait(browser, lambda d: texts(d) == expected, f"the to-dos {expected}")


def sign_in(browser: webdriver.Chrome, site: Site, name: str = "alice", password: str = USER_PASSWORD) -> None:
    browser.get(site.url + "/")
    field(browser, "Name").send_keys(name)
    field(browser, "Password").send_keys(password)
    press(browser, "Sign in")
    who = f"Signed in as {name}" + " (admin)" * (name == "admin")
    wait(browser, lambda d: d.find_element(By.ID, "who").text == who, f"{name} signed in")


def severe_console_lines(browser: webdriver.Chrome) -> list[dict[str, Any]]:
    return [line for line in browser.get_log("browser") if line["level"] == "SEVERE"]


def access_token(browser: webdriver.Chrome) -> str:
    """The access token the page holds in memory (a test may look; the page stores it nowhere)."""
    return str(browser.execute_script("return state.access"))


def refresh_token(browser: webdriver.Chrome) -> str | None:
    return browser.execute_script("return sessionStorage.getItem('todo-wsgi.refresh_token')")  # type: ignore[no-any-return]


# -- signing in, and the to-dos -------------------------------------------------------------


def test_a_person_signs_in_with_labelled_fields_and_sees_their_todos(browser, site):
    site.add_todos(site.alice, "buy milk", "call mum")
    site.add_todos(site.admin, "admin's own")
    browser.get(site.url + "/")
    assert field(browser, "Name").get_attribute("autocomplete") == "username"
    assert field(browser, "Password").get_attribute("autocomplete") == "current-password"
    sign_in(browser, site)
    shows(browser, ["buy milk", "call mum"])
    assert browser.find_element(By.ID, "accounts").is_displayed() is False
    assert severe_console_lines(browser) == []


def test_a_wrong_password_is_said_in_words_and_keeps_the_form(browser, site):
    browser.get(site.url + "/")
    field(browser, "Name").send_keys("alice")
    field(browser, "Password").send_keys("not the password")
    press(browser, "Sign in")
    says(browser, "Could not verify")
    assert field(browser, "Name").is_displayed()


def test_enter_in_the_field_labelled_new_todo_adds_it(browser, site):
    sign_in(browser, site)
    field(browser, "New to-do").send_keys("water the plants", Keys.ENTER)
    shows(browser, ["water the plants"])
    assert [todo["text"] for todo in site.todos(site.alice)] == ["water the plants"]
    assert field(browser, "New to-do").get_attribute("value") == ""
    assert severe_console_lines(browser) == []


def test_a_todo_text_is_edited(browser, site):
    site.add_todos(site.alice, "buy milk")
    sign_in(browser, site)
    press(browser, "Edit: buy milk")
    edit = field(browser, "New text")
    edit.clear()
    edit.send_keys("buy oat milk", Keys.ENTER)
    shows(browser, ["buy oat milk"])
    assert [todo["text"] for todo in site.todos(site.alice)] == ["buy oat milk"]
    assert severe_console_lines(browser) == []


def test_escape_cancels_an_edit(browser, site):
    site.add_todos(site.alice, "buy milk")
    sign_in(browser, site)
    press(browser, "Edit: buy milk")
    field(browser, "New text").send_keys(" and bread", Keys.ESCAPE)
    gone(browser, "input", "New text")
    assert [todo["text"] for todo in site.todos(site.alice)] == ["buy milk"]


def test_a_todo_is_completed_and_uncompleted_with_the_checkbox_named_by_its_text(browser, site):
    site.add_todos(site.alice, "buy milk", "call mum")
    sign_in(browser, site)
    named(browser, "input[type=checkbox]", "call mum").click()
    wait(browser, lambda d: [t["complete"] for t in site.todos(site.alice)] == [False, True], "call mum complete")
    assert named(browser, "input[type=checkbox]", "call mum").is_selected()
    named(browser, "input[type=checkbox]", "call mum").click()
    wait(browser, lambda d: [t["complete"] for t in site.todos(site.alice)] == [False, False], "call mum not complete")
    assert severe_console_lines(browser) == []


def test_a_todo_is_deleted(browser, site):
    site.add_todos(site.alice, "buy milk", "call mum")
    sign_in(browser, site)
    press(browser, "Delete: buy milk")
    shows(browser, ["call mum"])
    says(browser, "Deleted “buy milk”.")
    assert [todo["text"] for todo in site.todos(site.alice)] == ["call mum"]
    assert severe_console_lines(browser) == []


def test_a_long_list_is_paged_forward_and_back(browser, site):
    site.add_todos(site.alice, *[f"to-do {n}" for n in range(1, 46)])
    sign_in(browser, site)
    shows(browser, [f"to-do {n}" for n in range(1, 21)])
    assert not named(browser, "button", "Previous page").is_enabled()
    press(browser, "Next page")
    shows(browser, [f"to-do {n}" for n in range(21, 41)])
    press(browser, "Next page")
    shows(browser, [f"to-do {n}" for n in range(41, 46)])
    assert not named(browser, "button", "Next page").is_enabled()
    press(browser, "Previous page")
    shows(browser, [f"to-do {n}" for n in range(21, 41)])
    assert severe_console_lines(browser) == []


def test_hostile_text_is_shown_as_text_and_never_as_markup(browser, site):
    site.add_todos(site.alice, HOSTILE)
    sign_in(browser, site)
    field(browser, "New to-do").send_keys(HOSTILE + " typed", Keys.ENTER)
    shows(browser, [HOSTILE, HOSTILE + " typed"])
    says(browser, f"Added “{HOSTILE} typed”.")
    assert browser.find_elements(By.TAG_NAME, "img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # the property raises when no alert is open
    assert severe_console_lines(browser) == []


# -- the session ----------------------------------------------------------------------------


def test_sign_out_returns_to_the_sign_in_form_and_ends_the_token(browser, site):
    sign_in(browser, site)
    token = access_token(browser)
    press(browser, "Sign out")
    says(browser, "Signed out.")
    assert field(browser, "Name").is_displayed()
    assert site.request("GET", "/me", token=token)[0] == 401
    assert refresh_token(browser) is None
    assert severe_console_lines(browser) == []


def test_sign_out_spends_the_refresh_token(browser, site):
    sign_in(browser, site)
    spent = refresh_token(browser)
    assert spent
    press(browser, "Sign out")
    says(browser, "Signed out.")
    assert site.request("POST", "/refresh", {"refresh_token": spent})[0] == 401


def test_a_reload_keeps_the_session_through_the_refresh_token(browser, site):
    site.add_todos(site.alice, "buy milk")
    sign_in(browser, site)
    first = refresh_token(browser)
    browser.refresh()
    shows(browser, ["buy milk"])
    assert refresh_token(browser) not in (None, first)  # the refresh spent it and kept the new one
    assert severe_console_lines(browser) == []


def test_several_401s_at_once_share_one_refresh(browser, site):
    sign_in(browser, site)
    browser.execute_script("state.access = 'expired'")
    # Three calls meet a 401 together; were each to refresh, the second use of the one
    # refresh token would end the session (API.md, "Sessions").
    names = browser.execute_async_script(
        "const done = arguments[0];"
        "Promise.all([api('GET', 'me'), api('GET', 'todo'), api('GET', 'me')])"
        ".then((answers) => done(answers.map((a) => a.response.status)), (e) => done(String(e)))"
    )
    assert names == [200, 200, 200]
    assert site.request("GET", "/me", token=access_token(browser))[0] == 200


def test_a_session_that_ended_returns_to_sign_in_with_a_message(browser, site):
    sign_in(browser, site)
    password_hash = todo_wsgi.hash_password("another-password-1", site.app.settings.pbkdf2_iterations)
    with site.app.db.connection() as conn:  # an admin reset alice's password meanwhile
        site.app.store.update_user(conn, None, site.alice["public_id"], password_hash=password_hash)
    field(browser, "New to-do").send_keys("lost?", Keys.ENTER)
    says(browser, "Your session has ended. Please sign in again.")
    assert field(browser, "Name").is_displayed()
    assert site.todos(site.alice) == []


def test_a_password_change_signs_in_again_with_the_new_password(browser, site):
    sign_in(browser, site)
    old_token = access_token(browser)
    field(browser, "Current password").send_keys(USER_PASSWORD)
    new_password = field(browser, "New password")
    assert new_password.get_attribute("autocomplete") == "new-password"
    new_password.send_keys("a-new-password-1", Keys.ENTER)
    says(browser, "Your password is changed")
    assert site.request("GET", "/me", token=old_token)[0] == 401
    assert site.request("GET", "/me", token=access_token(browser))[0] == 200
    press(browser, "Sign out")
    sign_in(browser, site, password="a-new-password-1")
    # The change ends the old session by design: a request of it in flight may meet its 401,
    # which the browser logs; nothing else may reach the console.
    ended = "the server responded with a status of 401"
    assert [line for line in severe_console_lines(browser) if ended not in line["message"]] == []


def test_a_wrong_current_password_is_said_in_words(browser, site):
    sign_in(browser, site)
    field(browser, "Current password").send_keys("not my password")
    field(browser, "New password").send_keys("a-new-password-1", Keys.ENTER)
    says(browser, "Wrong password!")
    site.request("GET", "/me", token=access_token(browser))


def test_an_edit_of_a_todo_someone_else_changed_says_so_and_shows_the_new_version(browser, site):
    (todo,) = site.add_todos(site.alice, "buy milk")
    sign_in(browser, site)
    press(browser, "Edit: buy milk")
    edit = field(browser, "New text")
    # Meanwhile, in another tab or client:
    status, _ = site.request("PATCH", f"/todo/{todo['id']}", {"text": "buy bread"}, token=access_token(browser))
    assert status == 200
    edit.clear()
    edit.send_keys("buy oat milk", Keys.ENTER)
    says(browser, "Someone else changed this to-do meanwhile")
    shows(browser, ["buy bread"])
    assert field(browser, "New text").get_attribute("value") == "buy oat milk"
    assert [t["text"] for t in site.todos(site.alice)] == ["buy bread"]


# -- accounts (admins) -----------------------------------------------------------------------


def account_names(browser: webdriver.Chrome) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#account-list .text")]


def test_an_admin_creates_renames_promotes_demotes_resets_and_deletes_an_account(browser, site):
    sign_in(browser, site, "admin", ADMIN_PASSWORD)
    wait(browser, lambda d: account_names(d) == ["admin", "alice"], "the accounts")
    assert field(browser, "Password").get_attribute("autocomplete") == "new-password"
    field(browser, "New account name").send_keys("bob")
    field(browser, "Password").send_keys("bob-password-1", Keys.ENTER)
    says(browser, "Created the account bob.")
    wait(browser, lambda d: account_names(d) == ["admin", "alice", "bob"], "bob listed")

    press(browser, "Rename: bob")
    name = field(browser, "New name")
    name.clear()
    name.send_keys("robert", Keys.ENTER)
    says(browser, "Renamed bob to robert.")

    press(browser, "Make admin: robert")
    says(browser, "robert is now an admin.")
    press(browser, "Remove admin: robert")
    says(browser, "robert is no longer an admin.")

    press(browser, "Reset password: robert")
    field(browser, "New password").send_keys("robert-password-2", Keys.ENTER)
    says(browser, "The password of robert is reset")
    with site.app.db.connection() as conn:
        assert site.app.hasher.verify("robert-password-2", site.app.store.get_login(conn, "robert")["password_hash"])

    press(browser, "Delete: robert")
    browser.switch_to.alert.accept()
    says(browser, "Deleted the account robert.")
    wait(browser, lambda d: account_names(d) == ["admin", "alice"], "robert gone")
    with site.app.db.connection() as conn:
        assert [u["name"] for u in site.app.store.list_users(conn, 10, 0)] == ["admin", "alice"]
    assert severe_console_lines(browser) == []


def test_a_name_taken_is_said_in_words(browser, site):
    sign_in(browser, site, "admin", ADMIN_PASSWORD)
    field(browser, "New account name").send_keys("alice")
    field(browser, "Password").send_keys("alice-password-2", Keys.ENTER)
    says(browser, "Name already taken!")


def test_the_last_admin_rule_is_said_not_swallowed(browser, site):
    sign_in(browser, site, "admin", ADMIN_PASSWORD)
    press(browser, "Remove admin: admin")
    says(browser, "Cannot remove the last admin!")
    browser.execute_script("document.getElementById('message').textContent = ''")
    press(browser, "Delete: admin")
    browser.switch_to.alert.accept()
    says(browser, "Cannot remove the last admin!")
    wait(browser, lambda d: account_names(d) == ["admin", "alice"], "the accounts unchanged")


def test_a_person_who_is_not_an_admin_sees_no_accounts(browser, site):
    sign_in(browser, site)
    assert not browser.find_element(By.ID, "accounts").is_displayed()


# -- keyboard, phone, mount prefix ----------------------------------------------------------


def test_keyboard_alone_signs_in_adds_and_completes_a_todo(browser, site):
    browser.get(site.url + "/")
    field(browser, "Name")  # the page is ready; the name field has the focus
    active = browser.switch_to.active_element
    active.send_keys("alice", Keys.TAB)
    browser.switch_to.active_element.send_keys(USER_PASSWORD, Keys.ENTER)
    wait(browser, lambda d: d.switch_to.active_element.accessible_name == "New to-do", "focus on New to-do")
    browser.switch_to.active_element.send_keys("by keyboard", Keys.ENTER)
    shows(browser, ["by keyboard"])
    browser.switch_to.active_element.send_keys(Keys.TAB, Keys.TAB)  # past Add, to the checkbox
    assert browser.switch_to.active_element.accessible_name == "by keyboard"
    browser.switch_to.active_element.send_keys(Keys.SPACE)
    wait(browser, lambda d: site.todos(site.alice)[0]["complete"], "completed by keyboard")


def test_a_phone_sized_window_needs_no_sideways_scrolling(browser, site):
    long_text = " ".join(["a long to-do"] * 30)
    site.add_todos(site.admin, long_text, "x" * 500)
    browser.set_window_size(390, 844)
    sign_in(browser, site, "admin", ADMIN_PASSWORD)
    shows(browser, [long_text, "x" * 500])
    wait(browser, lambda d: account_names(d) == ["admin", "alice"], "the accounts")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


def mounted(app: Any, prefix: str) -> Any:
    """``app`` below ``prefix``, as a reverse proxy or a WSGI dispatcher mounts it."""

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path != prefix and not path.startswith(prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = prefix, path[len(prefix) :]
        return app(environ, start_response)

    return dispatch


def test_the_client_works_below_a_mount_prefix(browser, make_app):
    app = make_app(clock=time.time)
    server = LiveServer(mounted(app, "/todo-app"))
    try:
        site = Site(app, server, prefix="/todo-app")
        site.add_todos(site.alice, "mounted")
        browser.get(site.url)  # without the slash: 308 to it
        wait(browser, lambda d: d.current_url == site.url + "/", "the redirect")
        field(browser, "Name").send_keys("alice")
        field(browser, "Password").send_keys(USER_PASSWORD, Keys.ENTER)
        shows(browser, ["mounted"])
        field(browser, "New to-do").send_keys("added below the prefix", Keys.ENTER)
        shows(browser, ["mounted", "added below the prefix"])
        assert severe_console_lines(browser) == []
    finally:
        server.close()


def test_a_name_beyond_latin_1_signs_in(browser, site):
    # Basic credentials go as UTF-8 (RFC 7617 2.1), so any name the API takes can sign in.
    name = "zoë-日本"
    add_account(site.app, name, "unicode-password-ü1")
    sign_in(browser, site, name, "unicode-password-ü1")
