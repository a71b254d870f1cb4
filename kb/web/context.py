"""What every request shares: its database session, the clock, JSON helpers and the template globals."""
from __future__ import annotations

import calendar

from typing import Any, Mapping

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter

from kb import kinds
from kb.errors import BadParameter

# The largest whole number both databases store (a signed 64-bit integer): every number from outside is checked
# against it here, so none reaches the database to overflow there.
MAX_NUMBER = 2**63 - 1
MAX_PAGE_NUMBER = 10_000_000  # of a paged list
MAX_OFFSET = 1_000_000_000  # rows skipped in an API list

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


class NumberConverter(IntegerConverter):
    """`<int:...>` in every route: a number too big for the database matches no route, so it is a 404 like any
    other address that leads nowhere."""

    def __init__(self, url_map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_NUMBER,
                 signed: bool = False) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


def whole_number(values: Mapping[str, Any], name: str, default: int | None, low: int = 0,
                 high: int = MAX_NUMBER) -> int | None:
    """The whole number called `name` in a query string, form or JSON body, between `low` and `high`; `default`
    when it is absent or empty. Anything else raises BadParameter (400) naming it. The one place a number from
    outside is read."""
    raw = values.get(name)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BadParameter(name, "must be a whole number")
    text = raw.strip() if isinstance(raw, str) else str(raw)
    if not text.lstrip("-").isdigit() or len(text) > 30:
        raise BadParameter(name, f"must be a whole number, not {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = NumberConverter

    @app.teardown_request
    def _close_session(_exc):
        session = g.pop("kb_session", None)
        if session is not None:
            session.rollback()
            session.close()

    # Globals rather than context, so that macros imported without context see them too.
    app.jinja_env.globals["KINDS"] = kinds.KINDS
    app.jinja_env.globals["status_is_open"] = kinds.is_open
    app.jinja_env.filters["month_name"] = lambda m: calendar.month_name[int(m)] if str(m).isdigit() else m
