"""Sessions, CSRF and login throttling of the web app; the dependencies of its page routes.

Page routes take the signed-in user as a `Principal` (`api/keys.py`), so every authorization check
is the one API keys get (role, `who.sees(agency)`):

    who: Annotated[Principal, Depends(current_user)]            # any signed-in user
    who: Annotated[Principal, Depends(require_role("scanner"))]  # scanner or admin

Without a live session a page answers 303 to /login?next=..., an htmx request 401 with
`HX-Redirect`; a role that may not answers the 403 page. A state-changing request (POST, PUT,
PATCH, DELETE) must carry the session's CSRF token, as the `X-CSRF-Token` header (htmx sends it:
base.html puts it in `hx-headers` on <body>) or the `csrf` form field (`{{ csrf_input() }}` in a
form): `current_user` and `require_role` check it, so every such route must depend on one of them
(or call `check_csrf`). `WebMiddleware` refuses any state-changing web request whose Origin (or
Referer) is another site, and adds security and cache headers and gzip to web responses; the REST
API under /api is left exactly as it was (API keys only, no cookies).

(No `from __future__ import annotations`: FastAPI reads the dependency annotations at runtime.)
"""

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.keys import Principal
from api.web import i18n
from api.web.users import LoginSession, UserStore

SESSION_COOKIE = "sohoa_session"
LOGIN_CSRF_COOKIE = "sohoa_login_csrf"  # double-submit token of the login form (no session yet)
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
       "object-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
       "base-uri 'self'")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "same-origin",
    "content-security-policy": CSP,
}


def is_web_path(path: str) -> bool:
    """Everything but the REST API is the web app."""
    return not (path == "/api" or path.startswith("/api/"))


class LoginLimiter:
    """Failed logins per key (username|address) in a sliding window, in this process's memory
    (each server process counts its own)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self._failures.get(key, deque())
        while found and found[0] <= now - self.window_s:
            found.popleft()
        return found

    def retry_after(self, key: str) -> float:
        """Seconds until this key may try again; 0 when it may now."""
        with self._lock:
            now = self.clock()
            found = self._recent(key, now)
            if len(found) < self.max_failures:
                return 0.0
            return max(0.0, found[-self.max_failures] + self.window_s - now)

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            if len(self._failures) > 10_000:  # forget keys whose failures have all expired
                self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}
            found = self._recent(key, now)
            found.append(now)
            self._failures[key] = found

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


@dataclass
class WebState:
    """What the web app's routes share, at `request.app.state.web`."""
    settings: Any  # ingest.settings.Settings
    users: UserStore
    limiter: LoginLimiter
    pipeline: Any = None  # ingest.pipeline.Pipeline
    log: Callable[..., None] | None = None  # create_app's audit log(request, who, action, ...)
    trusted_origins: frozenset[str] = field(default_factory=frozenset)

    def audit(self, request: Request, who: Principal, action: str, target: str, agency: str = "",
              **detail: Any) -> None:
        if self.log is not None:
            self.log(request, who, action, target, agency or who.agencies[0], **detail)


def web_state(request: Request) -> WebState:
    return request.app.state.web


class LoginRequired(Exception):
    """No live session: pages redirect to /login?next=..., htmx requests get 401 + HX-Redirect."""


class Forbidden(Exception):
    """Answered with the error page; `key` is the i18n message id."""

    def __init__(self, key: str = "error.403", status_code: int = 403) -> None:
        super().__init__(key)
        self.key, self.status_code = key, status_code


_NO_SESSION = object()


def session_of(request: Request) -> LoginSession | None:
    """The live session of the request's cookie (looked up once per request), else None."""
    cached = getattr(request.state, "web_session", _NO_SESSION)
    if cached is not _NO_SESSION:
        return cached  # type: ignore[return-value]
    token = request.cookies.get(SESSION_COOKIE, "")
    found = web_state(request).users.session(token) if token else None
    request.state.web_session = found
    return found


def optional_session(request: Request) -> LoginSession | None:
    """Dependency (sync: runs in the thread pool, off the event loop)."""
    return session_of(request)


async def check_csrf(request: Request, expected: str) -> None:
    """Forbidden unless the request carries `expected` as X-CSRF-Token or form field `csrf`."""
    sent: Any = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = (await request.form()).get(CSRF_FIELD)  # cached: the route reads the same form
    if not isinstance(sent, str) or not expected \
            or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("error.csrf")
    request.state.csrf_checked = True


async def current_user(request: Request,
                       session: Annotated[LoginSession | None, Depends(optional_session)]) -> Principal:
    """The signed-in user as a Principal (key_id `user:<username>`); CSRF-checked when the
    request changes state."""
    if session is None:
        raise LoginRequired()
    if request.method in UNSAFE_METHODS:
        await check_csrf(request, session.csrf)
    return session.user.principal


def require_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the signed-in user if their role is one of `roles` (admin always is)."""
    async def check(who: Annotated[Principal, Depends(current_user)]) -> Principal:
        if who.role not in roles and who.role != "admin":
            raise Forbidden("error.403")
        return who
    return check


def safe_next(target: str | None) -> str:
    """A path on this site to go to after login, never another site ("" if not acceptable)."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 32 for c in target):
        return ""
    return target


def same_origin(request: Request, trusted: Iterable[str] = ()) -> bool:
    """Origin (else Referer) names this site, or no such header was sent (the CSRF token still
    guards); `null` and other sites are not."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    if source == "null":
        return False
    parts = urlsplit(source)
    if not parts.scheme or not parts.netloc:
        return False
    if f"{parts.scheme}://{parts.netloc}".lower() in trusted:
        return True
    return parts.netloc.lower() == request.headers.get("host", "").lower()


def set_session_cookie(response: Response, token: str, max_age: int, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=secure)


def clear_session_cookie(response: Response, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure)


def login_csrf_token(request: Request) -> str:
    """The login form's double-submit token: the one in the browser's cookie, else a new one."""
    found = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return found if 32 <= len(found) <= 64 and found.replace("-", "").replace("_", "").isalnum() \
        else secrets.token_urlsafe(32)


def language(request: Request) -> str:
    cached = getattr(request.state, "lang", None)
    if cached is None:
        cached = i18n.pick_language(request.cookies.get(i18n.COOKIE),
                                    request.headers.get("accept-language"))
        request.state.lang = cached
    return cached


class WebMiddleware:
    """For web paths only: refuses cross-site state-changing requests (`refuse(request)` answers
    them), adds security headers, `Cache-Control` (no-store for pages; a year for /static URLs
    versioned with `?v=`) and gzip."""

    def __init__(self, app: ASGIApp, refuse: Callable[[Request], Response],
                 trusted_origins: Iterable[str] = ()) -> None:
        self.app, self.refuse = app, refuse
        self.trusted = frozenset(o.rstrip("/").lower() for o in trusted_origins)
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_web_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        versioned = b"v=" in scope.get("query_string", b"")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if static:
                    headers["cache-control"] = "public, max-age=31536000, immutable" if versioned \
                        else "no-cache"
                else:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        if scope["method"] in UNSAFE_METHODS and not same_origin(Request(scope), self.trusted):
            await self.refuse(Request(scope, receive))(scope, receive, send_with_headers)
            return
        await self.gzip(scope, receive, send_with_headers)
