"""The web layer: request-scoped database session, who is asking, CSRF, headers, logs and error pages.

Blueprints are thin: they parse the request, call a domain module with `db_session()` and `current_viewer()`, and
render. Domain errors (kb.errors) become an HTTP status and a human message here, in one place.

Security that applies to every response lives here too: the standard headers (added by a small WSGI middleware, so
HTML, JSON, error and static responses all get them), Secure cookies over HTTPS, and a logging filter that keeps
passwords and tokens out of every log line.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from flask import Flask, abort, current_app, g, jsonify, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from kb.access import Viewer
from kb.errors import KBError, NotSignedIn
from kb.models import User

login_manager = LoginManager()
csrf = CSRFProtect()

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

MAIN_NAV = [
    ("wiki.index", "Pages"),
    ("tours.index", "Tours"),
    ("timeline.timeline", "Timeline"),
    ("timeline.calendar", "Calendar"),
    ("curate.recent", "Recent changes"),
    ("curate.index", "Curate"),
]

# No inline script or style anywhere: templates link files under /static. Images come from this site only (no CDN,
# and no tracking pixels in page text).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000"


class SecurityMiddleware:
    """Adds the security headers to every response that leaves the app, whatever produced it, and marks cookies
    Secure when the request came over HTTPS (directly, or through a proxy trusted with KB_PROXY_FIX)."""

    def __init__(self, wsgi_app, headers: dict[str, str] | None = None):
        self.wsgi_app = wsgi_app
        self.headers = dict(headers or SECURITY_HEADERS)

    def __call__(self, environ, start_response):
        https = environ.get("wsgi.url_scheme") == "https"
        static = environ.get("PATH_INFO", "").startswith("/static/")

        def start(status, headers, exc_info=None):
            present = {k.lower() for k, _ in headers}
            out = []
            for k, v in headers:
                if https and k.lower() == "set-cookie" and "; secure" not in v.lower():
                    v = v + "; Secure"
                out.append((k, v))
            out.extend((k, v) for k, v in self.headers.items() if k.lower() not in present)
            if https and "strict-transport-security" not in present:
                out.append(("Strict-Transport-Security", HSTS))
            if not static and "cache-control" not in present:
                # Pages differ by who is signed in; no shared cache or back button should keep them.
                out.append(("Cache-Control", "no-store"))
            return start_response(status, out, exc_info)

        return self.wsgi_app(environ, start)


class Lru:
    """A small thread-safe LRU (caches kept in memory by one worker)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def app_lru(name: str, size: int) -> Lru:
    """The current app's LRU called `name`, made on first use."""
    cache = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions[name] = Lru(size)
    return cache


class VerifiedCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, remembering the cookies it verified in the last minute.

    A signed-in reader sends the same Cookie header with every request; parsing it, checking the signature and
    decoding the session again each time was a sizeable part of serving a stored page view. Only a session that
    passed Flask's own check is remembered, under the exact text of the Cookie header it came in (any change is
    checked afresh), and each request gets its own copy.
    """

    REMEMBER_SECONDS = 60.0
    REMEMBER_COOKIES = 1024

    def __init__(self):
        self._serializers: dict = {}
        self._verified = Lru(self.REMEMBER_COOKIES)

    @staticmethod
    def _keys(app: Flask) -> tuple:
        return (*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key)

    def get_signing_serializer(self, app: Flask):
        if not app.secret_key:
            return None
        keys = self._keys(app)
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            self._serializers = {keys: serializer}  # only the current keys are worth keeping
        return serializer

    def open_session(self, app: Flask, request):
        header = request.environ.get("HTTP_COOKIE")
        if not header or not app.secret_key:
            return super().open_session(app, request)
        key = (self._keys(app), self.get_cookie_name(app), header)
        found = self._verified.get(key)
        if found is not None and time.monotonic() - found[2] < self.REMEMBER_SECONDS:
            data, flat = found[0], found[1]
            return self.session_class(dict(data) if flat else copy.deepcopy(data))
        session = super().open_session(app, request)
        if session is not None and session:  # verified (a bad signature gives an empty session)
            data = copy.deepcopy(dict(session))
            flat = all(isinstance(v, (str, int, float, bool, type(None))) for v in data.values())
            self._verified.put(key, (data, flat, time.monotonic()))
        return session


# (words, pattern, replacement): a pattern can only match text holding one of its words (in any case). Most log
# lines, such as each request's access line, hold none, and are let through after one search for all the words.
_SECRET_PATTERNS = [
    (("/invite/",), re.compile(r"(/invite/)[^\s?#\"'/]+"), r"\1[redacted]"),
    (("bearer",), re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), r"\1[redacted]"),
    (("token", "password", "passwd", "secret", "api_key"),
     re.compile(r"(?i)\b((?:[a-z_]*token|password|passwd|secret|api_key|csrf_token)=)[^&\s\"']+"), r"\1[redacted]"),
    (("kb_",), re.compile(r"\bkb_[A-Za-z0-9_-]{16,}"), "kb_[redacted]"),
]
_MAY_HOLD_SECRET = re.compile("|".join(re.escape(w) for words, _, _ in _SECRET_PATTERNS for w in words), re.I)


def redact(text: str) -> str:
    """The text with anything that looks like a password, token or invitation secret replaced."""
    if not _MAY_HOLD_SECRET.search(text):
        return text
    for _, pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Keeps passwords and tokens out of log lines (access logs show paths such as /invite/<secret>)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_REDACT = RedactSecrets()
LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error", "kb")


def _install_log_filter(app: Flask) -> None:
    for logger in [app.logger, *(logging.getLogger(name) for name in LOGGERS)]:
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


class Account(UserMixin):
    """The signed-in user as Flask-Login sees it; its id carries the session version."""

    def __init__(self, user_id: int, name: str, role: str, session_version: int, display_name: str = ""):
        self.user_id, self.name, self.role = user_id, name, role
        self.session_version, self.display_name = session_version, display_name

    def get_id(self) -> str:
        return f"{self.user_id}:{self.session_version}"

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @classmethod
    def of(cls, user) -> "Account":
        return cls(user.id, user.name, user.role, user.session_version, user.display_name)


_ACCOUNT_QUERY = select(User.id, User.name, User.role, User.session_version, User.display_name,
                        User.active).where(User.id == bindparam("user_id"))


class _AccountRow(NamedTuple):
    id: int
    name: str
    role: str
    session_version: int
    display_name: str
    active: bool


def fast_reader():
    """The request's kb.db.FastReader, for the one-row reads every request makes."""
    request_g = g._get_current_object()  # each use of a context proxy costs a lookup; this runs on every request
    reader = request_g.get("kb_fast")
    if reader is None:
        reader = request_g.kb_fast = current_app.extensions["kb_db"].fast_reader()
    return reader


def db_session() -> Session:
    """The request's session: a write session (lock taken up front) for state-changing methods."""
    if "kb_session" not in g:
        g.kb_session = current_app.extensions["kb_db"].session(write=request.method in WRITE_METHODS)
    return g.kb_session


def current_viewer() -> Viewer:
    request_g = g._get_current_object()
    viewer = request_g.get("kb_viewer")
    if viewer is None:
        anon = bool(current_app.config.get("ANONYMOUS_READ"))
        user = current_user._get_current_object()
        if user is not None and user.is_authenticated:
            viewer = Viewer(user.user_id, user.name, user.role, anon)
        else:
            viewer = Viewer(anonymous_read=anon)
        request_g.kb_viewer = viewer
    return viewer


def require_reader() -> None:
    """Anonymous visitors see nothing unless anonymous reading is on; they are sent to sign in."""
    if not current_viewer().may_read_site:
        abort(redirect(url_for("auth.login", next=request.full_path.rstrip("?"))))


def require_api_reader() -> Viewer:
    """The API's version of require_reader: a 401 in JSON instead of a redirect."""
    viewer = current_viewer()
    if not viewer.may_read_site:
        raise NotSignedIn("Sign in or send an API token (Authorization: Bearer TOKEN).")
    return viewer


def kick_index() -> None:
    """After a commit that saved pages: bring the search index up to date now if that is quick."""
    from kb import search

    search.kick(current_app._get_current_object())


def now():
    """The current time (naive UTC). Tests set the config CLOCK to a function to control it."""
    clock = current_app.config.get("CLOCK")
    if clock:
        return clock()
    from kb.models import utcnow

    return utcnow()


def iso(dt) -> str | None:
    """A stored (UTC, naive) time as ISO 8601 for JSON."""
    return dt.isoformat() + "Z" if dt else None


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def wants_json() -> bool:
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json" and not request.accept_mimetypes.accept_html)


def error_response(status: int, message: str, details=None):
    if wants_json():
        return jsonify({"error": message, "details": details}), status
    return render_template("error.html", status=status, message=message, details=details), status


def is_safe_next(target: str | None) -> bool:
    """Only a path on this site: no scheme, no host, no backslash tricks, also after percent-decoding."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return False
    for candidate in {target, unquote(target), unquote(unquote(target))}:
        if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
            return False
        if any(ord(c) < 32 for c in candidate):
            return False
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return False
    return True


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _configure_transport(app: Flask) -> None:
    """Secure cookies and proxy trust. KB_SECURE_COOKIES=1 marks cookies Secure always; without it they are marked
    Secure whenever the request came over HTTPS. KB_PROXY_FIX=N trusts N proxies' X-Forwarded-* headers."""
    if app.config.setdefault("SECURE_COOKIES", _env_flag("KB_SECURE_COOKIES")):
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
    app.wsgi_app = SecurityMiddleware(app.wsgi_app)
    try:
        proxies = int(app.config.setdefault("PROXY_FIX", int(os.environ.get("KB_PROXY_FIX") or 0)))
    except ValueError:
        proxies = 0
    if proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)


def init_app(app: Flask) -> None:
    app.session_interface = VerifiedCookieSessions()
    _configure_transport(app)
    _install_log_filter(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see this page."
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)

    @login_manager.user_loader
    def _load_user(user_key: str):
        if bearer_token() is not None:
            return None  # a request with a token is authenticated by the token alone
        try:
            user_id, version = (int(x) for x in user_key.split(":"))
        except (ValueError, AttributeError):
            return None
        # Every request asks this: one prepared query for the columns it needs, not the whole account.
        row = fast_reader().one(_ACCOUNT_QUERY, {"user_id": user_id})
        user = _AccountRow(*row) if row is not None else None
        if user is None or not user.active or user.session_version != version:
            return None
        return Account.of(user)

    @login_manager.request_loader
    def _load_from_token(_request):
        token = bearer_token()
        if not token:
            return None
        from kb.accounts import user_for_token

        user = user_for_token(db_session(), token)
        return Account.of(user) if user else None

    @login_manager.unauthorized_handler
    def _unauthorized():
        return error_response(401, "Please sign in first.")

    @app.before_request
    def _csrf():
        if (request.method in WRITE_METHODS and bearer_token() is None
                and current_app.config.get("WTF_CSRF_ENABLED", True)):
            csrf.protect()

    @app.teardown_request
    def _close_session(_exc):
        fast = g.pop("kb_fast", None)
        if fast is not None:
            fast.close()
        session = g.pop("kb_session", None)
        if session is not None:
            session.rollback()
            session.close()

    @app.errorhandler(KBError)
    def _kb_error(e: KBError):
        return error_response(e.status, e.message, e.details)

    @app.errorhandler(CSRFError)
    def _csrf_error(e: CSRFError):
        return error_response(400, "This form has expired or was not sent from this site. Please try again.",
                              {"csrf": e.description})

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        messages = {404: "There is no page here.", 405: "That action is not available here.",
                    413: "That is too large.", 400: "The request could not be understood."}
        return error_response(e.code or 500, messages.get(e.code or 500, e.description or e.name))

    @app.errorhandler(Exception)
    def _crash(e: Exception):
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Something went wrong on our side. Nothing was changed.")

    @app.context_processor
    def _template_globals():
        def has_endpoint(name: str) -> bool:
            return name in current_app.view_functions

        return {"viewer": current_viewer(), "has_endpoint": has_endpoint, "main_nav": MAIN_NAV}

    import calendar

    from kb import kinds

    # Globals rather than context, so that macros imported without context see them too.
    app.jinja_env.globals["KINDS"] = kinds.KINDS
    app.jinja_env.filters["month_name"] = lambda m: calendar.month_name[int(m)] if str(m).isdigit() else m

    from kb.views import admin, api, auth, curate, search, timeline, tours, wiki

    for module in (auth, wiki, api, admin, search, tours, timeline, curate):
        app.register_blueprint(module.bp)
