"""Browser tests: the real app under uvicorn on loopback, driven by Debian's Chromium through
Playwright for Python (`apt-get install chromium`; never `playwright install`).

tests/conftest.py registers this module as a plugin (its fixtures: live_app, browser, page). In a
test module:

    from tests.browser import LiveApp, http_login, login, shot

    def test_something(live_app: LiveApp, page: Page) -> None:
        username, password = live_app.user("scanner", ["000.00.04.H40"])
        login(page, live_app.url, username, password)
        shot(page, "start-page")   # tests/output/test_something/01-start-page.png

Every browser test saves screenshots of the pages it visits with `shot`; a failing test also gets
`failed.png` of where its page was. `live_app` is one server per test module (make users with
unique names: `live_app.user(...)` does); `serve(settings)` starts one with other settings.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from api.web.users import UserStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}  # the office PC the pages are made for
OUTPUT = Path(__file__).resolve().parent / "output"
PASSWORD = "mat-khau-thu-nghiem"  # what live_app.user() gives unless told otherwise

_failed = pytest.StashKey[bool]()
_counters: dict[str, itertools.count[int]] = {}


@dataclass
class LiveApp:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    settings: Settings
    pipeline: Pipeline  # the one `submit` runs uploads on (page stages: barcodes, blank pages)
    users: UserStore
    app: FastAPI
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def user(self, role: str, agencies: list[str] | tuple[str, ...] = ("*",),
             username: str | None = None, password: str = PASSWORD, name: str = "") -> tuple[str, str]:
        """Creates a web user (a fresh username unless given); returns (username, password)."""
        username = username or f"{role}{next(self._names)}-{secrets.token_hex(2)}"
        self.users.create(username, password, role, list(agencies),
                          name or f"Người dùng {username}")
        return username, password


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp / "data", "workers": 1, "scanner_discovery": False}
    return Settings(**{**values, **overrides})


@contextmanager
def serve(settings: Settings, submit: Callable[..., dict[str, Any]] | None = None) -> Iterator[LiveApp]:
    """create_app(settings) under uvicorn in a thread on a free loopback port. Uploads are
    digitized at once (ingest.runner.run_file, barcodes and blank pages only) unless `submit`."""
    import uvicorn

    from api.app import create_app

    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    if submit is None:
        def submit(path: Path, **kw: Any) -> dict[str, Any]:
            return run_file(pipeline, path, **kw)
    app = create_app(settings, submit=submit)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield LiveApp(f"http://127.0.0.1:{port}", settings, pipeline, UserStore(settings.storage.catalog_url),
                      app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with serve(make_settings(tmp_path_factory.mktemp("web"))) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies) at 1366x768, in Vietnamese, in Vietnam's time zone."""
    folder = output_dir(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    _counters.pop(str(folder), None)
    context = browser.new_context(viewport=VIEWPORT, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    if request.node.stash.get(_failed, False) and not opened.is_closed():
        with suppress(Exception):  # the page may be gone with the failure
            folder.mkdir(parents=True, exist_ok=True)
            opened.screenshot(path=str(folder / "failed.png"), full_page=True)
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_failed] = report.failed
    return report


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", name)[:120]


def output_dir(test_name: str) -> Path:
    return OUTPUT / _safe(test_name)


def current_test() -> str:
    """The running test's name (`test_x[param]`), from pytest's PYTEST_CURRENT_TEST."""
    running = os.environ.get("PYTEST_CURRENT_TEST", "unknown (call)")
    return running.rsplit("::", 1)[-1].rsplit(" (", 1)[0]


def shot(page: Page, name: str) -> Path:
    """Saves a full-page screenshot as tests/output/<test name>/<NN>-<name>.png; returns its path."""
    folder = output_dir(current_test())
    folder.mkdir(parents=True, exist_ok=True)
    number = next(_counters.setdefault(str(folder), itertools.count(1)))
    path = folder / f"{number:02d}-{_safe(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Page, base_url: str, username: str, password: str = PASSWORD,
          next_path: str | None = None) -> None:
    """Logs in through the login form and waits for the page it leads to."""
    query = f"?next={next_path}" if next_path else ""
    page.goto(f"{base_url}/login{query}")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")


def http_login(base_url: str, username: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    """A raw HTTP client holding a session cookie, and the session's CSRF token."""
    client = httpx.Client(base_url=base_url, trust_env=False, timeout=30)
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, "no CSRF field on the login form"
    done = client.post("/login", data={"username": username, "password": password,
                                       "csrf": token.group(1)})
    assert "sohoa_session" in client.cookies, f"login failed: {done.status_code}"
    return client, csrf_of(client)


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    """The CSRF token of the client's session, as the pages hand it to htmx."""
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get(path, follow_redirects=True).text)
    assert found, "no session CSRF token on the page"
    return found.group(1)
