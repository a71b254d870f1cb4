"""Signing in and out."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from kb import accounts
from kb.models import User
from kb.views import Account, db_session, is_safe_next

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next")
    if not is_safe_next(next_url):
        next_url = None
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        password = request.form.get("password", "")
        s = db_session()
        user = accounts.authenticate(s, name, password)
        if user is None:
            error = "That name and password do not match an active account."
        else:
            session.clear()  # a fresh session at sign-in: nothing from before carries over
            login_user(Account.of(user), remember=bool(request.form.get("remember")))
            s.commit()
            return redirect(next_url or url_for("wiki.home"))
    return render_template("auth/login.html", error=error, next=next_url), (401 if error else 200)


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
