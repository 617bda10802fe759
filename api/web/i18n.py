"""Messages of the web app in Vietnamese (the default) and English.

Templates call `t("key")` or `t("key", name=...)` (str.format placeholders). The language is the
`lang` cookie (set by /lang/{code}), else the browser's Accept-Language, else Vietnamese. A key
missing in English falls back to Vietnamese, a key missing everywhere shows as itself. Add every
new key to both catalogs (tests/test_web_auth.py checks they have the same keys); a page module
keeps its own messages beside its routes and registers them with `add(VI={...}, EN={...})`.
"""

from __future__ import annotations

from typing import Any

DEFAULT = "vi"
LANGS = ("vi", "en")
COOKIE = "lang"

VI: dict[str, str] = {
    "app.name": "sohoa — Số hóa hồ sơ",
    "lang.vi": "Tiếng Việt",
    "lang.en": "English",
    "nav.label": "Điều hướng chính",
    "nav.skip": "Bỏ qua, đến nội dung chính",
    "nav.scan": "Quầy quét",
    "nav.review": "Hàng chờ kiểm tra",
    "nav.dossiers": "Hồ sơ",
    "nav.search": "Tra cứu",
    "nav.users": "Quản lý người dùng",
    "nav.logout": "Đăng xuất",
    "nav.language": "Ngôn ngữ",
    "role.scanner": "Nhân viên quét",
    "role.processor": "Cán bộ xử lý",
    "role.auditor": "Cán bộ giám sát",
    "role.admin": "Quản trị viên",
    "login.title": "Đăng nhập",
    "login.intro": "Hệ thống số hóa hồ sơ của Bộ phận Một cửa.",
    "login.username": "Tên đăng nhập",
    "login.password": "Mật khẩu",
    "login.submit": "Đăng nhập",
    "login.failed": "Tên đăng nhập hoặc mật khẩu không đúng.",
    "login.throttled": "Bạn đã đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {minutes} phút.",
    "login.expired": "Trang đăng nhập đã hết hạn. Vui lòng đăng nhập lại.",
    "login.required": "Vui lòng đăng nhập để tiếp tục.",
    "login.logged_out": "Bạn đã đăng xuất.",
    "users.title": "Quản lý người dùng",
    "users.list": "Người dùng",
    "users.username": "Tên đăng nhập",
    "users.display_name": "Họ và tên",
    "users.role": "Vai trò",
    "users.agencies": "Cơ quan",
    "users.agencies_hint": "Mã cơ quan, cách nhau bởi dấu phẩy; * là tất cả các cơ quan.",
    "users.password": "Mật khẩu",
    "users.password_hint": "Ít nhất 8 ký tự.",
    "users.status": "Trạng thái",
    "users.active": "Đang hoạt động",
    "users.disabled": "Đã khóa",
    "users.created": "Ngày tạo",
    "users.actions": "Thao tác",
    "users.disable": "Khóa",
    "users.enable": "Mở khóa",
    "users.new_password": "Mật khẩu mới",
    "users.reset": "Đặt lại mật khẩu",
    "users.create": "Thêm người dùng",
    "users.create_submit": "Tạo người dùng",
    "users.none": "Chưa có người dùng nào.",
    "users.created_ok": "Đã tạo người dùng {username}.",
    "users.disabled_ok": "Đã khóa tài khoản {username}.",
    "users.enabled_ok": "Đã mở khóa tài khoản {username}.",
    "users.reset_ok": "Đã đặt lại mật khẩu cho {username}. Các phiên đăng nhập cũ đã kết thúc.",
    "users.you": "bạn",
    "users.error.username": "Tên đăng nhập gồm 2 đến 64 ký tự: chữ cái không dấu, chữ số, "
                            "dấu chấm, gạch dưới, gạch ngang hoặc @.",
    "users.error.role": "Vai trò không hợp lệ.",
    "users.error.agency": "Mã cơ quan không hợp lệ (ví dụ 000.00.04.H40, hoặc * cho tất cả).",
    "users.error.password": "Mật khẩu phải có từ 8 đến 256 ký tự.",
    "users.error.exists": "Tên đăng nhập này đã có người dùng.",
    "users.error.missing": "Không tìm thấy người dùng.",
    "users.error.scope": "Bạn chỉ quản lý được người dùng thuộc cơ quan của mình.",
    "users.error.self": "Bạn không thể tự khóa tài khoản của chính mình.",
    "page.coming_soon": "Chức năng này đang được xây dựng.",
    "error.title": "Không thực hiện được",
    "error.400": "Yêu cầu không hợp lệ.",
    "error.403": "Bạn không có quyền truy cập trang này.",
    "error.404": "Không tìm thấy trang bạn yêu cầu.",
    "error.405": "Thao tác này không được hỗ trợ.",
    "error.429": "Quá nhiều yêu cầu. Vui lòng thử lại sau.",
    "error.500": "Đã có lỗi xảy ra. Vui lòng thử lại sau.",
    "error.csrf": "Yêu cầu bị từ chối vì lý do bảo mật (thiếu hoặc sai mã chống giả mạo). "
                  "Hãy tải lại trang rồi thử lại.",
    "error.origin": "Yêu cầu đến từ một trang web khác nên bị từ chối.",
    "error.home": "Về trang chủ",
}

EN: dict[str, str] = {
    "app.name": "sohoa — Số hóa hồ sơ",
    "lang.vi": "Tiếng Việt",
    "lang.en": "English",
    "nav.label": "Main navigation",
    "nav.skip": "Skip to the main content",
    "nav.scan": "Scanning station",
    "nav.review": "Review queue",
    "nav.dossiers": "Dossiers",
    "nav.search": "Search",
    "nav.users": "User management",
    "nav.logout": "Log out",
    "nav.language": "Language",
    "role.scanner": "Scanning staff",
    "role.processor": "Processor",
    "role.auditor": "Auditor",
    "role.admin": "Administrator",
    "login.title": "Log in",
    "login.intro": "Digitized dossiers of the one-stop-shop office.",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.failed": "Wrong username or password.",
    "login.throttled": "Too many failed logins. Please try again in {minutes} minutes.",
    "login.expired": "The login page had expired. Please log in again.",
    "login.required": "Please log in to continue.",
    "login.logged_out": "You have logged out.",
    "users.title": "User management",
    "users.list": "Users",
    "users.username": "Username",
    "users.display_name": "Full name",
    "users.role": "Role",
    "users.agencies": "Agencies",
    "users.agencies_hint": "Agency codes separated by commas; * means all agencies.",
    "users.password": "Password",
    "users.password_hint": "At least 8 characters.",
    "users.status": "Status",
    "users.active": "Active",
    "users.disabled": "Disabled",
    "users.created": "Created",
    "users.actions": "Actions",
    "users.disable": "Disable",
    "users.enable": "Enable",
    "users.new_password": "New password",
    "users.reset": "Reset password",
    "users.create": "Add a user",
    "users.create_submit": "Create user",
    "users.none": "No users yet.",
    "users.created_ok": "User {username} created.",
    "users.disabled_ok": "User {username} disabled.",
    "users.enabled_ok": "User {username} enabled.",
    "users.reset_ok": "New password set for {username}. Their earlier sessions have ended.",
    "users.you": "you",
    "users.error.username": "A username has 2 to 64 characters: letters a-z, digits, dot, "
                            "underscore, hyphen or @.",
    "users.error.role": "Not a valid role.",
    "users.error.agency": "Not a valid agency code (for example 000.00.04.H40, or * for all).",
    "users.error.password": "A password has 8 to 256 characters.",
    "users.error.exists": "This username is taken.",
    "users.error.missing": "No such user.",
    "users.error.scope": "You can only manage users of your own agencies.",
    "users.error.self": "You cannot disable your own account.",
    "page.coming_soon": "This page is coming soon.",
    "error.title": "Cannot do that",
    "error.400": "Bad request.",
    "error.403": "You are not allowed to see this page.",
    "error.404": "The page you asked for does not exist.",
    "error.405": "This action is not supported.",
    "error.429": "Too many requests. Please try again later.",
    "error.500": "Something went wrong. Please try again later.",
    "error.csrf": "The request was refused for security reasons (missing or wrong anti-forgery "
                  "token). Reload the page and try again.",
    "error.origin": "The request came from another website and was refused.",
    "error.home": "Back to the home page",
}

MESSAGES: dict[str, dict[str, str]] = {"vi": VI, "en": EN}


def add(vi: dict[str, str], en: dict[str, str]) -> None:
    """A page module's own messages, added at its import: both languages, the same keys, none of
    them taken by another module (keys are namespaced by page: "scan.", "review.", ...)."""
    if set(vi) != set(en):
        raise ValueError(f"messages missing in one language: {sorted(set(vi) ^ set(en))}")
    taken = {k for k in vi if k in VI and VI[k] != vi[k]}
    if taken:
        raise ValueError(f"message keys already used: {sorted(taken)}")
    VI.update(vi)
    EN.update(en)


def translate(lang: str, key: str, **values: Any) -> str:
    text = MESSAGES.get(lang, VI).get(key) or VI.get(key) or key
    return text.format(**values) if values else text


def from_accept_language(header: str) -> str | None:
    """The supported language the browser prefers most (q-values honoured), or None."""
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        if code not in LANGS:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -position) > (best[0], best[1])):
            best = (q, -position, code)
    return best[2] if best else None


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGS:
        return cookie  # type: ignore[return-value]
    return from_accept_language(accept_language or "") or DEFAULT
