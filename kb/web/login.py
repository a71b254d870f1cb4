"""Who is asking: the signed-in account as Flask-Login sees it (from the session cookie or an API token), the
request's Viewer for kb.access, and the checks that send visitors who may not read to sign in."""
from __future__ import annotations

from flask import Flask, abort, current_app, g, redirect, request, url_for
from flask_login import LoginManager, UserMixin, current_user

from kb.access import Viewer
from kb.errors import NotSignedIn
from kb.models import User
from kb.web.context import MAIN_NAV, bearer_token, db_session
from kb.web.errors import error_response

login_manager = LoginManager()


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


def current_viewer() -> Viewer:
    """The request's Viewer (who is asking, for kb.access), worked out once per request."""
    if "kb_viewer" not in g:
        anon = bool(current_app.config["ANONYMOUS_READ"])
        user = current_user
        if user.is_authenticated:
            g.kb_viewer = Viewer(user.user_id, user.name, user.role, anon)
        else:
            g.kb_viewer = Viewer(anonymous_read=anon)
    return g.kb_viewer


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


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see this page."

    @app.context_processor
    def _who_is_asking():
        return {"viewer": current_viewer(), "main_nav": MAIN_NAV}
    @login_manager.user_loader
    def _load_user(user_key: str):
        if bearer_token() is not None:
            return None  # a request with a token is authenticated by the token alone
        try:
            user_id, version = (int(x) for x in user_key.split(":"))
        except (ValueError, AttributeError):
            return None
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
