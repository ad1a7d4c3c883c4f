#!/usr/bin/env python3
"""End-to-end browser tests of the web dashboard (`/dashboard` on http-gateway), driving Debian's
headless Chromium with Selenium against the real `core-service` and `http-gateway` binaries.

Usage: test_dashboard.py TARGET_DIR [sqlite|postgres]      (default: target/debug sqlite)

  target/ci-venv/bin/python tests/browser/test_dashboard.py target/debug sqlite
  target/ci-venv/bin/python tests/browser/test_dashboard.py target/debug postgres

Needs the `selenium` and `requests` packages, /usr/bin/chromium and /usr/bin/chromedriver (Debian's
`chromium` and `chromium-driver`); nothing is downloaded (SE_OFFLINE=true, explicit paths).

Both programs run on free loopback ports: the core over a temporary SQLite file, or over a fresh
PostgreSQL database on postgres://postgres@127.0.0.1:5432/ (override the server with
TEST_POSTGRES_URL) that is dropped afterwards whatever happens. Developers are made with
`core-service developer add`.

The checks run in order, each named, each printing PASS or FAIL; a check whose prerequisite failed
is reported as FAIL without running. The last line is `N passed, N failed`; the exit status is 1
when any check failed. Page screenshots go to target/dashboard-screenshots/BACKEND-PAGE.png (and
BACKEND-FAIL-CHECK-a.png / -b.png, developer A's and B's browser, for a failed check). KEEP_LOGS=1
keeps the programs' log; its tail is printed when a check fails.

The contract tested is the dashboard's page contract: form and table selectors, 303/401/403/404
answers (HTTP statuses of pages are read from the browser's network log), the session cookie and
the CSRF field, the security headers. The cross-site check posts from two other origins: another
port of 127.0.0.1 (same site: the SameSite=Strict cookie goes along, so the CSRF field decides)
and localhost (another site: the cookie stays home), and then with the browser's cookie from
outside the browser, with a positive control (the right csrf is accepted).
"""

import datetime
import hashlib
import html.parser
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.parse
import http.server

os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or a driver

import requests  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException, NoSuchElementException, TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug")
BACKEND = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
SHOTS = os.path.join(ROOT, "target", "dashboard-screenshots")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 30  # seconds an explicit wait may take (debug builds hash passwords slowly)

DEV_A, DEV_A_PW = "alice-dash", "alice correct horse"
DEV_B, DEV_B_PW = "bruno-dash", "bruno battery staple"
APP_NAME, APP_VERSION = "Browser App", "1.0.0"
END_USER, END_USER_PW = "carol", "carol-password"
HWID = "HWID-BROWSER-1"
SCRIPT_USER = "<script>alert(1)</script>"
PINGS = 4  # legacy `connect` calls the activity chart must count

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "x-frame-options": "DENY", "cache-control": "no-store"}

S = {}  # the stack, the browsers and what the checks learn (app id, keys, secret, cookie…)


class CheckFailed(AssertionError):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_eq(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


# ---------------------------------------------------------------------------------------------
# The stack: database, core, gateway

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what, condition, timeout=60):
    """An explicit wait outside the browser (WebDriverWait polls any callable)."""
    try:
        return WebDriverWait(None, timeout, poll_frequency=0.2).until(lambda _: condition())
    except TimeoutException:
        raise RuntimeError(f"timed out waiting for {what}") from None


def cli(*args):
    """A core-service one-shot command on the test database; its JSON answer."""
    done = subprocess.run([f"{TARGET}/core-service", "--database-url", S["db"], *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"core-service {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def postgres_server():
    return os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(sql):
    subprocess.run(["psql", postgres_server(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                   check=True, capture_output=True, text=True)


def start_stack():
    S["tmp"] = tempfile.mkdtemp(prefix="dashboard-browser-")
    if BACKEND == "sqlite":
        S["db"] = f"sqlite://{S['tmp']}/licensing.db?mode=rwc"
    else:
        name = f"dashboard_browser_{secrets.token_hex(6)}"
        psql(f'CREATE DATABASE "{name}"')
        S["pg_database"] = name
        server = urllib.parse.urlsplit(postgres_server())
        S["db"] = urllib.parse.urlunsplit(server._replace(path=f"/{name}", query=""))
    core_port, gateway_port = free_port(), free_port()
    S["log_path"] = os.path.join(S["tmp"], "programs.log")
    S["log"] = open(S["log_path"], "wb")
    S["core"] = subprocess.Popen(
        [f"{TARGET}/core-service", "--database-url", S["db"], "serve", "--listen", f"127.0.0.1:{core_port}",
         "--throttle-username-limit", "1000", "--throttle-address-limit", "100000"],
        stdout=S["log"], stderr=S["log"])

    def core_healthy():
        if S["core"].poll() is not None:
            raise RuntimeError(f"core-service exited with {S['core'].returncode} (log: {S['log_path']})")
        return subprocess.run([f"{TARGET}/core-service", "health", "--url", f"http://127.0.0.1:{core_port}"],
                              capture_output=True).returncode == 0

    poll("the core to serve", core_healthy, timeout=120)
    env = dict(os.environ, CORE_URL=f"http://127.0.0.1:{core_port}")
    S["gw"] = subprocess.Popen([f"{TARGET}/http-gateway", "--listen", f"127.0.0.1:{gateway_port}"],
                               env=env, stdout=S["log"], stderr=S["log"])
    S["gateway"] = f"http://127.0.0.1:{gateway_port}"
    S["dash"] = f"{S['gateway']}/dashboard"

    def gateway_ready():
        if S["gw"].poll() is not None:
            raise RuntimeError(f"http-gateway exited with {S['gw'].returncode} (log: {S['log_path']})")
        try:
            return requests.get(f"{S['gateway']}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    poll("the gateway to be ready", gateway_ready)
    cli("developer", "add", "--username", DEV_A, "--password", DEV_A_PW)
    cli("developer", "add", "--username", DEV_B, "--password", DEV_B_PW)


def stop_stack(failed):
    for name in ("gw", "core"):
        process = S.get(name)
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if "log" in S:
        S["log"].close()
    if "pg_database" in S:
        try:
            psql(f'DROP DATABASE IF EXISTS "{S["pg_database"]}" WITH (FORCE)')
        except subprocess.CalledProcessError as e:
            print(f"could not drop database {S['pg_database']}: {e.stderr.strip()}", file=sys.stderr)
    if failed and os.path.exists(S.get("log_path", "")):
        with open(S["log_path"], "rb") as f:
            tail = f.read().decode(errors="replace").splitlines()[-40:]
        print("--- the programs' log (last 40 lines) ---", *tail, "---", sep="\n", file=sys.stderr)
    if os.environ.get("KEEP_LOGS") and "log_path" in S:
        print(f"logs: {S['log_path']}", file=sys.stderr)
    elif "tmp" in S:
        shutil.rmtree(S["tmp"], ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The browser

def new_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.add_argument("--headless=new")
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--disable-gpu")
    options.add_argument("--window-size=1280,1400")
    options.add_argument("--no-first-run")
    options.add_argument("--disable-background-networking")
    # Network events give the HTTP status of each page; the browser log shows CSP violations.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT * 2)
    driver.documents = []  # (url, status, headers) of every page loaded, in order
    driver.console = []  # browser log messages
    return driver


def drain_logs(driver):
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"].get("type") == "Document":
            response = message["params"]["response"]
            driver.documents.append((response["url"], response["status"],
                                     {k.lower(): v for k, v in response.get("headers", {}).items()}))
    driver.console.extend(entry.get("message", "") for entry in driver.get_log("browser"))


def page_status(driver, url):
    """The HTTP status of the last page loaded from `url` (query ignored)."""
    drain_logs(driver)
    wanted = url.split("?")[0]
    for loaded, status, _ in reversed(driver.documents):
        if loaded.split("?")[0] == wanted:
            return status
    return None


def wait_for(driver, condition, what, timeout=WAIT):
    """Waits until `condition(driver)` is truthy. While a page is being replaced the browser may
    answer with errors about the old document: those count as "not yet"."""
    last = []

    def guarded(d):
        try:
            return condition(d)
        except CheckFailed:
            raise
        except WebDriverException as e:
            last[:] = [f"{type(e).__name__}: {(e.msg or '').splitlines()[0] if e.msg else ''}"]
            return False

    try:
        return WebDriverWait(driver, timeout).until(guarded)
    except TimeoutException:
        also = f"; last error {last[0]}" if last else ""
        raise CheckFailed(f"timed out waiting for {what} (at {driver.current_url}{also})") from None


def loaded(driver):
    return driver.execute_script("return document.readyState") == "complete"


def css(driver, selector):
    try:
        return driver.find_element(By.CSS_SELECTOR, selector)
    except NoSuchElementException:
        raise CheckFailed(f"no `{selector}` on {driver.current_url}") from None


def text_of(driver, selector):
    return css(driver, selector).text.strip()


def h1(driver):
    return wait_for(driver, EC.presence_of_element_located((By.TAG_NAME, "h1")), "an h1").text.strip()


def submit_button(form):
    """The form's submit control (a <button> without a type is a submit button too)."""
    for control in form.find_elements(By.CSS_SELECTOR, "button, input[type=submit]"):
        if control.get_property("type") == "submit":
            return control
    raise CheckFailed(f"form {form.get_attribute('id') or form.get_attribute('class')} has no submit button")


def submit_and_wait(driver, form, what):
    """Clicks the form's submit button and waits until the next page has replaced this one (a
    mark set on this page's window is gone) and has loaded."""
    mark = secrets.token_hex(8)
    driver.execute_script("window.__testPageMark = arguments[0];", mark)
    submit_button(form).click()
    wait_for(driver, lambda d: d.execute_script(
        "return window.__testPageMark !== arguments[0] && document.readyState === 'complete';", mark),
        f"the page after {what}")


def open_page(driver, path):
    driver.get(S["dash"] + path)
    wait_for(driver, loaded, f"{path} to load")


def fill(driver, selector, value):
    field = css(driver, selector)
    if field.get_attribute("type") in ("date", "number", "hidden"):
        # Typing into a date input depends on the browser's locale: set the value as the form sends it.
        driver.execute_script("arguments[0].value = arguments[1];"
                              "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", field, value)
    else:
        field.clear()
        field.send_keys(value)


def screenshot(driver, page):
    os.makedirs(SHOTS, exist_ok=True)
    driver.save_screenshot(os.path.join(SHOTS, f"{BACKEND}-{page}.png"))


def sign_in(driver, username, password):
    open_page(driver, "/login")
    fill(driver, "form#login input[name=username]", username)
    fill(driver, "form#login input[name=password]", password)
    submit_and_wait(driver, css(driver, "form#login"), "signing in")


def session_cookie(driver):
    return driver.get_cookie("session") or driver.get_cookie("__Host-session")


def csrf_of(driver):
    """The page's CSRF field, as its forms carry it."""
    return css(driver, "form#logout input[name=csrf]").get_attribute("value")


def assert_no_alert(driver):
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
    except NoAlertPresentException:
        return
    raise CheckFailed(f"an alert is open: {text!r}")


# ---------------------------------------------------------------------------------------------
# HTTP outside the browser

def legacy(action, **fields):
    """A legacy client action (/api/action.php): (HTTP status, JSON answer)."""
    answer = requests.post(f"{S['gateway']}/api/action.php?action={action}", data=fields, timeout=WAIT)
    return answer.status_code, answer.json()


def legacy_admin(action, **fields):
    fields = {"developer_username": DEV_A, "develoer_password": DEV_A_PW, "app_secret": S["secret"], **fields}
    answer = requests.post(f"{S['gateway']}/api/admin.php?action={action}", data=fields, timeout=WAIT)
    expect_eq(answer.status_code, 200, f"legacy {action} status ({answer.text[:200]})")
    return answer.json()


def with_cookie(method, path, cookie, **kw):
    return requests.request(method, S["dash"] + path, cookies={cookie["name"]: cookie["value"]},
                            allow_redirects=False, timeout=WAIT, **kw)


def h1_of_html(body):
    m = re.search(r"<h1\b[^>]*>(.*?)</h1>", body, re.S | re.I)
    return re.sub(r"<[^>]+>", "", m.group(1)).strip() if m else None


class InlineFinder(html.parser.HTMLParser):
    """Collects what a strict CSP would block: inline scripts, <style>, style= and on*= attributes."""

    def __init__(self):
        super().__init__()
        self.found, self.in_script = [], False

    def handle_starttag(self, tag, attrs):
        names = {k.lower() for k, _ in attrs}
        if tag == "script":
            self.in_script = "src" not in names
            if self.in_script:
                self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        for name in names:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{name}= on <{tag}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False


# ---------------------------------------------------------------------------------------------
# The checks, in order

CHECKS = []


def check(name, needs=()):
    def register(fn):
        CHECKS.append((name, fn, tuple(needs)))
        return fn
    return register


@check("sign-in: a wrong password is refused")
def wrong_password(a):
    open_page(a, "/login")
    expect_eq(page_status(a, S["dash"] + "/login"), 200, "GET /dashboard/login status")
    screenshot(a, "login")
    fill(a, "form#login input[name=username]", DEV_A)
    fill(a, "form#login input[name=password]", DEV_A_PW + "-wrong")
    submit_and_wait(a, css(a, "form#login"), "a wrong sign-in")
    error = wait_for(a, EC.presence_of_element_located((By.CSS_SELECTOR, ".error")), "the `.error` text")
    expect_eq(error.text.strip(), "Wrong username or password.", "`.error` text")
    expect(a.find_elements(By.CSS_SELECTOR, "form#login"), "the login form is shown again")
    expect_eq(page_status(a, S["dash"] + "/login"), 401, "status of the refused sign-in")
    expect(session_cookie(a) is None, "no session cookie after a refused sign-in")


@check("sign-in: the right password is accepted")
def right_password(a):
    sign_in(a, DEV_A, DEV_A_PW)
    wait_for(a, EC.url_to_be(S["dash"] + "/apps"), "/dashboard/apps after signing in")
    expect_eq(h1(a), "Apps", "h1 of /dashboard/apps")
    cookie = session_cookie(a)
    expect(cookie is not None, "a session cookie is set")
    expect_eq(cookie["name"], "session", "cookie name without TLS")
    expect(cookie["value"].startswith("ses_"), f"the cookie holds the core's ses_ token ({cookie['value'][:8]}…)")
    expect_eq(cookie.get("httpOnly"), True, "cookie HttpOnly")
    expect_eq(cookie.get("sameSite"), "Strict", "cookie SameSite")
    expect_eq(cookie.get("path"), "/dashboard", "cookie Path")
    css(a, "form#logout")


@check("apps: an app is created through the form", needs=["sign-in: the right password is accepted"])
def create_app(a):
    open_page(a, "/apps")
    fill(a, "form#create-app input[name=name]", APP_NAME)
    fill(a, "form#create-app input[name=version]", APP_VERSION)
    submit_and_wait(a, css(a, "form#create-app"), "creating the app")
    m = re.fullmatch(re.escape(S["dash"]) + r"/apps/(\d+)", a.current_url)
    expect(m, f"after creating, the app's page /dashboard/apps/ID is shown, not {a.current_url}")
    S["app"] = app = m.group(1)
    expect_eq(text_of(a, "h1#app-name"), APP_NAME, "h1#app-name")
    expect_eq(text_of(a, "#app-version"), APP_VERSION, "#app-version")
    expect(text_of(a, "#online-status") in ("online", "offline"), "#online-status is online or offline")
    public = text_of(a, "#public-key")
    expect(re.fullmatch(r"[A-Za-z0-9+/]{43}=", public), f"#public-key is base64 of 32 bytes: {public!r}")
    expect(a.find_elements(By.CSS_SELECTOR, "table#signing-keys tr[data-kid] td.key-state"),
           "table#signing-keys lists the signing key")
    summary = css(a, "details#secret summary")
    expect_eq(summary.text.strip(), "Show secret", "details#secret summary")
    expect(not css(a, "details#secret").get_property("open"), "the secret starts hidden")
    summary.click()
    secret = wait_for(a, EC.visibility_of_element_located((By.CSS_SELECTOR, "code#secret-value")),
                      "the secret to show").text.strip()
    expect(re.fullmatch(r"[0-9a-f]{64}", secret), f"code#secret-value is 64 hex digits: {secret!r}")
    S["secret"] = secret
    screenshot(a, "app")
    # The legacy API sees the same app.
    data = legacy_admin("get_app_data")
    expect_eq((data["appname"], data["public"], data["version"]), (APP_NAME, public, APP_VERSION),
              "get_app_data of the new app")
    if data["online"] != 1:  # the client checks below need an online app: use the dashboard's toggle
        submit_and_wait(a, css(a, "form#online"), "toggling online")
        expect_eq(text_of(a, "#online-status"), "online", "#online-status after the toggle")
    # Listed on /dashboard/apps.
    open_page(a, "/apps")
    row = css(a, f'table#apps tr[data-app-id="{app}"]')
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.app-name").text.strip(), APP_NAME, "td.app-name")
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.app-online").text.strip(), "online", "td.app-online")
    link = row.find_element(By.CSS_SELECTOR, "a.app-link").get_attribute("href")
    expect_eq(link, f"{S['dash']}/apps/{app}", "a.app-link href")
    screenshot(a, "apps")


@check("licences: five are created and listed", needs=["apps: an app is created through the form"])
def create_licences(a):
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=400)).date().isoformat()
    open_page(a, f"/apps/{S['app']}/licences")
    expect_eq(page_status(a, f"{S['dash']}/apps/{S['app']}/licences"), 200, "licences page status")
    fill(a, "form#create-licences input[name=amount]", "5")
    fill(a, "form#create-licences input[name=access]", "3")
    fill(a, "form#create-licences input[name=expires]", expires)
    submit_and_wait(a, css(a, "form#create-licences"), "creating licences")
    expect_eq(a.current_url.split("?")[0], f"{S['dash']}/apps/{S['app']}/licences", "page after creating")
    rows = a.find_elements(By.CSS_SELECTOR, "table#licences tr[data-key]")
    expect_eq(len(rows), 5, "rows in table#licences")
    keys = []
    for row in rows:
        key = row.get_attribute("data-key")
        expect(re.fullmatch(r"([A-HJ-NP-Z2-9]{5}-){4}[A-HJ-NP-Z2-9]{5}", key), f"a licence key: {key!r}")
        expect_eq(row.find_element(By.CSS_SELECTOR, "td.licence-key").text.strip(), key, "td.licence-key")
        expect_eq(row.find_element(By.CSS_SELECTOR, "td.licence-status").text.strip(), "unused", f"status of {key}")
        expect_eq(row.find_element(By.CSS_SELECTOR, "td.licence-access").text.strip(), "3", f"access of {key}")
        shown = row.find_element(By.CSS_SELECTOR, "td.licence-expires").text.strip()
        expect(shown.startswith(expires), f"td.licence-expires of {key} shows {expires}: {shown!r}")
        keys.append(key)
    S["keys"] = keys
    legacy_keys = {entry["licence"]: entry for entry in legacy_admin("get_licences")}
    expect_eq(set(legacy_keys), set(keys), "the keys get_licences knows")
    for key in keys:
        expect_eq(legacy_keys[key]["expire_time"], f"{expires} 23:59:59",
                  f"expiry of {key} (the end of the chosen day, UTC)")
        expect_eq(legacy_keys[key]["access"], 3, f"access of {key} (legacy)")


@check("licences: one is banned and shown as banned", needs=["licences: five are created and listed"])
def ban_licence(a):
    key = S["banned"] = S["keys"][0]
    open_page(a, f"/apps/{S['app']}/licences")
    row = css(a, f'table#licences tr[data-key="{key}"]')
    form = row.find_element(By.CSS_SELECTOR, "form.ban")
    expect_eq(form.find_element(By.CSS_SELECTOR, "input[name=key]").get_attribute("value"), key, "form.ban key")
    submit_and_wait(a, form, "banning")
    expect_eq(a.current_url.split("?")[0], f"{S['dash']}/apps/{S['app']}/licences", "page after banning")
    row = css(a, f'table#licences tr[data-key="{key}"]')
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.licence-status").text.strip(), "banned", "status of the key")
    expect(row.find_elements(By.CSS_SELECTOR, "form.unban"), "a banned key offers form.unban")
    for other in S["keys"][1:]:
        status = css(a, f'table#licences tr[data-key="{other}"] td.licence-status').text.strip()
        expect_eq(status, "unused", f"status of {other}")
    screenshot(a, "licences")
    banned = {e["licence"]: e["banned"] for e in legacy_admin("get_licences")}
    expect_eq(banned[key], 1, "get_licences `banned` of the key")
    open_page(a, f"/apps/{S['app']}/licences?status=banned")
    listed = [r.get_attribute("data-key") for r in a.find_elements(By.CSS_SELECTOR, "table#licences tr[data-key]")]
    expect_eq(listed, [key], "the listing filtered by status=banned")


@check("users: a legacy-registered user is listed, its HWID shown then reset",
       needs=["licences: five are created and listed"])
def users_and_hwid(a):
    redeemed = S["keys"][1]
    status, answer = legacy("register", username=END_USER, password=END_USER_PW, email="carol@example.com",
                            app_secret=S["secret"], licence=redeemed)
    expect_eq((status, answer.get("status")), (200, "success"), f"legacy register ({answer})")
    status, answer = legacy("login", username=END_USER, password=END_USER_PW, hwid=HWID, app_secret=S["secret"])
    expect_eq((status, answer.get("hwid")), (200, HWID), f"legacy login binding the HWID ({answer})")
    open_page(a, f"/apps/{S['app']}/users")
    expect_eq(page_status(a, f"{S['dash']}/apps/{S['app']}/users"), 200, "users page status")
    rows = [r for r in a.find_elements(By.CSS_SELECTOR, "table#users tr[data-user-id]")
            if r.find_element(By.CSS_SELECTOR, "td.user-name").text.strip() == END_USER]
    expect_eq(len(rows), 1, f"rows of {END_USER} in table#users")
    user_id = S["user_id"] = rows[0].get_attribute("data-user-id")
    legacy_ids = {str(u["id"]): u for u in legacy_admin("get_users")}
    expect(user_id in legacy_ids and legacy_ids[user_id]["username"] == END_USER,
           f"data-user-id {user_id} is the user's id in get_users")
    row = css(a, f'table#users tr[data-user-id="{user_id}"]')
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.user-hwid").text.strip(), HWID, "td.user-hwid")
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.user-licence").text.strip(), "active", "td.user-licence")
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.user-pings").text.strip(), "0", "td.user-pings")
    submit_and_wait(a, row.find_element(By.CSS_SELECTOR, "form.reset-hwid"), "resetting the HWID")
    expect_eq(a.current_url.split("?")[0], f"{S['dash']}/apps/{S['app']}/users", "page after the reset")
    row = css(a, f'table#users tr[data-user-id="{user_id}"]')
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.user-hwid").text.strip(), "", "td.user-hwid after the reset")
    screenshot(a, "users")
    expect(legacy_admin("get_users")[0]["hwid"] in (None, ""), "get_users shows no HWID after the reset")
    # The redeemed key is shown with its user.
    open_page(a, f"/apps/{S['app']}/licences")
    row = css(a, f'table#licences tr[data-key="{redeemed}"]')
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.licence-status").text.strip(), "active", "the redeemed key")
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.licence-user").text.strip(), END_USER, "td.licence-user")


@check("binary: a file uploaded through the form shows its sha256", needs=["apps: an app is created through the form"])
def upload_binary(a):
    open_page(a, f"/apps/{S['app']}/binary")
    expect_eq(page_status(a, f"{S['dash']}/apps/{S['app']}/binary"), 200, "binary page status")
    css(a, "#no-file")
    css(a, "progress#upload-progress")
    names = [i.get_attribute("name") for i in a.find_elements(By.CSS_SELECTOR, "form#upload input")]
    expect("csrf" in names and "file" in names and names.index("csrf") < names.index("file"),
           f"form#upload carries csrf before the file: {names}")
    data = os.urandom(300_000) + b"browser upload"
    path = os.path.join(S["tmp"], "browser-app.bin")
    with open(path, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    css(a, "form#upload input[type=file][name=file]").send_keys(path)
    submit_button(css(a, "form#upload")).click()
    shown = wait_for(a, lambda d: d.find_elements(By.CSS_SELECTOR, "#file-sha256"), "#file-sha256 after the upload",
                     timeout=WAIT * 2)[0].text.strip()
    expect_eq(shown, digest, "#file-sha256 (the local sha256)")
    expect_eq(text_of(a, "#file-name"), "browser-app.bin", "#file-name")
    expect_eq(text_of(a, "#file-size"), str(len(data)), "#file-size")
    expect(text_of(a, "#file-uploaded"), "#file-uploaded is shown")
    expect(not a.find_elements(By.CSS_SELECTOR, "#no-file"), "#no-file is gone")
    screenshot(a, "binary")
    if "user_id" in S:  # the licensed user downloads the same bytes
        answer = requests.post(f"{S['gateway']}/api/action.php?action=download", timeout=WAIT,
                               data={"username": END_USER, "password": END_USER_PW, "app_secret": S["secret"]})
        expect_eq(answer.status_code, 200, f"legacy download ({answer.text[:200]})")
        expect_eq(hashlib.sha256(answer.content).hexdigest(), digest, "sha256 of the downloaded file")


@check("activity: the chart counts the pings made",
       needs=["users: a legacy-registered user is listed, its HWID shown then reset"])
def activity(a):
    for i in range(PINGS):
        status, answer = legacy("connect", username=END_USER, password=END_USER_PW, hwid=HWID,
                                app_secret=S["secret"])
        expect_eq((status, answer.get("total_pings")), (200, i + 1), f"legacy connect {i + 1} ({answer})")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    open_page(a, f"/apps/{S['app']}/activity")
    expect_eq(page_status(a, f"{S['dash']}/apps/{S['app']}/activity"), 200, "activity page status")
    bars = a.find_elements(By.CSS_SELECTOR, "svg#activity-chart rect.heartbeats")
    expect_eq(len(bars), 30, "rect.heartbeats bars in svg#activity-chart")
    by_day = {bar.get_attribute("data-day"): bar for bar in bars}
    days = {(today - datetime.timedelta(days=n)).isoformat() for n in range(30)}
    expect_eq(set(by_day), days, "data-day of the bars (the last 30 UTC days)")
    bar = by_day[today.isoformat()]
    expect_eq(bar.get_attribute("data-heartbeats"), str(PINGS), "data-heartbeats of today's bar")
    expect_eq(bar.get_attribute("data-active-users"), "1", "data-active-users of today's bar")
    total = sum(int(b.get_attribute("data-heartbeats")) for b in bars)
    expect_eq(total, PINGS, "heartbeats of all 30 days (a fresh database)")
    row = css(a, f'table#activity tr[data-day="{today.isoformat()}"]')
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.heartbeats").text.strip(), str(PINGS), "td.heartbeats today")
    expect_eq(row.find_element(By.CSS_SELECTOR, "td.active-users").text.strip(), "1", "td.active-users today")
    for other in a.find_elements(By.CSS_SELECTOR, "table#activity tr[data-day]"):
        day = other.get_attribute("data-day")
        expect_eq(other.find_element(By.CSS_SELECTOR, "td.heartbeats").text.strip(),
                  by_day[day].get_attribute("data-heartbeats") if day in by_day else "?", f"td.heartbeats of {day}")
    screenshot(a, "activity")
    open_page(a, f"/apps/{S['app']}/users")
    pings = css(a, f'table#users tr[data-user-id="{S["user_id"]}"] td.user-pings').text.strip()
    expect_eq(pings, str(PINGS), "td.user-pings on the users page")


class EvilSite:
    """Another origin serving pages that auto-submit a form to the dashboard."""

    def __init__(self):
        pages = self.pages = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, path, action, fields):
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        self.pages[path] = (f'<!doctype html><title>evil</title><form method="POST" action="{action}">{inputs}'
                            f"</form><script>document.forms[0].submit()</script>")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@check("csrf: a cross-site form post is refused", needs=["licences: five are created and listed"])
def cross_site_post(a):
    victim = S["keys"][4]
    action = f"{S['dash']}/apps/{S['app']}/licences/delete"
    open_page(a, f"/apps/{S['app']}/licences")
    good_csrf = csrf_of(a)
    evil = EvilSite()
    try:
        evil.add("/no-csrf", action, {"key": victim})
        evil.add("/wrong-csrf", action, {"key": victim, "csrf": "A" * len(good_csrf)})
        # Same site, other origin (the cookie goes along, so the CSRF field decides); and another
        # site altogether (localhost: the SameSite=Strict cookie stays home).
        for origin in (f"http://127.0.0.1:{evil.port}", f"http://localhost:{evil.port}"):
            for page in ("/no-csrf", "/wrong-csrf"):
                a.get(origin + page)
                wait_for(a, lambda d: d.current_url.startswith(S["dash"]),
                         f"the auto-submitted form from {origin}{page} to reach the dashboard")
                wait_for(a, loaded, "the answer")
                expect_eq(a.current_url, action, f"page after the post from {origin}{page} (303 = accepted)")
                expect_eq(h1(a), "Forbidden", f"h1 after the post from {origin}{page}")
                expect_eq(page_status(a, action), 403, f"status of the post from {origin}{page}")
    finally:
        evil.close()
    # The same posts with the browser's cookie, outside the browser.
    cookie = session_cookie(a)
    expect(cookie is not None, "the browser still has its session")
    path = f"/apps/{S['app']}/licences/delete"
    for fields, what in (({"key": victim}, "no csrf"), ({"key": victim, "csrf": "A" * len(good_csrf)}, "a wrong csrf"),
                         ({"key": victim, "csrf": good_csrf[:-1]}, "a truncated csrf")):
        answer = with_cookie("POST", path, cookie, data=fields)
        expect_eq(answer.status_code, 403, f"POST with the cookie and {what}")
        expect_eq(h1_of_html(answer.text), "Forbidden", f"h1 of the answer to {what}")
    answer = with_cookie("POST", f"/apps/{S['app']}/licences/ban", {"name": "x", "value": ""},
                         data={"key": victim, "csrf": good_csrf})
    expect_eq(answer.status_code, 403, "POST with the right csrf but no session")
    open_page(a, f"/apps/{S['app']}/licences")
    status = css(a, f'table#licences tr[data-key="{victim}"] td.licence-status').text.strip()
    expect_eq(status, "unused", "the targeted key is still there, untouched")
    # Control: the right csrf with the cookie is accepted (ban the already banned key again).
    answer = with_cookie("POST", f"/apps/{S['app']}/licences/ban", cookie,
                         data={"key": S.get("banned", S["keys"][0]), "csrf": good_csrf})
    expect_eq(answer.status_code, 303, "control: POST with the cookie and the right csrf")
    expect(answer.headers.get("location", "").split("?")[0].endswith(f"/dashboard/apps/{S['app']}/licences"),
           f"control: 303 back to the listing ({answer.headers.get('location')})")


@check("escaping: a user named <script>alert(1)</script> is shown as text",
       needs=["apps: an app is created through the form"])
def script_user(a):
    status, answer = legacy("register", username=SCRIPT_USER, password="xss-password", email="x@example.com",
                            app_secret=S["secret"])
    expect_eq((status, answer.get("status")), (200, "success"), f"legacy register ({answer})")
    open_page(a, f"/apps/{S['app']}/users")
    assert_no_alert(a)
    cells = [c for c in a.find_elements(By.CSS_SELECTOR, "table#users tr[data-user-id] td.user-name")
             if "alert" in c.get_attribute("textContent")]
    expect_eq(len(cells), 1, "cells naming the script user")
    expect_eq(cells[0].text, SCRIPT_USER, "the cell's text")
    expect(not cells[0].find_elements(By.TAG_NAME, "script"), "no <script> element inside the cell")
    expect("&lt;script&gt;alert(1)&lt;/script&gt;" in a.page_source, "the name is HTML-escaped in the page")
    open_page(a, f"/apps/{S['app']}/users?q={urllib.parse.quote(SCRIPT_USER)}")
    assert_no_alert(a)
    names = [c.text for c in a.find_elements(By.CSS_SELECTOR, "table#users td.user-name")]
    expect_eq(names, [SCRIPT_USER], "the users listing searched by the script name")
    kept = css(a, "form#search input[name=q]").get_attribute("value")
    expect(kept in ("", SCRIPT_USER), f"the search box shows q as it was typed, or nothing: {kept!r}")
    assert_no_alert(a)
    # The markup as served (not as the browser re-serialises it) never holds the tag itself.
    for path in (f"/apps/{S['app']}/users", f"/apps/{S['app']}/users?q={urllib.parse.quote(SCRIPT_USER)}"):
        body = with_cookie("GET", path, session_cookie(a)).text
        expect("<script>alert(1)" not in body.lower(), f"GET {path} serves the name unescaped")


@check("isolation: another developer's app id answers 404", needs=["apps: an app is created through the form"])
def other_developer(a):
    b = S["b"] = new_browser()
    sign_in(b, DEV_B, DEV_B_PW)
    wait_for(b, EC.url_to_be(S["dash"] + "/apps"), "developer B's /dashboard/apps")
    expect(not b.find_elements(By.CSS_SELECTOR, f'tr[data-app-id="{S["app"]}"]'), "A's app is not in B's list")
    missing = str(int(S["app"]) + 100000)
    for path in (f"/apps/{S['app']}", f"/apps/{S['app']}/licences", f"/apps/{S['app']}/users",
                 f"/apps/{S['app']}/binary", f"/apps/{S['app']}/activity", f"/apps/{missing}"):
        open_page(b, path)
        expect_eq(h1(b), "Not found", f"h1 of {path} for developer B")
        expect_eq(page_status(b, S["dash"] + path), 404, f"status of {path} for developer B")
        expect(S["secret"] not in b.page_source, f"A's secret is not on {path}")
    # A valid post of B's own session against A's app: 404 too, and nothing changes.
    csrf, cookie = csrf_of(b), session_cookie(b)
    answer = with_cookie("POST", f"/apps/{S['app']}/licences/delete", cookie,
                         data={"key": S["keys"][3], "csrf": csrf})
    expect_eq(answer.status_code, 404, "B's valid POST to A's app")
    expect(S["keys"][3] in {e["licence"] for e in legacy_admin("get_licences")}, "A's key is still there")


@check("headers: security headers on every page, no inline script or style",
       needs=["sign-in: the right password is accepted"])
def security_headers(a):
    cookie = session_cookie(a)
    expect(cookie is not None, "the browser still has its session")
    app = S.get("app")
    paths = ["/login", "/apps", "/static/style.css", "/static/upload.js"]
    if app:
        paths += [f"/apps/{app}", f"/apps/{app}/licences", f"/apps/{app}/users", f"/apps/{app}/binary",
                  f"/apps/{app}/activity", f"/apps/{app}/licences.csv", f"/apps/{int(app) + 100000}"]
    problems = []
    for path in paths:
        answer = with_cookie("GET", path, cookie)
        if answer.status_code not in (200, 404):
            problems.append(f"GET {path}: status {answer.status_code}")
        problems += header_problems(f"GET {path}", answer)
        if answer.headers.get("content-type", "").startswith("text/html"):
            finder = InlineFinder()
            finder.feed(answer.text)
            problems += [f"GET {path}: {what}" for what in finder.found]
    anonymous = requests.get(S["dash"] + "/apps", allow_redirects=False, timeout=WAIT)
    if anonymous.status_code != 303:
        problems.append(f"GET /apps without a session: status {anonymous.status_code}, not 303")
    problems += header_problems("GET /apps without a session", anonymous)
    problems += header_problems("POST without csrf", with_cookie("POST", "/logout", cookie, data={}))
    # The stylesheet and script are served as such.
    expect(with_cookie("GET", "/static/style.css", cookie).headers.get("content-type", "").startswith("text/css"),
           "style.css is text/css")
    expect("javascript" in with_cookie("GET", "/static/upload.js", cookie).headers.get("content-type", ""),
           "upload.js is JavaScript")
    # The browser saw no CSP violation on any dashboard page so far.
    drain_logs(a)
    if "b" in S:
        drain_logs(S["b"])
    violations = [m for m in a.console + (S["b"].console if "b" in S else [])
                  if "Content Security Policy" in m and "/dashboard" in m]
    problems += [f"browser: {m[:200]}" for m in violations]
    if app:
        csv = with_cookie("GET", f"/apps/{app}/licences.csv", cookie)
        lines = csv.text.strip().splitlines()
        expect(lines and lines[0].strip() == "key,status,access,expires,user,created",
               f"licences.csv header row: {lines[:1]}")
    expect(not problems, "; ".join(problems))


def header_problems(what, answer):
    out = []
    csp = re.sub(r"\s+", " ", answer.headers.get("content-security-policy", "")).strip().rstrip(";")
    if csp != CSP:
        out.append(f"{what}: Content-Security-Policy is {answer.headers.get('content-security-policy')!r}")
    for name, value in SECURITY_HEADERS.items():
        if answer.headers.get(name) != value:
            out.append(f"{what}: {name} is {answer.headers.get(name)!r}, not {value!r}")
    return out


@check("sign-out: the session ends", needs=["sign-in: the right password is accepted"])
def sign_out(a):
    open_page(a, "/apps")
    cookie, csrf = session_cookie(a), csrf_of(a)
    expect(cookie is not None, "a session cookie before signing out")
    expect_eq(with_cookie("GET", "/apps", cookie).status_code, 200, "GET /apps with the cookie before signing out")
    form = css(a, "form#logout")
    expect_eq(form.get_attribute("method").lower(), "post", "form#logout method")
    expect_eq(form.get_attribute("action"), S["dash"] + "/logout", "form#logout action")
    submit_and_wait(a, form, "signing out")
    wait_for(a, EC.url_to_be(S["dash"] + "/login"), "/dashboard/login after signing out")
    expect(session_cookie(a) is None, "the browser's session cookie is cleared")
    answer = with_cookie("GET", "/apps", cookie)
    expect_eq(answer.status_code, 303, "GET /apps with the old cookie")
    location = urllib.parse.urljoin(S["dash"] + "/apps", answer.headers.get("location", ""))
    expect_eq(location, S["dash"] + "/login", "redirect of the old cookie")
    answer = with_cookie("POST", "/apps", cookie, data={"name": "after sign-out", "version": "1", "csrf": csrf})
    expect_eq(answer.status_code, 403, "POST with the old cookie and its csrf")
    a.get(S["dash"] + "/apps")
    wait_for(a, EC.url_to_be(S["dash"] + "/login"), "the browser sent to /dashboard/login")
    css(a, "form#login")


# ---------------------------------------------------------------------------------------------

def run_checks(passed, failed):
    a = S["a"] = new_browser()
    for name, fn, needs in CHECKS:
        missing = [n for n in needs if n not in passed]
        if missing:
            failed.append(name)
            print(f"FAIL {name} (not run: needs '{missing[0]}')", flush=True)
            continue
        try:
            fn(a)
        except Exception as e:  # noqa: BLE001 — any failure of a check is that check's FAIL
            failed.append(name)
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not isinstance(e, CheckFailed):
                detail = f"{type(e).__name__}: {detail}\n{traceback.format_exc(limit=3)}"
            print(f"FAIL {name}\n     {detail}", flush=True)
            for key in ("a", "b"):
                if key in S:
                    try:
                        S[key].save_screenshot(os.path.join(
                            SHOTS, f"{BACKEND}-FAIL-{re.sub(r'[^a-z0-9]+', '-', name.lower())}-{key}.png"))
                    except WebDriverException:
                        pass
        else:
            passed.append(name)
            print(f"PASS {name}", flush=True)


def main():
    if BACKEND not in ("sqlite", "postgres"):
        sys.exit(f"usage: {sys.argv[0]} TARGET_DIR [sqlite|postgres]")
    for tool in (CHROMIUM, CHROMEDRIVER, f"{TARGET}/core-service", f"{TARGET}/http-gateway"):
        if not os.path.exists(tool):
            sys.exit(f"test_dashboard: {tool} is missing")
    os.makedirs(SHOTS, exist_ok=True)
    for old in os.listdir(SHOTS):
        if old.startswith(f"{BACKEND}-"):
            os.remove(os.path.join(SHOTS, old))
    # A SIGTERM (or SIGHUP) unwinds like Ctrl-C, so the database is dropped and the programs stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit("test_dashboard: stopped by signal"))
    passed, failed = [], []
    try:
        try:
            start_stack()
        except BaseException:
            failed.append("start")
            raise
        print(f"test_dashboard: {BACKEND}, gateway {S['gateway']}, database {S['db']}", flush=True)
        run_checks(passed, failed)
    except Exception:
        traceback.print_exc()
        raise
    finally:
        for key in ("a", "b"):
            if key in S:
                try:
                    S[key].quit()
                except Exception:  # noqa: BLE001 — the browser may already be gone
                    pass
        if len(passed) + len(failed) < len(CHECKS) and "start" not in failed:
            failed.append("interrupted")
        stop_stack(bool(failed))
        print(f"{len(passed)} passed, {len(failed)} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
