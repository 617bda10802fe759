"""The web app's foundation in a real browser (Chromium through Playwright) and over raw HTTP:
login sessions, CSRF and cross-site checks, roles, user management, languages, login throttling;
and, without a browser, password hashing and session expiry."""

from __future__ import annotations

import hashlib
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text
from starlette.responses import Response

from api.web import i18n
from api.web.security import set_session_cookie
from api.web.users import UserStore, hash_password, verify_password
from tests.browser import LiveApp, http_login, login, shot

H40 = "000.00.04.H40"


def raw(live_app: LiveApp, **kw: object) -> httpx.Client:
    return httpx.Client(base_url=live_app.url, trust_env=False, timeout=30, **kw)  # type: ignore[arg-type]


def session_cookie(page: Page) -> dict | None:
    return next((c for c in page.context.cookies() if c["name"] == "sohoa_session"), None)


# in the browser


@pytest.mark.parametrize(("role", "start"), [("scanner", "/scan"), ("processor", "/dossiers"),
                                             ("auditor", "/dossiers"), ("admin", "/admin/users")])
def test_login_lands_on_the_roles_start_page_and_shows_the_users_name(live_app: LiveApp, page: Page,
                                                                      role: str, start: str) -> None:
    """Given a user of a role, when they log in with the right password, then they land on their
    role's start page with their name in the header."""
    username, password = live_app.user(role, [H40], name="Nguyễn Thị Bình")
    page.goto(f"{live_app.url}/login")
    shot(page, "login")
    page.fill("#username", username.upper())  # usernames are case-insensitive
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(f"{live_app.url}{start}")
    expect(page.locator("header .who")).to_contain_text("Nguyễn Thị Bình")
    shot(page, "start-page")


def test_wrong_password_shows_an_error_in_vietnamese_and_sets_no_session(live_app: LiveApp,
                                                                         page: Page) -> None:
    """Given a user, when they log in with a wrong password, then the login page says so in
    Vietnamese and the browser holds no session cookie."""
    username, _ = live_app.user("processor", [H40])
    login(page, live_app.url, username, "not-the-password")
    expect(page.locator("[role=alert]")).to_have_text("Tên đăng nhập hoặc mật khẩu không đúng.")
    assert session_cookie(page) is None
    shot(page, "wrong-password")


def test_logout_ends_the_session_for_good(live_app: LiveApp, page: Page) -> None:
    """Given a logged-in user, when they log out, then they are back at the login page and their old
    session cookie no longer opens any page."""
    username, password = live_app.user("auditor", [H40])
    login(page, live_app.url, username, password)
    shot(page, "logged-in")
    old = session_cookie(page)
    assert old is not None
    page.click("header button.logout")
    expect(page.locator("[role=status]")).to_have_text("Bạn đã đăng xuất.")
    shot(page, "logged-out")
    with raw(live_app, cookies={"sohoa_session": old["value"]}) as client:
        r = client.get("/search")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=%2Fsearch")


def test_a_page_without_a_session_redirects_to_login_and_back(live_app: LiveApp, page: Page) -> None:
    """Given no session, when a page is opened, then the login page asks to log in and, once logged
    in, the page asked for opens."""
    username, password = live_app.user("admin", [H40])
    page.goto(f"{live_app.url}/admin/users")
    expect(page).to_have_url(f"{live_app.url}/login?next=%2Fadmin%2Fusers")
    expect(page.locator("[role=status]")).to_have_text("Vui lòng đăng nhập để tiếp tục.")
    shot(page, "asked-to-log-in")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(f"{live_app.url}/admin/users")
    shot(page, "back-at-the-page")


def test_session_cookie_is_httponly_and_samesite_lax(live_app: LiveApp, page: Page) -> None:
    """Given a login, then its session cookie is HttpOnly, SameSite=Lax, for the whole site."""
    username, password = live_app.user("scanner", [H40])
    login(page, live_app.url, username, password)
    shot(page, "logged-in")
    cookie = session_cookie(page)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
    assert page.evaluate("document.cookie").find("sohoa_session") == -1  # scripts cannot read it


def test_a_scanner_is_forbidden_the_user_management(live_app: LiveApp, page: Page) -> None:
    """Given a scanner, when they open the user management, then they get the 403 page, and the
    menu does not offer it."""
    username, password = live_app.user("scanner", [H40])
    login(page, live_app.url, username, password)
    expect(page.locator("header nav")).not_to_contain_text("Quản lý người dùng")
    response = page.goto(f"{live_app.url}/admin/users")
    assert response is not None and response.status == 403
    expect(page.locator("[role=alert]")).to_have_text("Bạn không có quyền truy cập trang này.")
    shot(page, "forbidden")


def test_an_admin_creates_a_user_who_can_then_log_in(live_app: LiveApp, page: Page) -> None:
    """Given an admin, when they create a scanner in the browser, then it is listed and can log in
    with the password the admin gave, landing on the scanning station."""
    admin, password = live_app.user("admin", ["*"], name="Quản trị viên Lê")
    login(page, live_app.url, admin, password)
    shot(page, "users")
    page.fill("#new-username", "tran.van.c")
    page.fill("#new-name", "Trần Văn Cường")
    page.select_option("#new-role", "scanner")
    page.fill("#new-agencies", "000.00.04.h40, 000.00.78.H22")
    page.fill("#new-password", "mat-khau-moi-1")
    shot(page, "form-filled")
    page.click("#create-user button[type=submit]")
    expect(page.locator("[role=status]")).to_have_text("Đã tạo người dùng tran.van.c.")
    row = page.locator("#user-tran\\.van\\.c")
    expect(row).to_contain_text("Trần Văn Cường")
    expect(row).to_contain_text("000.00.04.H40, 000.00.78.H22")
    shot(page, "created")
    page.click("header button.logout")
    login(page, live_app.url, "tran.van.c", "mat-khau-moi-1")
    expect(page).to_have_url(f"{live_app.url}/scan")
    expect(page.locator("header .who")).to_contain_text("Trần Văn Cường")
    shot(page, "new-user-logged-in")


def test_language_switch_to_english_changes_the_login_page(live_app: LiveApp, page: Page) -> None:
    """Given the login page in Vietnamese, when EN is chosen in the header, then the page is in
    English, and stays so on the next visit."""
    page.goto(f"{live_app.url}/login")
    expect(page.locator("h1")).to_have_text("Đăng nhập")
    shot(page, "vietnamese")
    page.click("header .langs a[lang=en]")
    expect(page.locator("h1")).to_have_text("Log in")
    expect(page.locator("label[for=username]")).to_have_text("Username")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    shot(page, "english")
    page.goto(f"{live_app.url}/login")
    expect(page.locator("button[type=submit]")).to_have_text("Log in")


def test_htmx_requests_carry_the_sessions_csrf_token(live_app: LiveApp, page: Page) -> None:
    """Given a logged-in page, when htmx posts (here: to /logout), then the token it sends from
    <body hx-headers> is accepted, and the page breaks no Content-Security-Policy rule."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error"
            else None)
    username, password = live_app.user("processor", [H40])
    login(page, live_app.url, username, password)
    old = session_cookie(page)
    assert old is not None and page.evaluate("typeof htmx") == "object"
    with page.expect_response(lambda r: r.url.endswith("/logout")) as posted:
        page.evaluate("htmx.ajax('POST', '/logout', {target: 'main', swap: 'innerHTML'})")
    assert posted.value.status == 303
    shot(page, "after-htmx-post")
    with raw(live_app, cookies={"sohoa_session": old["value"]}) as client:
        assert client.get("/dossiers").status_code == 303  # the session has ended
    assert problems == []


def test_repeated_failed_logins_are_refused_for_a_while(live_app: LiveApp, page: Page) -> None:
    """Given five failed logins for a username from one address, when a sixth comes, even with the
    right password, then it answers 429 with a message to wait."""
    username, password = live_app.user("processor", [H40])
    page.goto(f"{live_app.url}/login")
    statuses = []
    for attempt in range(6):
        page.fill("#username", username)
        page.fill("#password", password if attempt == 5 else f"wrong-{attempt}")
        with page.expect_navigation() as navigation:
            page.click("form[action='/login'] button[type=submit]")
        statuses.append(navigation.value.status if navigation.value else None)
    assert statuses == [401] * 5 + [429]
    expect(page.locator("[role=alert]")).to_contain_text("Bạn đã đăng nhập sai quá nhiều lần")
    assert session_cookie(page) is None
    shot(page, "throttled")


# over raw HTTP


def test_a_post_without_the_csrf_token_is_forbidden(live_app: LiveApp) -> None:
    """Given an admin's session, when a form is posted without its CSRF token, then it is refused
    with 403 and nothing changes; the same post with the token works."""
    admin, password = live_app.user("admin", ["*"])
    client, csrf = http_login(live_app.url, admin, password)
    form = {"username": "no-token-user", "role": "scanner", "agencies": H40, "password": "password-1"}
    with closing(client):
        refused = client.post("/admin/users", data=form)
        assert refused.status_code == 403
        assert live_app.users.get("no-token-user") is None
        wrong = client.post("/admin/users", data={**form, "csrf": "x" * 43})
        assert wrong.status_code == 403
        done = client.post("/admin/users", data={**form, "csrf": csrf})
        assert done.status_code == 303 and live_app.users.get("no-token-user") is not None


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"},
                                     {"Referer": "http://evil.example/page"},
                                     {"Origin": "null"}])
def test_a_cross_site_post_is_forbidden(live_app: LiveApp, headers: dict[str, str]) -> None:
    """Given an admin's session and its CSRF token, when the post comes from another site, then it
    is refused with 403."""
    admin, password = live_app.user("admin", ["*"])
    client, csrf = http_login(live_app.url, admin, password)
    with closing(client):
        r = client.post("/logout", data={"csrf": csrf}, headers=headers)
        assert r.status_code == 403
        assert client.get("/admin/users").status_code == 200  # still logged in


def test_an_htmx_request_without_a_session_gets_401_and_hx_redirect(live_app: LiveApp) -> None:
    """Given no session, when htmx asks for a page, then it answers 401 with HX-Redirect to login."""
    with raw(live_app) as client:
        r = client.get("/dossiers", headers={"HX-Request": "true"})
    assert (r.status_code, r.headers["hx-redirect"]) == (401, "/login?next=%2Fdossiers")


def test_login_never_leads_to_another_site(live_app: LiveApp) -> None:
    """Given a login link whose next is another site, when logging in, then it lands on this site."""
    username, password = live_app.user("auditor", [H40])
    with raw(live_app) as client:
        token = client.cookies.get("sohoa_login_csrf") or ""
        client.get("/login")
        token = client.cookies.get("sohoa_login_csrf") or token
        r = client.post("/login", data={"username": username, "password": password, "csrf": token,
                                        "next": "//evil.example/x"})
    assert (r.status_code, r.headers["location"]) == (303, "/")


def test_a_login_post_without_the_login_token_is_refused(live_app: LiveApp) -> None:
    """Given no login-form cookie (a forged login form), when it posts good credentials, then no
    session starts."""
    username, password = live_app.user("auditor", [H40])
    with raw(live_app) as client:
        r = client.post("/login", data={"username": username, "password": password, "csrf": "x" * 43})
        assert r.status_code == 403 and "sohoa_session" not in client.cookies


def test_an_agency_admin_manages_only_users_of_their_agencies(live_app: LiveApp) -> None:
    """Given an admin of one agency, then users of other agencies are not listed and cannot be
    created, disabled or given a password by them."""
    admin, password = live_app.user("admin", [H40])
    outsider, _ = live_app.user("processor", ["000.00.78.H22"])
    everywhere, _ = live_app.user("auditor", ["*"])
    insider, _ = live_app.user("scanner", [H40])
    client, csrf = http_login(live_app.url, admin, password)
    with closing(client):
        listing = client.get("/admin/users").text
        assert insider in listing and outsider not in listing and everywhere not in listing
        r = client.post("/admin/users", data={"username": "grab", "role": "scanner", "csrf": csrf,
                                              "agencies": "*", "password": "password-1"})
        assert r.status_code == 403 and live_app.users.get("grab") is None
        for name in (outsider, everywhere):
            assert client.post(f"/admin/users/{name}/disable", data={"csrf": csrf}).status_code == 404
            assert client.post(f"/admin/users/{name}/reset-password",
                               data={"csrf": csrf, "password": "password-2"}).status_code == 404
        assert client.post(f"/admin/users/{insider}/disable", data={"csrf": csrf}).status_code == 303
    assert live_app.users.get(insider).active is False  # type: ignore[union-attr]
    assert live_app.users.get(outsider).active is True  # type: ignore[union-attr]


def test_the_rest_api_answers_a_signed_in_user_within_their_role(live_app: LiveApp) -> None:
    """Given a web session of a scanning-staff user, when the pages call the REST API with its
    cookie and no key, then it answers within the user's role, like a key of that role would."""
    scanner, password = live_app.user("scanner", ["000.00.04.H40"])
    client, _ = http_login(live_app.url, scanner, password)
    with closing(client):
        assert client.get("/api/v1/scanners").status_code == 200
        assert client.get("/api/v1/dossiers").status_code == 403  # not a scanning-staff route


def test_the_rest_api_refuses_a_session_write_without_its_csrf_token(live_app: LiveApp) -> None:
    """Given a web session, when a write reaches the REST API with the cookie but without the
    session's X-CSRF-Token (as a forged cross-site request would), then it is refused."""
    scanner, password = live_app.user("scanner", ["000.00.04.H40"])
    client, csrf = http_login(live_app.url, scanner, password)
    files = {"file": ("scan.pdf", b"%PDF-1.4 not really", "application/pdf")}
    with closing(client):
        forged = client.post("/api/v1/batches", files=files)
        wrong = client.post("/api/v1/batches", files=files, headers={"X-CSRF-Token": csrf + "x"})
    assert forged.status_code == wrong.status_code == 403
    assert list((live_app.settings.storage.data_dir / "objects").glob("batches/*")) == []


# without a browser


def test_passwords_are_salted_scrypt_hashes_with_their_parameters() -> None:
    """Given a password, then its hash names scrypt's parameters, differs each time (random salt),
    and only the same password verifies."""
    first, second = hash_password("mật khẩu 1"), hash_password("mật khẩu 1")
    assert first.startswith("scrypt$16384$8$1$") and first != second
    assert verify_password("mật khẩu 1", first) and verify_password("mật khẩu 1", second)
    assert not verify_password("mật khẩu 2", first)
    assert not verify_password("mật khẩu 1", "garbage") and not verify_password("x", "scrypt$1$2$3$4$5")


@pytest.fixture
def clock() -> list[datetime]:
    return [datetime(2026, 1, 5, 8, 0, tzinfo=UTC)]


@pytest.fixture
def store(tmp_path: Path, clock: list[datetime]) -> UserStore:
    return UserStore(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", idle=timedelta(hours=8),
                     absolute=timedelta(hours=24), now=lambda: clock[0])


def test_a_session_ends_after_eight_idle_hours(store: UserStore, clock: list[datetime]) -> None:
    """Given a session used 7 hours after login, then it lives until 8 hours after that use."""
    token, _ = store.start_session(store.create("an", "password-1", "scanner", [H40]))
    clock[0] += timedelta(hours=7)
    assert store.session(token) is not None
    clock[0] += timedelta(hours=7, minutes=59)
    assert store.session(token) is not None
    clock[0] += timedelta(hours=8)
    assert store.session(token) is None


def test_a_session_ends_24_hours_after_login_however_busy(store: UserStore,
                                                          clock: list[datetime]) -> None:
    """Given a session used every hour, then it ends 24 hours after login."""
    token, started = store.start_session(store.create("an", "password-1", "scanner", [H40]))
    for _ in range(23):
        clock[0] += timedelta(hours=1)
        assert store.session(token) is not None
    clock[0] += timedelta(hours=1)
    assert store.session(token) is None
    assert started.expires_at == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


def test_logout_disabling_and_a_new_password_end_sessions(store: UserStore) -> None:
    """Given live sessions, then logging out, disabling the user or setting a new password ends
    them."""
    user = store.create("an", "password-1", "scanner", [H40])
    first, _ = store.start_session(user)
    second, _ = store.start_session(user)
    store.end_session(first)
    assert store.session(first) is None and store.session(second) is not None
    store.set_password("AN", "password-2")
    assert store.session(second) is None
    third, _ = store.start_session(user)
    store.set_active("an", False)
    assert store.session(third) is None
    assert store.authenticate("an", "password-2") is None  # disabled


def test_only_the_session_tokens_digest_is_stored(store: UserStore) -> None:
    """Given a session, then the database holds the SHA-256 of its token, never the token."""
    token, session = store.start_session(store.create("an", "password-1", "scanner", [H40]))
    with create_engine(store.engine.url).connect() as connection:
        rows = connection.execute(text("SELECT token_hash, csrf FROM web_sessions")).all()
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), session.csrf)]
    assert session.user.principal.key_id == "user:an" and session.user.principal.sees(H40)


def test_both_languages_have_every_message() -> None:
    """Then the English catalog has exactly the Vietnamese one's keys."""
    assert set(i18n.EN) == set(i18n.VI)


@pytest.mark.parametrize(("cookie", "accept", "expected"), [
    ("en", "vi-VN,vi;q=0.9", "en"), (None, "en-US,en;q=0.9", "en"), (None, "fr, en;q=0.5", "en"),
    (None, "en;q=0.5, vi;q=0.8", "vi"), (None, "fr-FR", "vi"), (None, None, "vi"), ("xx", None, "vi")])
def test_language_is_the_cookie_else_the_browsers_else_vietnamese(cookie: str | None, accept: str | None,
                                                                  expected: str) -> None:
    assert i18n.pick_language(cookie, accept) == expected


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_is_https_only_when_the_settings_say_so(secure: bool) -> None:
    response = Response()
    set_session_cookie(response, "token", 3600, secure)
    header = response.headers["set-cookie"]
    assert ("; secure" in header.lower()) is secure
    assert "httponly" in header.lower() and "samesite=lax" in header.lower() and "Path=/" in header
