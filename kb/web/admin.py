"""Administration: accounts (create, invite, change role, deactivate) and the audit log. Administrators only."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from kb import accounts
from kb.errors import InvalidFields, KBError, NotFound
from kb.models import ROLES, AuditEntry, User
from kb.web.context import MAX_PAGE_NUMBER, db_session, whole_number
from kb.web.login import current_viewer

bp = Blueprint("admin", __name__, url_prefix="/admin")

AUDIT_PAGE = 100


def require_admin() -> None:
    # Non-administrators see the same answer as for a page that does not exist.
    if not current_viewer().is_admin:
        raise NotFound()


def _user(name: str) -> User:
    user = db_session().scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"There is no user named {name!r}.")
    return user


def _index(errors: dict | None = None, form: str = "", invite_link: str | None = None, invited=None,
           status: int = 200):
    s = db_session()
    users = list(s.scalars(select(User).order_by(User.active.desc(), func.lower(User.name))))
    return render_template("admin/index.html", users=users, roles=ROLES, audit=accounts.audit_entries(s, 20),
                           invitations=accounts.pending_invitations(s), errors=errors or {}, form=form,
                           values=request.form if errors else {}, invite_link=invite_link, invited=invited,
                           days=accounts.INVITATION_DAYS, max_days=accounts.MAX_INVITATION_DAYS), status


@bp.before_request
def _only_admins():
    require_admin()


@bp.route("/")
def index():
    return _index()


@bp.route("/users", methods=["POST"])
def create_user():
    s = db_session()
    name = request.form.get("name", "").strip()
    try:
        accounts.create_user(s, name, request.form.get("role", "reader"), request.form.get("password", ""),
                             request.form.get("display_name", ""), actor_id=current_viewer().user_id)
    except InvalidFields as e:
        s.rollback()
        return _index(errors=e.errors, form="create", status=422)
    s.commit()
    flash(f"The account {name!r} is ready. Give them the password in person, not by e-mail.")
    return redirect(url_for("admin.index"))


@bp.route("/invitations", methods=["POST"])
def invite():
    s = db_session()
    name = request.form.get("name", "").strip()
    role = request.form.get("role", "reader")
    days = whole_number(request.form, "days", accounts.INVITATION_DAYS, low=-1, high=3650)
    try:
        secret = accounts.create_invitation(s, current_viewer().user_id, name, role, days)
    except InvalidFields as e:
        s.rollback()
        return _index(errors=e.errors, form="invite", status=422)
    s.commit()
    # The link is shown in this response only; only a hash of its secret is stored.
    link = url_for("auth.invitation", secret=secret, _external=True)
    return _index(invite_link=link, invited={"name": name, "role": role, "days": days}, status=201)


@bp.route("/invitations/<int:invitation_id>/cancel", methods=["POST"])
def cancel_invitation(invitation_id: int):
    s = db_session()
    accounts.cancel_invitation(s, current_viewer().user_id, invitation_id)
    s.commit()
    flash("The invitation was cancelled; its link no longer works.")
    return redirect(url_for("admin.index"))


@bp.route("/users/<name>/role", methods=["POST"])
def change_role(name: str):
    s = db_session()
    user = _user(name)
    role = request.form.get("role", "")
    try:
        accounts.change_role(s, current_viewer().user_id, user, role)
    except InvalidFields as e:
        s.rollback()
        return _index(errors={f"role-{name}": e.errors.get("role", e.message)}, status=422)
    s.commit()
    flash(f"{user.label} is now {'an' if role == 'admin' else 'a'} {role}.")
    return redirect(url_for("admin.index"))


@bp.route("/users/<name>/deactivate", methods=["POST"])
def deactivate(name: str):
    s = db_session()
    user = _user(name)
    try:
        accounts.deactivate_user(s, current_viewer().user_id, user)
    except KBError as e:
        s.rollback()
        return _index(errors={f"active-{name}": e.message}, status=e.status)
    s.commit()
    flash(f"{user.label} can no longer sign in; their sessions and API tokens have ended. "
          "Their past edits keep their name.")
    return redirect(url_for("admin.index"))


@bp.route("/users/<name>/reactivate", methods=["POST"])
def reactivate(name: str):
    s = db_session()
    user = _user(name)
    accounts.reactivate_user(s, current_viewer().user_id, user)
    s.commit()
    flash(f"{user.label} can sign in again.")
    return redirect(url_for("admin.index"))


@bp.route("/audit")
def audit():
    s = db_session()
    page_no = whole_number(request.args, "page", 1, low=1, high=MAX_PAGE_NUMBER)
    entries = accounts.audit_entries(s, AUDIT_PAGE + 1, (page_no - 1) * AUDIT_PAGE)
    total = s.scalar(select(func.count(AuditEntry.id))) or 0
    return render_template("admin/audit.html", entries=entries[:AUDIT_PAGE], has_next=len(entries) > AUDIT_PAGE,
                           page_no=page_no, total=total)
