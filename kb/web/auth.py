"""Signing in and out, the account page (own password and API tokens) and accepting an invitation."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from kb import accounts
from kb.errors import InvalidFields, NotAllowed, NotFound, NotSignedIn
from kb.models import User
from kb.web.context import bearer_token, db_session
from kb.web.login import Account
from kb.web.security import is_safe_next

bp = Blueprint("auth", __name__)


def _start_session(user: User, remember: bool = False) -> None:
    """A fresh session at sign-in: nothing from before carries over (no fixation, no stale flags)."""
    session.clear()
    login_user(Account.of(user), remember=remember)


def _wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next")
    if not is_safe_next(next_url):
        next_url = None
    error, status = None, 200
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        password = request.form.get("password", "")
        s = db_session()
        attempt = accounts.begin_sign_in(s, name, request.remote_addr)
        s.commit()  # counted before the slow password check, which runs without holding the write lock
        user = accounts.check_sign_in(attempt, password)
        if attempt.wait:
            error, status = (f"Too many unsuccessful attempts. Please wait {_wait_text(attempt.wait)} "
                             "and try again."), 429
            # Not the name: people sometimes type their password into it.
            current_app.logger.warning("sign-in throttled from %s", request.remote_addr)
        elif user is None:
            error, status = "That name and password do not match an active account.", 401
        else:
            accounts.finish_sign_in(s, attempt)
            s.commit()
            _start_session(user, remember=bool(request.form.get("remember")))
            return redirect(next_url or url_for("wiki.home"))
    response = current_app.make_response((render_template("auth/login.html", error=error, next=next_url), status))
    if status == 429:
        response.headers["Retry-After"] = str(attempt.wait)
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        s = db_session()
        user = s.get(User, current_user.user_id)
        if user is not None:
            accounts.end_sessions(user)  # the old cookie stops working even if someone kept a copy
            s.commit()
    logout_user()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


def _signed_in_user() -> User:
    if bearer_token() is not None:
        # An API token must not mint more tokens or change the password: only a signed-in person may.
        raise NotAllowed("Manage your account in the browser, not with an API token.")
    if not current_user.is_authenticated:
        raise NotSignedIn()
    user = db_session().get(User, current_user.user_id)
    if user is None:
        raise NotSignedIn()
    return user


def _account_page(user: User, errors: dict | None = None, new_token: str | None = None, new_token_name: str = "",
                  status: int = 200):
    return render_template("auth/account.html", user=user, tokens=accounts.list_tokens(db_session(), user),
                           errors=errors or {}, new_token=new_token, new_token_name=new_token_name), status


@bp.route("/account")
def account():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=url_for("auth.account")))
    return _account_page(_signed_in_user())


@bp.route("/account/password", methods=["POST"])
def change_password():
    user = _signed_in_user()
    s = db_session()
    try:
        accounts.change_own_password(s, user, request.form.get("current_password", ""),
                                     request.form.get("new_password", ""), request.form.get("confirm_password", ""))
    except InvalidFields as e:
        s.rollback()
        errors = {("new_password" if k == "password" else k): v for k, v in e.errors.items()}
        return _account_page(s.get(User, user.id), errors=errors, status=422)
    s.commit()
    # Every other session (and remember-me cookie) of this user has just ended; this one continues afresh.
    _start_session(user)
    flash("Your password is changed. You were signed out everywhere else.")
    return redirect(url_for("auth.account"))


@bp.route("/account/tokens", methods=["POST"])
def create_token():
    user = _signed_in_user()
    s = db_session()
    name = request.form.get("name", "").strip()
    if not name:
        return _account_page(user, errors={"token_name": "say what the token is for, e.g. “weekly export script”"},
                             status=422)
    token = accounts.create_token(s, user, name)
    s.commit()
    # Shown in this response only: it is not stored anywhere we could show it from again.
    return _account_page(user, new_token=token, new_token_name=name, status=201)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int):
    user = _signed_in_user()
    s = db_session()
    accounts.revoke_token(s, user, token_id)
    s.commit()
    flash("The token was revoked. Scripts using it will stop working.")
    return redirect(url_for("auth.account"))


@bp.route("/invite/<secret>", methods=["GET", "POST"])
def invitation(secret: str):
    s = db_session()
    inv = accounts.open_invitation(s, secret)
    if inv is None:
        raise NotFound("This invitation link is not valid: it may have expired or been used already. "
                       "Ask your administrator for a new one.")
    errors: dict[str, str] = {}
    display_name = request.form.get("display_name", "").strip()
    if request.method == "POST":
        try:
            user = accounts.accept_invitation(s, secret, request.form.get("password", ""), display_name,
                                              confirm=request.form.get("confirm_password", ""))
        except InvalidFields as e:
            s.rollback()
            errors = e.errors
            inv = accounts.open_invitation(s, secret)
            if inv is None:
                raise NotFound("This invitation link is not valid any more.")
        else:
            s.commit()
            _start_session(user)
            flash(f"Welcome, {user.label}. Your account is ready.")
            return redirect(url_for("wiki.home"))
    return render_template("auth/invitation.html", invitation=inv, errors=errors, display_name=display_name,
                           action=request.path), (422 if errors else 200)
