"""What every request shares: its database session, the clock, JSON helpers and the template globals."""
from __future__ import annotations

import calendar

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from kb import kinds

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

MAIN_NAV = [
    ("wiki.index", "Pages"),
    ("tours.index", "Tours"),
    ("timeline.timeline", "Timeline"),
    ("timeline.calendar", "Calendar"),
    ("curate.recent", "Recent changes"),
    ("curate.index", "Curate"),
]


def db_session() -> Session:
    """The request's session: a write session (lock taken up front) for state-changing methods."""
    if "kb_session" not in g:
        g.kb_session = current_app.extensions["kb_db"].session(write=request.method in WRITE_METHODS)
    return g.kb_session


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


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


def init_app(app: Flask) -> None:
    @app.teardown_request
    def _close_session(_exc):
        session = g.pop("kb_session", None)
        if session is not None:
            session.rollback()
            session.close()

    # Globals rather than context, so that macros imported without context see them too.
    app.jinja_env.globals["KINDS"] = kinds.KINDS
    app.jinja_env.filters["month_name"] = lambda m: calendar.month_name[int(m)] if str(m).isdigit() else m
