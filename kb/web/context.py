"""What every request shares: its database session, the clock, JSON helpers, the template globals, and the small
in-memory caches of one worker."""
from __future__ import annotations

import calendar
import copy
import threading
import time
from collections import OrderedDict

from flask import Flask, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
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
    app.session_interface = VerifiedCookieSessions()

    @app.teardown_request
    def _close_session(_exc):
        fast = g.pop("kb_fast", None)
        if fast is not None:
            fast.close()
        session = g.pop("kb_session", None)
        if session is not None:
            session.rollback()
            session.close()

    # Globals rather than context, so that macros imported without context see them too.
    app.jinja_env.globals["KINDS"] = kinds.KINDS
    app.jinja_env.filters["month_name"] = lambda m: calendar.month_name[int(m)] if str(m).isdigit() else m
