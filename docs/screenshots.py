"""Take the browser client's screenshots in docs/screenshots/ (not run by make test).

Serves a fresh app on a throwaway SQLite file (127.0.0.1, an ephemeral port),
seeds two accounts and a few to-dos, and drives Debian's headless Chromium
(chromium, chromium-driver; selenium from the test extra) through the three
main screens, each at a desktop size (1280x800) and a phone size (390x844):

    sign-in-{desktop,phone}.png    the sign-in form
    todos-{desktop,phone}.png      a person's to-do list
    accounts-{desktop,phone}.png   an admin's accounts

Run from the repository root: .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import store  # noqa: E402
import todo_wsgi  # noqa: E402
from tests.live import LiveServer  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
ACCOUNT_ROWS = (By.CSS_SELECTOR, "#account-list li")
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
PASSWORDS = {"admin": "admin-password-1", "alice": "alice-password-1"}
TODOS = {
    "alice": [
        ("Buy oat milk", True),
        ("Call the plumber about the kitchen tap", False),
        ("Renew the library card", False),
        ("Book the train to Lyon for the 14th", False),
        ("<b>Markup typed in a to-do stays text</b>", False),
    ],
    "admin": [("Review the audit trail", False)],
}


def seed(app: todo_wsgi.TodoApp) -> None:
    with app.db.connection() as conn:
        for name, password in PASSWORDS.items():
            password_hash = todo_wsgi.hash_password(password, app.settings.pbkdf2_iterations)
            app.store.create_user(conn, None, str(uuid.uuid4()), name, password_hash, name == "admin")
        bob_hash = todo_wsgi.hash_password("bob-password-1", app.settings.pbkdf2_iterations)
        app.store.create_user(conn, None, str(uuid.uuid4()), "bob", bob_hash, False)
        for name, todos in TODOS.items():
            row = app.store.get_login(conn, name)
            owner = store.Caller(uuid.uuid4().hex, row["public_id"], None, app.clock())
            app.store.start_session(conn, row, owner, uuid.uuid4().hex, app.clock() + 3600)
            for text, complete in todos:
                todo = app.store.create_todo(conn, owner, text, app.settings.max_todos_per_account)
                if complete:
                    app.store.update_todo(conn, owner, todo["id"], complete=True)


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def sign_in(driver: webdriver.Chrome, url: str, name: str) -> None:
    driver.get(url + "/")
    wait = WebDriverWait(driver, 10)
    wait.until(lambda d: d.find_element(By.ID, "name").is_displayed())
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[name])
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#todo-list li"))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        app = todo_wsgi.create_app(database=f"{folder}/todo.db", pbkdf2_iterations=1000)
        seed(app)
        server = LiveServer(app)
        driver = browser()
        try:
            for size, (width, height) in SIZES.items():
                driver.set_window_size(width, height)
                driver.get(server.url + "/")
                WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "name").is_displayed())
                driver.save_screenshot(str(OUT / f"sign-in-{size}.png"))
                sign_in(driver, server.url, "alice")
                driver.save_screenshot(str(OUT / f"todos-{size}.png"))
                driver.find_element(By.ID, "sign-out").click()
                sign_in(driver, server.url, "admin")
                WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(*ACCOUNT_ROWS)) == 3)
                driver.execute_script("document.getElementById('accounts').scrollIntoView()")
                time.sleep(0.2)
                driver.save_screenshot(str(OUT / f"accounts-{size}.png"))
                driver.find_element(By.ID, "sign-out").click()
        finally:
            driver.quit()
            server.close()
            app.close()
    for path in sorted(OUT.glob("*.png")):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
