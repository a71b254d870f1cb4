"""Administration: accounts and the audit log. Administrators only."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from kb.errors import NotFound
from kb.models import AuditEntry, User
from kb.views import current_viewer, db_session

bp = Blueprint("admin", __name__, url_prefix="/admin")


def require_admin() -> None:
    # Non-administrators see the same answer as for a page that does not exist.
    if not current_viewer().is_admin:
        raise NotFound()


@bp.route("/")
def index():
    require_admin()
    s = db_session()
    users = list(s.scalars(select(User).order_by(User.name)))
    audit = list(s.scalars(select(AuditEntry).order_by(AuditEntry.at.desc()).limit(50)))
    return render_template("admin/index.html", users=users, audit=audit)
