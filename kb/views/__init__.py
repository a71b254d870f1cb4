"""The web layer: request-scoped database session, who is asking, CSRF, headers and error pages.

Blueprints are thin: they parse the request, call a domain module with `db_session()` and `current_viewer()`, and
render. Domain errors (kb.errors) become an HTTP status and a human message here, in one place.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from kb.access import Viewer
from kb.errors import KBError

login_manager = LoginManager()
csrf = CSRFProtect()

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

BLUEPRINTS = ("auth", "wiki", "api", "admin", "search", "tours", "timeline", "curate")

MAIN_NAV = [
    ("wiki.index", "Pages"),
    ("tours.index", "Tours"),
    ("timeline.timeline", "Timeline"),
    ("timeline.calendar", "Calendar"),
    ("curate.recent", "Recent changes"),
    ("curate.index", "Curate"),
]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


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


def db_session() -> Session:
    """The request's session: a write session (lock taken up front) for state-changing methods."""
    if "kb_session" not in g:
        g.kb_session = current_app.extensions["kb_db"].session(write=request.method in WRITE_METHODS)
    return g.kb_session


def current_viewer() -> Viewer:
    if "kb_viewer" not in g:
        anon = bool(current_app.config.get("ANONYMOUS_READ"))
        if current_user and current_user.is_authenticated:
            g.kb_viewer = Viewer(current_user.user_id, current_user.name, current_user.role, anon)
        else:
            g.kb_viewer = Viewer(anonymous_read=anon)
    return g.kb_viewer


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
    if not target or not isinstance(target, str):
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


def init_app(app: Flask) -> None:
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
        from kb.models import User

        user = db_session().get(User, user_id)
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

    @app.after_request
    def _headers(response):
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if request.path.startswith("/api/") or response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.teardown_request
    def _close_session(_exc):
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
        from kb import kinds

        def has_endpoint(name: str) -> bool:
            return name in current_app.view_functions

        nav = [(e, label) for e, label in MAIN_NAV if e in current_app.view_functions]
        return {"viewer": current_viewer(), "KINDS": kinds.KINDS, "has_endpoint": has_endpoint, "main_nav": nav}

    import calendar

    app.jinja_env.filters["month_name"] = lambda m: calendar.month_name[int(m)] if str(m).isdigit() else m

    import importlib

    for name in BLUEPRINTS:
        try:
            module = importlib.import_module(f"kb.views.{name}")
        except ModuleNotFoundError:  # TEMPORARY while parts are being written
            continue
        app.register_blueprint(module.bp)
