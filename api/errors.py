"""How the REST API (/api/...) answers an error: one body shape, declared in its OpenAPI document.

Every error answer is a JSON object with `detail`:

- 422 (the request is malformed: a parameter, the body, a cursor): a list of problems,
  `{"detail": [{"loc": ["query", "after"], "msg": "...", "type": "..."}]}`, FastAPI's own shape,
  also for what routes check themselves (`invalid`);
- 410 (a dossier code withdrawn as misread): an object,
  `{"detail": {"message", "dossier_id", "renamed_to", "version", "at"}}`;
- every other (400, 401, 403, 404, 405, 409, 413, 416, 503): a message, `{"detail": "no such dossier"}`.

`install` puts the handlers in place (the web app's pages keep their own HTML error pages), and
`answers` is the one table routes declare their possible answers from. Text parameters are
bounded and refuse control characters (`text`), so nothing a client sends reaches the catalog
as a NUL byte or an unbounded string.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

# No C0 or C1 control character (NUL, tab, newline, escape, DEL...) anywhere.
PRINTABLE = r"^[^\x00-\x1F\x7F-\x9F]*$"
# The same, but tabs and line breaks allowed (free text such as a correction's reason).
PRINTABLE_LINES = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
PATTERN_MESSAGES = {
    PRINTABLE: "must not contain control characters (NUL, tab, line breaks and the like)",
    PRINTABLE_LINES: "must not contain control characters (NUL and the like) other than tabs and "
                     "line breaks",
}
MAX_INT = 2**62  # integers from clients (sequence numbers, cursor parts) stay below 64 bits


def text(max_length: int, where: Callable[..., Any] = Query, **kw: Any) -> Any:
    """A text parameter (`where`: fastapi.Query or fastapi.Path) of at most `max_length`
    characters without control characters."""
    return where(max_length=max_length, pattern=PRINTABLE, **kw)


# ---- the error bodies, as OpenAPI components ----------------------------------------------------

class Error(BaseModel):
    """Every error but 410 and 422: what went wrong, for people."""
    detail: str


class Problem(BaseModel):
    """One thing wrong with the request: where (`loc`: "query", "path", "body" or "header",
    then the parameter or field), what (`msg`) and a machine-readable `type`."""
    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """422: the request is malformed; every problem found."""
    detail: list[Problem]


class WithdrawnDetail(BaseModel):
    message: str
    dossier_id: str
    renamed_to: str
    version: int
    at: str | None = None


class Withdrawn(BaseModel):
    """410: the dossier code was withdrawn as misread; its pages are now dossier `renamed_to`."""
    detail: WithdrawnDetail


_ANSWERS: dict[int, dict[str, Any]] = {
    400: {"model": Error, "description": "The request body cannot be read (a multipart body "
                                         "malformed or cut short, a JSON body not in UTF-8)."},
    401: {"model": Error, "description": "No valid API key (`Authorization: Bearer sohoa_...` or "
                                         "`X-API-Key`).",
          "headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                                           "description": "`Bearer`"}}},
    403: {"model": Error, "description": "The key's role may not do this (or a web session's "
                                         "write lacks its X-CSRF-Token)."},
    404: {"model": Error, "description": "Not found, or of an agency the key does not hold: the "
                                         "same answer."},
    409: {"model": Error, "description": "Not possible in the present state (a batch already "
                                         "done or in review; a scanner that cannot scan now)."},
    410: {"model": Withdrawn, "description": "The dossier code was withdrawn as misread: its pages "
                                             "are now dossier `renamed_to`."},
    413: {"model": Error, "description": "The upload is larger than SOHOA_MAX_UPLOAD_MB; nothing "
                                         "was stored."},
    416: {"model": Error, "description": "The Range asked for is outside the file."},
    422: {"model": Invalid, "description": "The request is malformed: every problem, where and "
                                           "what."},
    503: {"model": Error, "description": "A dependency (the task broker) is unreachable; nothing "
                                         "was lost, try again."},
}
ALWAYS = (401, 403, 422)  # every route needs a key of a role that may, and checks its input


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route declares (`responses=`): 401, 403 and 422 and those named."""
    return {status: _ANSWERS[status] for status in sorted({*ALWAYS, *statuses})}


def invalid(loc: tuple[str | int, ...], msg: str, type_: str = "value_error") -> RequestValidationError:
    """A 422 for what a route checks itself, in the same shape as the parameters' own checks."""
    return RequestValidationError([{"loc": list(loc), "msg": msg, "type": type_}])


# ---- the handlers -------------------------------------------------------------------------------

def is_api(request: Request) -> bool:
    path = request.url.path
    return path == "/api" or path.startswith("/api/")


def problem(error: Any) -> dict[str, Any]:
    """One problem as answered: loc, msg, type (the input is not echoed back)."""
    if not isinstance(error, dict):
        return {"loc": [], "msg": str(error), "type": "value_error"}
    loc = [p if isinstance(p, int) else str(p) for p in error.get("loc") or ()]
    msg, kind = str(error.get("msg", "")), str(error.get("type", "value_error"))
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_MESSAGES:
        msg = PATTERN_MESSAGES[ctx["pattern"]]
    elif msg.startswith("Value error, "):  # a ValueError of our own validators: its message
        msg = msg[len("Value error, "):]
    return {"loc": loc, "msg": msg, "type": kind}


def error_body(status: int, detail: Any) -> dict[str, Any]:
    if status == 422:
        listed = detail if isinstance(detail, list) else [detail]
        return {"detail": [problem(e) for e in listed]}
    if status == 410 and isinstance(detail, dict):
        return {"detail": detail}
    return {"detail": detail if isinstance(detail, str) else str(detail)}


Handler = Callable[[Request, Any], Awaitable[Response]]


def install(app: FastAPI) -> None:
    """The API's error handlers, in front of those already installed (the web app's pages),
    which still answer every path outside /api."""
    before_http: Handler = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)
    before_invalid: Handler = app.exception_handlers.get(RequestValidationError,
                                                         request_validation_exception_handler)

    async def http_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, StarletteHTTPException)
        if not is_api(request) or e.status_code in (204, 304):
            return await before_http(request, e)
        return JSONResponse(error_body(e.status_code, e.detail), status_code=e.status_code,
                            headers=e.headers)

    async def invalid_request(request: Request, e: Exception) -> Response:
        assert isinstance(e, RequestValidationError)
        if not is_api(request):
            return await before_invalid(request, e)
        return JSONResponse(error_body(422, list(e.errors())), status_code=422)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
