"""`WhooshBackend`: the search interface (kb.search.backend) answered from a Whoosh index on this machine.

The index lives in `DATA_DIR/index`; saves reach it through the database's index queue (an `IndexQueueEntry`
written in the save's own transaction), worked off right after the commit or by a per-process worker thread.

Until its entry is done, the index holds a page's old visibility. So every read first asks the database, in one
query, for the current visibility, readers and deletion of the pages that have an entry (`pending`), and the
engine hides those the viewer may no longer read: narrowing is visible as soon as the save is committed, even
while the worker is behind, paused or a rebuild runs (a rebuild deletes only the entries its build contains).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Mapping

from sqlalchemy import insert, not_, or_, select

from kb import access
from kb.access import Viewer
from kb.models import IndexQueueEntry, Page, utcnow
from kb.search.backend import CheckReport, Progress, SearchResults, Suggestion, TriedBefore
from kb.search.whoosh import maintenance, queries
from kb.search.whoosh.engine import SearchIndex
from kb.search.whoosh.view import Pending
from kb.search.whoosh.maintenance import Worker, ensure_index, process_queue, queue_length

log = logging.getLogger(__name__)


def _pending_statement():
    queued = select(IndexQueueEntry.page_id).distinct().subquery()
    open_to_all = access.page_clause(Viewer(anonymous_read=True), Page)
    return (select(queued.c.page_id, Page.visibility, Page.readers, Page.deleted_at)
            .select_from(queued).outerjoin(Page, Page.id == queued.c.page_id)
            .where(or_(Page.id.is_(None), not_(open_to_all))))


_PENDING = _pending_statement()  # built once: building it costs as much as running it on an empty queue


class WhooshBackend:
    """One database's pages, searched through a Whoosh index in `data_dir/index` (see kb.search.backend for what
    each method promises)."""

    name = "whoosh"

    def __init__(self, db, data_dir: str, sync_rebuild_limit: int = 5000):
        self.db = db
        self.data_dir = data_dir
        self.index = SearchIndex(os.path.join(data_dir, "index"))
        self.sync_rebuild_limit = sync_rebuild_limit  # a missing index up to this many pages is rebuilt right away
        self.worker: Worker | None = None
        self._worker_lock = threading.Lock()

    # -- reading
    def pending(self) -> Pending:
        """The pages with an index queue entry, as the database has them now: one query, an index lookup when the
        queue is empty. A page id without a page row counts as deleted.

        Pages that every reader of the site may read (live and open to anonymous readers, by kb.access) cannot
        hide anything and are left out in the query, so a long queue of ordinary saves (an import the worker is
        still indexing) costs a scan of the queue but returns few rows."""
        with self.db.engine.connect() as conn:  # a plain connection: a session costs more than the query
            rows = conn.execute(_PENDING).all()
        return Pending({pid: (visibility, tuple(readers or ()), deleted_at is not None or visibility is None)
                        for pid, visibility, readers, deleted_at in rows})

    def query(self, viewer: Viewer, text: str | None, filters: Mapping[str, str] | None = None,
              sort: str = "relevance", limit: int = 10, offset: int = 0) -> SearchResults:
        filters = filters or {}
        limit = max(1, int(limit or 10))
        offset = max(0, int(offset or 0))
        return queries.search(self.index, viewer, text, kind=filters.get("kind"), tag=filters.get("tag"),
                              status=filters.get("status"), year=filters.get("year"), sort=sort,
                              page=offset // limit + 1, per_page=limit, offset=offset, pending=self.pending)

    def suggest(self, viewer: Viewer, text: str | None, limit: int = 8) -> list[Suggestion]:
        return queries.suggest(self.index, viewer, text, limit=limit, pending=self.pending)

    def tried_before(self, viewer: Viewer, title: str | None, exclude: str | None = None,
                     limit: int = 5) -> TriedBefore:
        return queries.tried_before(self.index, viewer, title, exclude=exclude, limit=limit, pending=self.pending)

    # -- keeping current: every change is a queue entry, committed with the change itself
    def page_saved(self, session, page: Page) -> None:
        session.add(IndexQueueEntry(page_id=page.id))

    def pages_written(self, session, page_ids: list[int]) -> None:
        if page_ids:
            now = utcnow()
            session.execute(insert(IndexQueueEntry), [{"page_id": i, "enqueued_at": now} for i in page_ids])

    def page_deleted(self, session, page: Page) -> None:
        session.add(IndexQueueEntry(page_id=page.id))

    def page_renamed(self, session, page: Page, old_slug: str) -> None:
        session.add(IndexQueueEntry(page_id=page.id))

    def flush(self, patience: float = 0.0) -> int:
        """Work the whole queue off now (a fresh instance's missing index is built first, if small). Never raises.

        With `patience` (commands, which must leave everything they wrote findable), a missing index is built
        whatever its size, and an index locked by another process is waited for up to that many seconds."""
        deadline = time.monotonic() + patience
        done = 0
        try:
            while True:
                if not self.index.exists():
                    # A fresh instance (or a deleted index): small ones are rebuilt right away, big ones by the
                    # worker (or here, by a command).
                    ensure_index(self.db, self.index, sync_limit=None if patience else self.sync_rebuild_limit)
                n = process_queue(self.db, self.index, wait=0.25)
                done += n
                if not patience or time.monotonic() >= deadline or not queue_length(self.db):
                    return done
                if not n:
                    time.sleep(0.2)
        except Exception:
            log.exception("search index update after save failed; the worker will retry")
            return done

    def kick(self) -> None:
        worker = self.worker
        if worker is not None:
            worker.wake.set()

    def start_background(self) -> None:
        """Start this process's index worker (again after a fork: a worker belongs to the process that made it)."""
        worker = self.worker
        if worker is not None and worker.alive():
            return
        with self._worker_lock:
            if self.worker is None or not self.worker.alive():
                self.worker = Worker(self.db, self.index).start()

    # -- repair
    def rebuild(self, progress: Progress | None = None) -> int:
        report = maintenance.rebuild(self.db, self.data_dir, progress=progress)
        self.index.close()
        self.index.damaged = False
        return report.pages

    def check(self) -> CheckReport:
        return maintenance.check(self.db, self.index)

    def repair(self, report: CheckReport | None = None, progress: Progress | None = None) -> CheckReport:
        return maintenance.repair(self.db, self.index, report, progress=progress)

    def repair_at_start(self) -> str:
        """Rebuild a missing or damaged index of up to `sync_rebuild_limit` pages now (a bigger one is rebuilt by
        the worker while search answers "unavailable"): 'ok', 'rebuilt', 'skipped' or 'deferred'."""
        return ensure_index(self.db, self.index, sync_limit=self.sync_rebuild_limit)

    def ready(self) -> bool:
        return self.index.exists()

    def close(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        self.index.close()
