"""Browser tests: the admin in a real headless Chromium (Debian's), driven by Selenium.

- One browser for the whole session (starting Chromium costs about a second); each test starts
  with no cookies and a blank page.
- The site is pytest-django's ``live_server`` (a real HTTP server in a thread, static files
  served by staticfiles' handler, so the admin runs with ``DEBUG=0`` and no collectstatic). It
  makes the test transactional: rows are committed, and every table is emptied afterwards, the
  rows data migrations made too (the default warehouse: ``warehouse``; the role groups:
  ``migrated_state``).
- Selenium uses /usr/bin/chromium and /usr/bin/chromedriver and downloads nothing (without the
  driver's path Selenium Manager would try to fetch one). ``make install``/``make test``
  install them with apt when root. Missing, the tests skip with the reason; in CI (``CI`` set)
  they fail instead.
- A failing test leaves ``test-artifacts/browser/<test name>.png`` and ``.html`` (the page as
  the browser had it), and the failure report prints both paths.
- Waits are explicit (``WebDriverWait``), never sleeps.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1400, 1000)
WAIT_SECONDS = 15
ROLE_NAMES = ("Owner", "Catalog manager", "Fulfilment clerk", "Customer support", "Finance")
PASSWORD = "browser-pw-123-long"

_timings: dict[str, float] = {}
_staff_via: dict[str, str] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing_browser() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install: the dev extras)"
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        return (f"{' and '.join(missing)} not found: apt-get install -y chromium chromium-driver "
                "(make install does it when run as root)")
    return ""


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser(request):
    """Headless Chromium for the session. Missing: skip, or fail in CI."""
    reason = _missing_browser()
    if reason:
        if _in_ci():
            pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    request.getfixturevalue("live_server")  # the server outlives the browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--disable-gpu",
                     "--disable-extensions", "--no-first-run", "--lang=en-US"):
        options.add_argument(argument)
    # No "save password?" bubbles or leak warnings over the pages.
    options.add_experimental_option("prefs", {
        "credentials_enable_service": False, "profile.password_manager_enabled": False,
        "profile.password_manager_leak_detection": False,
    })
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def live_server(django_db_setup, live_server):
    """pytest-django's, started after the test database is made, so stopped before it is
    dropped."""
    return live_server


@pytest.fixture(scope="session")
def migrated_state(django_db_setup, django_db_blocker) -> dict:
    """The staff role groups (name -> permissions) as the migrations left them, read before the
    first browser test empties the database.

    Transactional tests flush every table afterwards, data migrations' rows too; ``make_staff``
    puts a missing group back from this. Browser tests sort first among the transactional tests
    (pytest-django runs those after the others; ``tests/browser`` is collected before
    ``tests/test_*.py``), so this sees the migrated database."""
    from django.contrib.auth.models import Group

    with django_db_blocker.unblock():
        return {"groups": {
            group.name: sorted(group.permissions.values_list("content_type__app_label",
                                                             "codename"))
            for group in Group.objects.filter(name__in=ROLE_NAMES)
        }}


@dataclass
class Page:
    """The browser on the live server, with the waits every step needs."""

    driver: object
    base_url: str
    timeout: float = WAIT_SECONDS
    downloads: Path | None = None

    # -- navigation --

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def wait(self, condition, message: str = "", timeout: float | None = None):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout or self.timeout).until(condition, message)

    def ready(self) -> None:
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete",
                  "the page did not finish loading")

    def open(self, path: str) -> None:
        self.driver.get(self.url(path))
        self.ready()

    @contextmanager
    def navigation(self) -> Iterator[None]:
        """Wait, after the block, for the page the block left (a click, a submit) to be
        replaced by the next one, loaded."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        old = self.driver.find_element(By.TAG_NAME, "html")
        yield
        self.wait(EC.staleness_of(old), "the page did not change")
        self.ready()

    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    # -- finding --

    def find(self, css: str, *, visible: bool = True):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        located = EC.visibility_of_element_located if visible else EC.presence_of_element_located
        return self.wait(located((By.CSS_SELECTOR, css)), f"nothing matches {css!r}")

    def find_all(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def link(self, text: str, css: str = "a"):
        """The first visible link (or ``css`` element) reading ``text`` (on a line of its own:
        unfold puts an icon's name on the line before)."""
        from selenium.common.exceptions import StaleElementReferenceException

        def found(driver):
            try:
                for element in self.find_all(css):
                    lines = [line.strip() for line in element.text.splitlines()]
                    if text in lines and element.is_displayed():
                        return element
            except StaleElementReferenceException:
                pass
            return False

        return self.wait(found, f"no visible {css!r} reads {text!r}")

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def see(self, *texts: str, css: str = "body") -> None:
        """Wait until each text shows in ``css``, as the page renders it (case aside: labels
        are often upper-cased by CSS)."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def shows(text):
            def check(driver):
                try:
                    return any(text.lower() in element.text.lower()
                               for element in driver.find_elements(By.CSS_SELECTOR, css))
                except StaleElementReferenceException:
                    return False
            return check

        for text in texts:
            self.wait(shows(text), f"{text!r} never showed in {css!r}")

    def html(self) -> str:
        return self.driver.page_source

    # -- acting --

    def fill(self, name: str, value: str) -> None:
        element = self.find(f'[name="{name}"]')
        element.clear()
        element.send_keys(value)

    def choose(self, name: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(f'select[name="{name}"]', visible=False)).select_by_value(value)

    def click(self, element) -> None:
        """Click and wait for the next page."""
        with self.navigation():
            self.scroll_to(element).click()

    def submit(self, css: str) -> None:
        """Click the (visible) submit button ``css`` and wait for the next page."""
        self.click(self.find(css))

    def scroll_to(self, element):
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        return element

    def status_of(self, path: str, method: str = "GET") -> int:
        """The HTTP status this browser session gets for ``path`` (fetch, same cookies; a POST
        carries the page's CSRF token, so a 403 is not the CSRF check's)."""
        return self.driver.execute_async_script(
            "const [url, method, done] = arguments;"
            "const token = document.querySelector('input[name=csrfmiddlewaretoken]');"
            "const headers = token ? {'X-CSRFToken': token.value} : {};"
            "fetch(url, {method, headers, credentials: 'same-origin', redirect: 'manual'})"
            ".then(r => done(r.status), () => done(-1));",
            self.url(path), method,
        )

    # -- logging in --

    def log_in_with_form(self, username: str, password: str = PASSWORD) -> None:
        """The admin's login form, as a person uses it."""
        self.open("/admin/login/?next=/admin/")
        self.fill("username", username)
        self.fill("password", password)
        self.submit("form [type=submit]")
        assert "/admin/login/" not in self.driver.current_url, self.text()[:500]

    def log_in(self, user) -> None:
        """A session made by ``Client.force_login`` handed to the browser: no form to fill."""
        from django.conf import settings
        from django.test import Client

        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        self.open("/health/live")  # the cookie's origin must be the page's
        self.driver.add_cookie({
            "name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "path": "/",
            "httpOnly": True, "secure": bool(settings.SESSION_COOKIE_SECURE),
        })

    def downloaded(self, suffix: str) -> Path:
        """Wait for a finished download whose name ends with ``suffix``."""
        assert self.downloads is not None

        def done(_driver):
            files = [p for p in self.downloads.iterdir()
                     if p.name.endswith(suffix) and not p.name.endswith(".crdownload")]
            return files[0] if files else False

        return self.wait(done, f"no *{suffix} was downloaded into {self.downloads}")


@pytest.fixture
def page(browser, live_server, tmp_path, request) -> Iterator[Page]:
    """The session's browser, with no cookies and a blank page, on this test's live server;
    downloads go to the test's own folder."""
    from django.db import connections

    # The server's request threads close their database connection after each request:
    # Chromium keeps its connections to the server alive, and a kept-alive thread holding a
    # PostgreSQL connection (DB_CONN_MAX_AGE) stops PostgreSQL from dropping the test database.
    database = connections.settings["default"]
    kept = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    browser.delete_all_cookies()
    browser.get("about:blank")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {
        "behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": False,
    })
    yield Page(browser, live_server.url, downloads=downloads)
    # Stray windows (a printable opened in a tab) closed, the first one kept.
    handles = browser.window_handles
    for handle in handles[1:]:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(handles[0])
    database["CONN_MAX_AGE"] = kept


@pytest.fixture
def warehouse(transactional_db):
    """The default warehouse its data migration made (flushed by the previous test)."""
    from backoffice.inventory.models import Warehouse

    return Warehouse.objects.get_or_create(
        code="main", defaults={"name": "Main warehouse", "is_default": True})[0]


@pytest.fixture
def make_staff(transactional_db, migrated_state, django_user_model, request):
    """``make_staff(role_name, perms)``: a staff user in the role's group when the roles
    exist (their data migration's group, put back after the previous test's flush), else
    given ``perms`` ("app_label.codename"; those not defined yet are left out) directly.
    ``user.role_via`` says which."""
    from django.contrib.auth.models import Group, Permission

    def make(role_name: str, perms: list[str]):
        username = re.sub(r"\W+", "-", role_name.lower())
        user = django_user_model.objects.create_user(
            username, f"{username}@example.com", PASSWORD, is_staff=True)
        definition = migrated_state["groups"].get(role_name)
        group = Group.objects.filter(name=role_name).first()
        if group is None and definition is not None:
            group = Group.objects.create(name=role_name)
            for app_label, codename in definition:
                group.permissions.add(Permission.objects.get(
                    content_type__app_label=app_label, codename=codename))
        if group is not None:
            user.groups.add(group)
            user.role_via = f"group {role_name!r}"
        else:
            found = []
            for perm in perms:
                app_label, codename = perm.split(".")
                found += Permission.objects.filter(
                    content_type__app_label=app_label, codename=codename)
            user.user_permissions.add(*found)
            absent = sorted(set(perms) - {f"{p.content_type.app_label}.{p.codename}"
                                          for p in found})
            user.role_via = "permissions " + ", ".join(sorted(set(perms) - set(absent)))
            if absent:
                user.role_via += f" (not defined yet: {', '.join(absent)})"
        _staff_via[f"{request.node.name}: {role_name}"] = user.role_via
        return user

    return make


# --- reports: artifacts of a failure, timings --------------------------------------------------


def _artifact_stem(item: pytest.Item, *, make: bool = False) -> Path:
    folder = item.config.rootpath / "test-artifacts" / "browser"
    if make:
        folder.mkdir(parents=True, exist_ok=True)
    return folder / re.sub(r"[^\w.-]+", "_", item.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    _timings[item.nodeid] = _timings.get(item.nodeid, 0.0) + report.duration
    if report.when == "setup":  # a previous run's artifacts of this test are stale now
        for suffix in (".png", ".html"):
            _artifact_stem(item).with_suffix(suffix).unlink(missing_ok=True)
    driver = getattr(item, "funcargs", {}).get("browser")
    if report.failed and driver is not None and report.when in ("setup", "call"):
        stem = _artifact_stem(item, make=True)
        saved = []
        try:
            if driver.save_screenshot(str(stem.with_suffix(".png"))):
                saved.append(str(stem.with_suffix(".png")))
            stem.with_suffix(".html").write_text(driver.page_source, encoding="utf-8")
            saved.append(str(stem.with_suffix(".html")))
            url = driver.current_url
        except Exception as exc:  # noqa: BLE001 - a dead browser must not hide the failure
            saved.append(f"(could not save the page: {exc})")
            url = "?"
        report.sections.append(
            ("browser artifacts", f"page: {url}\n" + "\n".join(saved)))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tests = dict(_timings)
    if not tests:
        return
    terminalreporter.section("browser tests")
    for nodeid, seconds in sorted(tests.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:6.2f}s  {nodeid}")
    terminalreporter.write_line(f"{sum(tests.values()):6.2f}s  in all ({len(tests)} tests, "
                                "setup and teardown included)")
    for who, via in sorted(_staff_via.items()):
        terminalreporter.write_line(f"staff {who} -> {via}")
