"""Rendered page views, kept in the database and shared by every server process.

A page view is the page's body as one reader sees it: the text with wanted links marked for that reader, the field
panel, derived facts, backlinks, verification and the reader's own buttons. Working that out takes a dozen queries
and a template; serving it again takes one query. A stored view is keyed by everything it depends on:

- the page and its revision;
- the reader (user, name, role, whether anonymous reading is on): visibility decides links and backlinks;
- the day (verification falls due by date);
- the database generation (kb.db): bumped by every commit that changes anything a page shows, so a stored view is
  never read after such a change. Rows of older generations are pruned.

The reader's CSRF token is not stored: forms in a stored view carry a mark, replaced with the token of the request
that serves it. The mark is derived from the app's secret key, so page text cannot contain it.

Storing is best effort: a busy or failing write costs a re-render next time, never a failed view.
"""
from __future__ import annotations

import hashlib
import json
import hmac
import logging
import threading
import time
import zlib
from datetime import date
from typing import NamedTuple

from sqlalchemy import String, bindparam, cast, delete, func, select
from sqlalchemy.orm import Session

from kb.access import Viewer
from kb.models import Generation, Page, RenderedView

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 30.0
PRUNE_BATCH = 2000
MAX_ROWS = 100_000  # about 3 KB each once compressed


def reader_suffix(viewer: Viewer, day: date, csrf_mark: str = "") -> str:
    """The part of a stored view's key that names the reader and the day; the page and revision come first.

    The CSRF mark is part of it too: views stored under another secret key carry marks this app would not replace.
    """
    who = f"{viewer.user_id}\x1f{viewer.name}\x1f{viewer.role}\x1f{int(viewer.anonymous_read)}\x1f{csrf_mark}"
    return f"{day.isoformat()}:{hashlib.blake2b(who.encode('utf-8'), digest_size=12).hexdigest()}"


def view_key(page_id: int, revision: int, suffix: str) -> str:
    return f"{page_id}:{revision}:{suffix}"


# One query for a page view's fast path: the page's head, the generation, and the stored view for this reader at
# that generation if there is one. Built once; the key is put together in SQL exactly as view_key() does.
_GENERATION = func.coalesce(Generation.value, 0)
_LOOKUP = (
    select(Page.id, Page.slug, Page.title, Page.revision, Page.visibility, Page.readers, Page.deleted_at,
           _GENERATION.label("generation"), RenderedView.html)
    .select_from(Page)
    .outerjoin(Generation, Generation.id == 1)
    .outerjoin(RenderedView, (RenderedView.key == cast(Page.id, String) + ":" + cast(Page.revision, String) + ":"
                              + bindparam("suffix", type_=String))
               & (RenderedView.generation == _GENERATION))
    .where(Page.slug == bindparam("slug"))
)


class Head(NamedTuple):
    id: int
    slug: str
    title: str
    revision: int
    visibility: str
    readers: list
    deleted_at: object
    generation: int
    html: bytes | None


def lookup(reader, slug: str, suffix: str) -> Head | None:
    """The row for a page view at exactly this slug (see _LOOKUP), or None; `reader` is a db.FastReader. The caller
    decides whether the viewer may read it (kb.access)."""
    row = reader.one(_LOOKUP, {"slug": slug, "suffix": suffix})
    if row is None:
        return None
    readers = row[5]
    if isinstance(readers, (str, bytes)):
        readers = json.loads(readers)
    return Head(row[0], row[1], row[2], row[3], row[4], readers or [], row[6], row[7], row[8])


def decode(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return zlib.decompress(data).decode("utf-8")
    except Exception:  # a damaged row is only a miss
        log.warning("could not read a stored page view")
        return None


def mark(secret_key: str | bytes, name: str) -> str:
    """A placeholder that user text cannot contain: it depends on the secret key and never leaves the server."""
    key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    return f"kb-{name}-" + hmac.new(key, f"view-mark:{name}".encode(), hashlib.sha256).hexdigest()[:32]


def stored(session: Session, key: str, generation: int) -> str | None:
    """The stored view for this key at this generation, or None."""
    return decode(session.scalar(select(RenderedView.html).where(RenderedView.key == key,
                                                                 RenderedView.generation == generation)))


_UPSERTS: dict = {}


class Store:
    """Writes stored views (one short write transaction each) and prunes old generations now and then."""

    def __init__(self, db, max_rows: int = MAX_ROWS):
        self.db = db
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._pruned_at = 0.0
        self._pruned_generation = -1

    def put(self, key: str, generation: int, html: str) -> bool:
        """Store a view (unless a newer generation's is there already); False if that could not be done now."""
        data = zlib.compress(html.encode("utf-8"), 1)
        try:
            with self.db.write_connection() as conn:
                conn.execute(self._upsert(conn.dialect.name), {"key": key, "generation": generation, "html": data})
        except Exception:
            log.warning("could not store a page view", exc_info=True)
            return False
        self._maybe_prune(generation)
        return True

    @staticmethod
    def _upsert(dialect: str):
        statement = _UPSERTS.get(dialect)
        if statement is None:
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            values = insert(RenderedView).values(key=bindparam("key"), generation=bindparam("generation"),
                                                 html=bindparam("html"))
            statement = _UPSERTS[dialect] = values.on_conflict_do_update(
                index_elements=[RenderedView.key],
                set_={"generation": values.excluded.generation, "html": values.excluded.html},
                where=RenderedView.generation <= values.excluded.generation)
        return statement

    def _maybe_prune(self, generation: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._pruned_at < PRUNE_EVERY_SECONDS:
                return
            if generation <= self._pruned_generation and now - self._pruned_at < 10 * PRUNE_EVERY_SECONDS:
                return
            self._pruned_at, self._pruned_generation = now, generation
        try:
            self.prune(generation)
        except Exception:
            log.warning("could not prune stored page views", exc_info=True)

    def prune(self, generation: int) -> int:
        """Drop views of generations before this one, and the oldest beyond max_rows. Returns rows removed."""
        removed = 0
        while True:
            with self.db.writing() as s:
                stale = select(RenderedView.key).where(RenderedView.generation < generation).limit(PRUNE_BATCH)
                n = s.execute(delete(RenderedView).where(RenderedView.key.in_(stale))).rowcount or 0
            removed += n
            if n < PRUNE_BATCH:
                break
        with self.db.writing() as s:
            extra = (s.scalar(select(func.count()).select_from(RenderedView)) or 0) - self.max_rows
            if extra > 0:
                oldest = select(RenderedView.key).order_by(RenderedView.generation).limit(extra)
                removed += s.execute(delete(RenderedView).where(RenderedView.key.in_(oldest))).rowcount or 0
        return removed


def store_for(app) -> Store:
    store = app.extensions.get("kb_view_store")
    if store is None:
        store = app.extensions["kb_view_store"] = Store(app.extensions["kb_db"], app.config.get("VIEW_CACHE_ROWS",
                                                                                               MAX_ROWS))
    return store
