"""Stored page views: the expensive parts of a page view, kept in the database and shared by every server process.

A page view is an ordinary request: the page is loaded and its access checked (kb.access), the layout, the title,
the verification state and the reader's own buttons are rendered for each request. Only the parts that take a
dozen queries to work out are stored: the tags, field panel and text (with links to pages the reader may not open
marked as wanted), the derived facts and "What links here".

**The invalidation rule, in one sentence:** a stored view is used only while the page, every page it links to and
every page that links to it are at the same revision, address and deletion state as when it was stored, for the
same reader. Those facts are part of its key (`neighbourhood` sums them up in one query), so a save anywhere else
leaves it alone, and a row is never stale, only unused; the oldest rows are pruned.

What it buys, measured by `scripts/bench --pages 10000` (two workers, concurrency 8, signed in): a stored view
answers with two small queries where a first view runs the renderer's dozen, p50 / p95 14 / 20 ms against
30 / 40 ms for a first view, 535 against 260 requests a second (the README's performance section has the rest).
Storing is best effort: a busy or failing write costs a re-render next time, never a failed view.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import zlib
from typing import Callable

from sqlalchemy import bindparam, case, delete, func, select
from sqlalchemy.orm import Session

from kb.access import Viewer
from kb.models import Link, Page, RenderedView, SlugRedirect, utcnow

log = logging.getLogger(__name__)

MAX_ROWS = 100_000  # about 3 KB each once compressed
PRUNE_EVERY_SECONDS = 60.0
PRUNE_BATCH = 2000


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def _neighbourhood_query():
    page_id, slug = bindparam("page_id"), bindparam("slug")
    linked = (select(Page.id).join(Link, Link.target_slug == Page.slug).where(Link.source_id == page_id)
              .union(select(SlugRedirect.page_id).join(Link, Link.target_slug == SlugRedirect.old_slug)
                     .where(Link.source_id == page_id),
                     select(Link.source_id).where(Link.target_slug == slug),
                     select(Link.source_id).join(SlugRedirect, SlugRedirect.old_slug == Link.target_slug)
                     .where(SlugRedirect.page_id == page_id)))
    live = case((Page.deleted_at.is_(None), Page.id), else_=0)
    return (select(func.count(), func.coalesce(func.sum(Page.id), 0), func.coalesce(func.sum(Page.revision), 0),
                   func.coalesce(func.sum(Page.id * Page.revision), 0), func.coalesce(func.sum(live), 0))
            .where(Page.id.in_(linked)))


# Built once: making this statement again for every view cost more than the database takes to answer it.
_NEIGHBOURHOOD = _neighbourhood_query()


def neighbourhood(session: Session, page: Page) -> str:
    """A fingerprint of what a page view shows from other pages: the id, revision and deletion state of every page
    it links to (also through an old address) and of every page linking to it, summed up in the database.

    Revisions only grow and every change of title, address, fields or visibility is a new revision, so any change
    to a neighbour moves the revision sum, and a page joining or leaving the neighbourhood moves the count and the
    id sums. Worked out as one row, so a page with hundreds of links costs the same as one with none.
    """
    row = session.execute(_NEIGHBOURHOOD, {"page_id": page.id, "slug": page.slug}).one()
    return _digest(page.slug + "|" + ",".join(str(int(v)) for v in row))


def key(session: Session, viewer: Viewer, page: Page) -> str:
    """Everything the stored fragments depend on: the page and revision, the reader, and the neighbourhood."""
    reader = _digest(f"{viewer.user_id}\x1f{viewer.name}\x1f{viewer.role}\x1f{int(viewer.anonymous_read)}")
    return f"{page.id}:{page.revision}:{reader}:{neighbourhood(session, page)}"


def _decode(data: bytes | None) -> dict[str, str] | None:
    if data is None:
        return None
    try:
        return json.loads(zlib.decompress(data).decode("utf-8"))
    except Exception:  # a damaged row is only a miss
        log.warning("could not read a stored page view")
        return None


class Store:
    """Reads and writes stored views (one short write transaction each) and prunes the oldest now and then."""

    def __init__(self, db, max_rows: int = MAX_ROWS):
        self.db = db
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._pruned_at = time.monotonic()

    def fragments(self, session: Session, viewer: Viewer, page: Page,
                  render: Callable[[], dict[str, str]]) -> dict[str, str]:
        """The page's stored fragments for this reader, or `render()`'s, stored for next time. `session` is the
        request's: the key and the rendering come from the same snapshot."""
        view_key = key(session, viewer, page)
        found = _decode(session.scalar(select(RenderedView.html).where(RenderedView.key == view_key)))
        if found is not None:
            return found
        fragments = render()
        self.put(view_key, page.id, fragments)
        return fragments

    def put(self, view_key: str, page_id: int, fragments: dict[str, str]) -> bool:
        data = zlib.compress(json.dumps(fragments).encode("utf-8"), 1)
        try:
            with self.db.writing() as s:
                s.merge(RenderedView(key=view_key, page_id=page_id, stored_at=utcnow(), html=data))
        except Exception:
            log.warning("could not store a page view", exc_info=True)
            return False
        self._maybe_prune()
        return True

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._pruned_at < PRUNE_EVERY_SECONDS:
                return
            self._pruned_at = now
        try:
            self.prune()
        except Exception:
            log.warning("could not prune stored page views", exc_info=True)

    def prune(self) -> int:
        """Drop the oldest views beyond max_rows. Returns the number of rows removed."""
        removed = 0
        while True:
            with self.db.writing() as s:
                extra = (s.scalar(select(func.count()).select_from(RenderedView)) or 0) - self.max_rows
                if extra <= 0:
                    break
                oldest = select(RenderedView.key).order_by(RenderedView.stored_at).limit(min(extra, PRUNE_BATCH))
                removed += s.execute(delete(RenderedView).where(RenderedView.key.in_(oldest))).rowcount or 0
        return removed

    def forget_all(self) -> None:
        """Drop every stored view (at start-up: the code that rendered them may have changed)."""
        with self.db.writing() as s:
            s.execute(delete(RenderedView))


def init_app(app) -> None:
    app.extensions["kb_view_store"] = Store(app.extensions["kb_db"], app.config["VIEW_CACHE_ROWS"])


def store_for(app) -> Store:
    return app.extensions["kb_view_store"]
