"""The web app's frame and its own pages: login, logout, language, home, user management. The
scanning station, review queue and dossier pages live in their own modules (scan_pages,
review_pages, dossier_pages), each adding its routes with `add_routes(app, state)`.

`add_web_routes(app, settings, pipeline, log)` adds them to the API app. A page route renders with
`render(request, "page.html", {...})` (api/web/render.py, the frame: templates, menu, filters);
templates extend base.html and call `t("key")`; forms carry `{{ csrf_input() }}`; see
api/web/security.py for the dependencies that give routes their user.

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

import hmac
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.keys import Principal
from api.web import i18n
from api.web.render import NAV, STATIC, error_page, render
from api.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Forbidden,
    LoginLimiter,
    LoginRequired,
    LoginSession,
    WebMiddleware,
    WebState,
    check_csrf,
    clear_session_cookie,
    current_user,
    is_web_path,
    language,
    login_csrf_token,
    optional_session,
    require_role,
    safe_next,
    session_of,
    set_session_cookie,
)
from api.web.users import UserError, UserStore, manages, normalize_agencies, normalize_username

START_PAGES = {"scanner": "/scan", "processor": "/dossiers", "auditor": "/dossiers",
               "admin": "/admin/users"}


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def add_web_routes(app: FastAPI, settings: Any, pipeline: Any = None,
                   log: Callable[..., None] | None = None) -> None:
    """The web app on `app`: pages, /static, error pages for web paths, WebMiddleware. The REST
    API's routes and answers are unchanged. `log` is create_app's audit log."""
    hour = 3600
    users = UserStore(settings.storage.catalog_url, idle=_hours(settings.web.session_idle_hours),
                      absolute=_hours(settings.web.session_max_hours))
    state = WebState(settings=settings, users=users,
                     limiter=LoginLimiter(settings.web.login_max_failures, settings.web.login_window_s),
                     pipeline=pipeline, log=log,
                     trusted_origins=frozenset(o.rstrip("/").lower() for o in settings.web.trusted_origins))
    app.state.web = state
    secure = settings.web.secure_cookies
    session_seconds = int(settings.web.session_max_hours * hour)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(WebMiddleware, refuse=lambda r: error_page(r, 403, "error.origin"),
                       trusted_origins=state.trusted_origins)
    _add_error_handlers(app)

    def login_page(request: Request, next_: str, error: str | None = None, status_code: int = 200,
                   username: str = "", notice: str | None = None, **values: Any) -> HTMLResponse:
        token = login_csrf_token(request)
        lang = language(request)
        response = render(request, "login.html", {
            "login_csrf": token, "next": safe_next(next_), "username": username,
            "error": i18n.translate(lang, error, **values) if error else None,
            "notice": i18n.translate(lang, notice) if notice else None}, status_code=status_code)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="lax",
                            secure=secure)
        return response

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "", bye: int = 0) -> Response:
        if session_of(request) is not None:
            return RedirectResponse(safe_next(next) or "/", 303)
        notice = "login.logged_out" if bye else ("login.required" if safe_next(next) else None)
        return login_page(request, next, notice=notice)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login(request: Request, username: Annotated[str, Form(max_length=200)] = "",
              password: Annotated[str, Form(max_length=1000)] = "",
              csrf: Annotated[str, Form(max_length=200)] = "",
              next: Annotated[str, Form(max_length=2000)] = "") -> Response:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not csrf or not _equal(cookie, csrf):
            return login_page(request, next, "login.expired", 403, username)
        key = f"{normalize_username(username)}|{_client(request)}"
        wait = state.limiter.retry_after(key)
        if wait:
            return login_page(request, next, "login.throttled", 429, username,
                              minutes=max(1, math.ceil(wait / 60)))
        user = users.authenticate(username, password)
        if user is None:
            state.limiter.failed(key)
            name = normalize_username(username)[:64]
            state.audit(request, Principal(f"user:{name}", "", ("",)), "web.login.failed", name, "")
            return login_page(request, next, "login.failed", 401, username)
        state.limiter.clear(key)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            users.end_session(old)  # never keep a session id chosen before login
        token, _ = users.start_session(user)
        response = RedirectResponse(safe_next(next) or "/", 303)
        set_session_cookie(response, token, session_seconds, secure)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", httponly=True, samesite="lax",
                               secure=secure)
        state.audit(request, user.principal, "web.login", user.username)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request,
                     session: Annotated[LoginSession | None, Depends(optional_session)]) -> Response:
        if session is not None:
            await check_csrf(request, session.csrf)
            await run_in_threadpool(users.end_session, request.cookies.get(SESSION_COOKIE, ""))
            await run_in_threadpool(state.audit, request, session.user.principal, "web.logout",
                                    session.user.username)
        response = RedirectResponse("/login?bye=1", 303)
        clear_session_cookie(response, secure)
        return response

    @app.get("/lang/{code}", include_in_schema=False)
    def set_language(code: str, next: str = "") -> Response:
        if code not in i18n.LANGS:
            raise HTTPException(404)
        response = RedirectResponse(safe_next(next) or "/", 303)
        response.set_cookie(i18n.COOKIE, code, max_age=365 * 24 * hour, path="/", httponly=True,
                            samesite="lax", secure=secure)
        return response

    @app.get("/", include_in_schema=False)
    def home(who: Annotated[Principal, Depends(current_user)]) -> Response:
        return RedirectResponse(START_PAGES.get(who.role, "/admin/users"), 303)

    _add_user_admin(app, users, state)
    # Each page of the app in its own module: add_routes(app, state) adds its routes.
    from api.web import (
        bulk_pages,
        dossier_pages,
        report_pages,
        review_pages,
        scan_pages,
        status_pages,
    )

    for module in (scan_pages, review_pages, bulk_pages, dossier_pages, report_pages,
                   status_pages):
        module.add_routes(app, state)


def _hours(value: float) -> timedelta:
    return timedelta(hours=value)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _add_error_handlers(app: FastAPI) -> None:
    async def login_required(request: Request, _: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method not in ("GET", "HEAD"):
            target = ""
        url = "/login" + (f"?{urlencode({'next': target})}" if safe_next(target) not in ("", "/")
                          else "")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": url})
        return RedirectResponse(url, 303)

    async def forbidden(request: Request, e: Exception) -> Response:
        assert isinstance(e, Forbidden)
        return await run_in_threadpool(error_page, request, e.status_code, e.key)

    async def http_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, StarletteHTTPException)
        if not is_web_path(request.url.path) or request.url.path.startswith("/static/"):
            return await http_exception_handler(request, e)
        lang = language(request)
        detail = e.detail if isinstance(e.detail, str) else ""
        key = detail if detail in i18n.VI else f"error.{e.status_code}"
        message = i18n.translate(lang, key) if key in i18n.VI else detail or str(e.status_code)
        return await run_in_threadpool(
            lambda: render(request, "error.html", {"status": e.status_code, "message": message},
                           status_code=e.status_code, headers=e.headers))

    async def invalid(request: Request, e: Exception) -> Response:
        assert isinstance(e, RequestValidationError)
        if not is_web_path(request.url.path):
            return await request_validation_exception_handler(request, e)
        return await run_in_threadpool(error_page, request, 400, "error.400")

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def _add_user_admin(app: FastAPI, users: UserStore, state: WebState) -> None:
    Admin = Annotated[Principal, Depends(require_role("admin"))]

    def page(request: Request, who: Principal, status_code: int = 200, error: str | None = None,
             notice: str | None = None, form: dict[str, str] | None = None,
             **values: Any) -> HTMLResponse:
        lang = language(request)
        shown = [u for u in users.users() if manages(who, u.agencies)]
        return render(request, "admin_users.html", {
            "users": shown,
            "form": form or {"role": "scanner",
                             "agencies": "" if "*" in who.agencies else ", ".join(who.agencies)},
            "error": i18n.translate(lang, error, **values) if error else None,
            "notice": i18n.translate(lang, notice, **values) if notice else None,
        }, status_code=status_code)

    def target(who: Principal, username: str) -> Any:
        found = users.get(username)
        if found is None or not manages(who, found.agencies):
            raise Forbidden("users.error.missing", 404)  # like one that does not exist
        return found

    @app.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
    def admin_users(request: Request, who: Admin, done: str = "", u: str = "") -> Response:
        notice = {"created": "users.created_ok", "disabled": "users.disabled_ok",
                  "enabled": "users.enabled_ok", "reset": "users.reset_ok"}.get(done)
        return page(request, who, notice=notice, username=u[:64])

    @app.post("/admin/users", response_class=HTMLResponse, include_in_schema=False)
    def create_user(request: Request, who: Admin,
                    username: Annotated[str, Form(max_length=200)] = "",
                    display_name: Annotated[str, Form(max_length=200)] = "",
                    role: Annotated[str, Form(max_length=20)] = "",
                    agencies: Annotated[str, Form(max_length=2000)] = "",
                    password: Annotated[str, Form(max_length=1000)] = "") -> Response:
        form = {"username": username, "display_name": display_name, "role": role,
                "agencies": agencies}
        try:
            codes = normalize_agencies(agencies.replace(",", " ").split())
            if not manages(who, codes):
                return page(request, who, 403, "users.error.scope", form=form)
            created = users.create(username, password, role, codes, display_name)
        except UserError as e:
            return page(request, who, 400, e.key, form=form)
        state.audit(request, who, "user.create", created.username, created.agencies[0],
                    role=created.role, agencies=list(created.agencies))
        return RedirectResponse(f"/admin/users?{urlencode({'done': 'created', 'u': created.username})}",
                                303)

    @app.post("/admin/users/{username}/disable", include_in_schema=False)
    def disable_user(request: Request, username: str, who: Admin) -> Response:
        found = target(who, username)
        if who.key_id == f"user:{found.username}":
            return page(request, who, 400, "users.error.self")
        users.set_active(found.username, False)
        state.audit(request, who, "user.disable", found.username, found.agencies[0])
        return RedirectResponse(f"/admin/users?{urlencode({'done': 'disabled', 'u': found.username})}",
                                303)

    @app.post("/admin/users/{username}/enable", include_in_schema=False)
    def enable_user(request: Request, username: str, who: Admin) -> Response:
        found = target(who, username)
        users.set_active(found.username, True)
        state.audit(request, who, "user.enable", found.username, found.agencies[0])
        return RedirectResponse(f"/admin/users?{urlencode({'done': 'enabled', 'u': found.username})}",
                                303)

    @app.post("/admin/users/{username}/reset-password", include_in_schema=False)
    def reset_password(request: Request, username: str, who: Admin,
                       password: Annotated[str, Form(max_length=1000)] = "") -> Response:
        found = target(who, username)
        try:
            users.set_password(found.username, password)
        except UserError as e:
            return page(request, who, 400, e.key)
        state.audit(request, who, "user.reset_password", found.username, found.agencies[0])
        return RedirectResponse(f"/admin/users?{urlencode({'done': 'reset', 'u': found.username})}",
                                303)


def placeholder(app: FastAPI, href: str) -> None:
    """A start page still to be built (page.coming_soon): replace it with the real page."""
    item = next(i for i in NAV if i.href == href)

    def route(request: Request,
              who: Annotated[Principal, Depends(require_role(*item.roles))]) -> HTMLResponse:
        return render(request, "placeholder.html", {"title_key": item.key})

    app.add_api_route(item.href, route, methods=["GET"], response_class=HTMLResponse,
                      include_in_schema=False, name=f"placeholder_{item.href.strip('/')}")
