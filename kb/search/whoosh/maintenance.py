"""Keeping the Whoosh index true to the database: the queue, full rebuilds, checks and repairs, the worker.

* Keeping it current: every save puts an `IndexQueueEntry` in the same transaction as the page. `process_queue`
  works those entries off (right after the save's commit, when the backend is kicked or flushed; a per-process
  background `Worker` picks up whatever could not be done then because the index was locked by another process,
  damaged or missing). Queue entries are deleted only after the index commit, so a failure loses nothing.
* Repair: `rebuild` writes a fresh build (a new directory holding a whole index) and swaps it in by replacing the
  `CURRENT` pointer file (an atomic rename); `check` compares database and index (which pages, which revisions);
  `repair` fixes drift; `ensure_index` (start-up) rebuilds a missing or damaged index instead of crashing (a
  missing or damaged column file is rebuilt from its segment when the segment is opened).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from sqlalchemy import delete, func, select
from whoosh import index as whoosh_index
from whoosh.filedb.filestore import FileStorage
from whoosh.index import LockError
from whoosh.reading import SegmentReader

from kb.models import IndexQueueEntry, Page
from kb.processes import die_with_parent
from kb.search.backend import CheckReport
from kb.search.whoosh import columns, internals
from kb.search.whoosh.documents import SCHEMA, document_for, page_stamp
from kb.search.whoosh.engine import (BUILD_PREFIX, BUILD_PREFIXES, INDEX_NAME, POINTER, IndexMissing,
                                     IndexUnavailable, SearchIndex, _quiet_damage)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Writing: the queue, add/remove, full rebuilds

def add_to_index(writer, pages: Iterable[Page]) -> int:
    """Add or replace these pages' documents (deleted pages are removed)."""
    n = 0
    for page in pages:
        if page.deleted_at is not None:
            writer.delete_by_term("id", str(page.id))
        else:
            writer.update_document(**document_for(page))
        n += 1
    return n


def remove_from_index(writer, page_ids: Iterable[int]) -> None:
    for pid in page_ids:
        writer.delete_by_term("id", str(pid))


QUEUE_BATCH = 500


def process_queue(db, index: SearchIndex, batch: int | None = None, wait: float = 0.0,
                  max_batches: int | None = None) -> int:
    """Index the pages waiting in the queue; returns how many queue entries were done.

    Entries are deleted only after the index commit. A locked index (another process is writing), a damaged or
    missing one, or a full disk is logged and leaves the entries for later; nothing here raises for those.
    """
    batch = batch or QUEUE_BATCH
    got = index.write_lock.acquire(timeout=wait) if wait > 0 else index.write_lock.acquire(blocking=False)
    if not got:
        return 0
    done = 0
    try:
        batches = 0
        while max_batches is None or batches < max_batches:
            batches += 1
            n = _process_batch(db, index, batch)
            done += max(n, 0)
            if n < batch:
                break
    finally:
        index.write_lock.release()
    return done


def _process_batch(db, index: SearchIndex, batch: int) -> int:
    with db.reading() as session:
        # Entries first, pages second, in one read transaction: a save after this point keeps its own entry.
        entries = session.execute(
            select(IndexQueueEntry.id, IndexQueueEntry.page_id).order_by(IndexQueueEntry.id).limit(batch)).all()
        if not entries:
            return 0
        page_ids = sorted({pid for _, pid in entries})
        pages = {p.id: p for p in session.scalars(select(Page).where(Page.id.in_(page_ids)))}
        docs = {pid: document_for(p) for pid, p in pages.items() if p.deleted_at is None}
    try:
        ix = index.open()
    except IndexUnavailable as e:
        log.warning("search index unavailable, %d page(s) wait in the queue: %s", len(entries), e)
        index.damaged = not isinstance(e, IndexMissing)
        return -1
    try:
        writer = ix.writer(timeout=0.0)
    except LockError:
        log.info("search index is locked by another process; %d page(s) wait in the queue", len(entries))
        return -1
    except Exception as e:
        log.warning("cannot write to the search index (%r); %d page(s) wait in the queue", e, len(entries))
        return -1
    try:
        if index.current_build() != index._build:
            raise IndexUnavailable("the index was rebuilt while we waited")  # write into the new one next time
        _remove_old_versions(index, writer, page_ids)
        for pid in page_ids:
            if pid in docs:
                writer.add_document(**docs[pid])
        # A save adds a small segment and merges nothing (merging costs up to a second at 10,000 pages); the
        # background worker merges small segments (`merge_segments`), or this does once there are too many.
        writer.commit(merge=len(writer.segments) >= MAX_SEGMENTS)
        _tidy_columns(ix)
    except BaseException as e:
        try:
            writer.cancel()
        except Exception:
            pass
        if not isinstance(e, Exception):
            raise
        if index.current_build() != index._build:  # another process swapped in a new index: routine
            log.info("search index was swapped by another process; %d page(s) wait for the new one", len(entries))
            index.close()
        else:
            log.warning("search index update failed (%r); %d page(s) wait in the queue", e, len(entries))
        return -1
    ids = [i for i, _ in entries]
    try:
        with db.writing() as session:
            for chunk in range(0, len(ids), 500):
                session.execute(delete(IndexQueueEntry).where(IndexQueueEntry.id.in_(ids[chunk:chunk + 500])))
    except Exception:
        # The index has the pages; the entries will be done again later, which is harmless.
        log.exception("could not clear %d search queue entries", len(ids))
    return len(entries)


def _tidy_columns(ix, min_age: float = 300.0, write_missing: bool = False) -> None:
    """Remove the column files of segments that are gone; with `write_missing`, write missing ones. Never raises.

    Files younger than `min_age` seconds are kept: another process may have written a segment it has not committed
    yet (a stale file costs only disk space until the next tidy)."""
    try:
        folder = getattr(ix.storage, "folder", None)
        if not folder:
            return
        segments = internals.segments(ix)
        if write_missing:
            columns.ensure_files(folder, segments, lambda seg: SegmentReader(ix.storage, ix.schema, seg))
        columns.remove_unused(folder, {seg.segment_id() for seg in segments}, min_age=min_age)
    except Exception:
        log.warning("could not tidy the search index column files", exc_info=True)


MAX_SEGMENTS = 24  # past this many segments a queue commit merges the small ones itself
MERGE_AT = 8  # the background worker merges small segments past this many


def _remove_old_versions(index: SearchIndex, writer, page_ids: list[int]) -> None:
    """Delete the indexed documents of these pages. Uses the warm searcher's document numbers when it reads exactly
    the segments the writer holds (opening a reader over every segment per save is the slow part of
    `update_document`), and Whoosh's own lookup otherwise."""
    segments = [seg.segment_id() for seg in writer.segments]
    with index._lock:  # the view must stay current while its document numbers are used
        view = index._view
        if view is not None and view.build == index._build and [leaf.segment().segment_id() for leaf, _, _ in
                                                                view.leaves] == segments and view.damage() is None:
            total = sum(seg.doc_count_all() for seg in writer.segments)
            if total == view.n:
                for pid in page_ids:
                    for d in view.id_docs(str(pid)):
                        if not writer.is_deleted(d):
                            writer.delete_document(d)
                return
    for pid in page_ids:
        writer.delete_by_term("id", str(pid))


def merge_segments(index: SearchIndex) -> bool:
    """Merge small segments (Whoosh's MERGE_SMALL) when there are more than MERGE_AT; for the background worker.

    Another process may swap in a rebuilt index (and remove the build this one read) while the merge runs: that is
    routine, nothing is lost (the new build has every page), and it is logged as one INFO line. Any other failure
    is an ERROR with its traceback."""
    with index.write_lock:
        try:
            ix = index.open()
            build = index._build
            if len(internals.segments(ix)) <= MERGE_AT:
                return False
            writer = ix.writer(timeout=0.0)
        except (LockError, IndexUnavailable):
            return False
        with _quiet_damage() as state:
            try:
                writer.commit(merge=True)
                _tidy_columns(ix)
                return True
            except Exception as e:
                state["failed"] = True
                try:
                    writer.cancel()
                except Exception:
                    pass
                writer = None  # its open files are freed by _quiet_damage, without ResourceWarnings
                if index.current_build() != build or not os.path.isdir(index.build_dir(build or "")):
                    log.info("search index merge skipped: another process swapped in a new index (%s)",
                             type(e).__name__)
                    index.close()
                else:
                    log.exception("merging search index segments failed")
                return False


def queue_length(db) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(IndexQueueEntry)) or 0


@dataclass
class RebuildReport:
    pages: int = 0
    seconds: float = 0.0
    directory: str = ""
    skipped: bool = False  # another process was rebuilding

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


class _FileLock:
    """An exclusive flock on a file outside the index directory (so it survives the index being deleted)."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                os.close(self.fd)
                self.fd = None
                return False
            time.sleep(0.05)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _rebuild_lock(data_dir: str) -> _FileLock:
    return _FileLock(os.path.join(data_dir, "index-rebuild.lock"))


def _whoosh_write_lock(build_dir: str):
    """The write lock of an existing build, taken without opening it (it may be damaged)."""
    try:
        lock = FileStorage(build_dir).lock(f"{INDEX_NAME}_WRITELOCK")
        return lock
    except Exception:
        return None


REBUILD_PROCS = min(2, os.cpu_count() or 1)

# While a rebuild runs Whoosh's multi-process writer, the pid of the process that runs it: the writer's worker
# processes (forked by multiprocessing) then ask to be killed when it dies, so that kill -9 of `kb reindex` leaves
# no orphan indexing away for half a minute. 0 otherwise: other forks (server workers) are left alone.
_CHILDREN_DIE_WITH = 0


def _after_fork_in_child() -> None:
    if _CHILDREN_DIE_WITH:
        die_with_parent(_CHILDREN_DIE_WITH)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def rebuild(db, data_dir: str, progress: Callable[[str, int, int], None] | None = None, procs: int | None = None,
            blocking: bool = True, only_if_unusable: bool = False) -> RebuildReport:
    """Write a new build of the index from the database, in a new directory, and swap it in atomically.

    `progress("index", done, total)` is called as pages are added (the CLI's progress bar). While it runs, queue
    processing into the old index is held off (its write lock is taken), so no save made meanwhile is lost: its
    queue entry is done afterwards. Uses two processes for big rebuilds (Whoosh's multi-segment writer).
    """
    started = time.monotonic()
    root = os.path.join(data_dir, "index")
    os.makedirs(root, exist_ok=True)
    lock = _rebuild_lock(data_dir)
    if not lock.acquire(blocking=blocking, timeout=600 if blocking else None):
        return RebuildReport(skipped=True)
    index = SearchIndex(root)
    if only_if_unusable and _usable(index):  # another process rebuilt it while we waited for the lock
        index.close()
        lock.release()
        return RebuildReport(skipped=True)
    old_build = index.current_build()
    old_lock = None
    try:
        if old_build:
            old_lock = _whoosh_write_lock(index.build_dir(old_build))
            if old_lock is not None and not _try(old_lock.acquire, 30.0):
                log.warning("the search index stayed locked for 30 s; rebuilding anyway")
                old_lock = None
        build = f"{BUILD_PREFIX}{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        build_dir = index.build_dir(build)
        os.makedirs(build_dir)
        try:
            done, queued = _index_every_page(db, build_dir, progress, procs)
        except BaseException:
            shutil.rmtree(build_dir, ignore_errors=True)
            raise
        _swap(root, build)
        # The pages queued before the snapshot are in the new index.
        if queued:
            with db.writing() as session:
                for chunk in range(0, len(queued), 500):
                    session.execute(delete(IndexQueueEntry).where(IndexQueueEntry.id.in_(queued[chunk:chunk + 500])))
        _remove_old_builds(root, keep={build, old_build})
        return RebuildReport(pages=done, seconds=time.monotonic() - started, directory=build_dir)
    finally:
        if old_lock is not None:
            try:
                old_lock.release()
            except Exception:
                pass
        lock.release()


def _index_every_page(db, build_dir: str, progress, procs: int | None) -> tuple[int, list[int]]:
    """Index every live page into a new index in `build_dir`; returns (pages, queue entry ids seen)."""
    global _CHILDREN_DIE_WITH
    ix = whoosh_index.create_in(build_dir, SCHEMA, indexname=INDEX_NAME)
    procs = REBUILD_PROCS if procs is None else procs
    with db.reading() as session:
        total = session.scalar(select(func.count()).select_from(Page).where(Page.deleted_at.is_(None))) or 0
        queued = list(session.scalars(select(IndexQueueEntry.id)))
        # Sub-processes only from a main thread: forking a threaded server process is asking for trouble.
        use_procs = procs if total >= 2000 and threading.current_thread() is threading.main_thread() else 1
        if use_procs > 1:
            _CHILDREN_DIE_WITH = os.getpid()  # the main thread's: PR_SET_PDEATHSIG follows the forking thread
            writer = ix.writer(procs=use_procs, multisegment=True, limitmb=256, batchsize=250)
        else:
            writer = ix.writer(limitmb=256)
        done = 0
        try:
            for page in _live_pages(session):
                writer.add_document(**document_for(page))
                done += 1
                if progress and done % 500 == 0:
                    progress("index", done, total)
            writer.commit()
        except BaseException:
            writer.cancel()
            raise
        finally:
            _CHILDREN_DIE_WITH = 0
    # Every segment got its column file as it was written; a segment written where the hook could not (another
    # codec) gets it here, and files of segments merged away go.
    _tidy_columns(ix, min_age=0.0, write_missing=True)
    if progress:
        progress("index", done, total)
    return done, queued


def _live_pages(session, chunk: int = 500) -> Iterable[Page]:
    """Every live page, in id order, a chunk at a time (inside the caller's one read transaction)."""
    last = 0
    while True:
        pages = list(session.scalars(select(Page).where(Page.deleted_at.is_(None), Page.id > last)
                                     .order_by(Page.id).limit(chunk)))
        if not pages:
            return
        yield from pages
        last = pages[-1].id
        session.expunge_all()


def _try(acquire, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if acquire(blocking=False):
                return True
        except Exception:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _swap(root: str, build: str) -> None:
    tmp = os.path.join(root, f".{POINTER}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(build + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, POINTER))


def _remove_old_builds(root: str, keep: set) -> None:
    """Remove superseded builds, but keep the one just replaced: other processes may still be reading it."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name in keep or name == POINTER or not os.path.isdir(path):
            continue
        if name.startswith(BUILD_PREFIXES):
            shutil.rmtree(path, ignore_errors=True)
    for name in os.listdir(root):
        if name.startswith(f".{POINTER}."):
            try:
                if time.time() - os.path.getmtime(os.path.join(root, name)) > 60:
                    os.remove(os.path.join(root, name))
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------------------------
# Checking and repairing

def check(db, index: SearchIndex) -> CheckReport:
    """Compare which pages and which revisions the database and the index hold, and verify the index's files.

    Only reads: every segment is opened afresh and its stored documents read through Whoosh, and every column file
    is verified (header, size, checksum) without being rebuilt, so damage is reported, never repaired, here."""
    report = CheckReport()
    with db.reading() as session:
        rows = session.execute(select(Page.id, Page.revision, Page.slug, Page.visibility, Page.readers,
                                      Page.updated_at).where(Page.deleted_at.is_(None))).all()
        report.queued = session.scalar(select(func.count()).select_from(IndexQueueEntry)) or 0
    expected = {r[0]: page_stamp(r[0], r[1] or 0, r[2], r[3] or "public", r[4], r[5]) for r in rows}
    report.pages = len(expected)
    seen: dict[int, str] = {}
    dupes: set[int] = set()
    fresh = SearchIndex(index.root)  # not the caller's warm view: what is on disk now
    with _quiet_damage() as state:
        try:
            ix = fresh.open()
            folder = fresh.build_dir(fresh._build)
            for segment in internals.segments(ix):
                report.files += 1
                name = segment.make_filename(segment.COMPOUND_EXT) if segment.is_compound() else \
                    segment.segment_id()
                try:
                    leaf = SegmentReader(ix.storage, ix.schema, segment)
                    try:
                        for stored in leaf.all_stored_fields():
                            pid = int(stored.get("id") or 0)
                            if pid in seen:
                                dupes.add(pid)
                            seen[pid] = stored.get("stamp") or ""
                    finally:
                        leaf.close()
                except Exception as e:
                    state["failed"] = True
                    report.damaged.append(f"{name}: {type(e).__name__}: {e}")
                cols = columns.file_name(segment.segment_id())
                try:
                    columns.Columns(os.path.join(folder, cols), segment.segment_id(), segment.doc_count_all()).close()
                except FileNotFoundError:
                    report.damaged.append(f"{cols}: missing")
                except Exception as e:
                    report.damaged.append(f"{cols}: {e}")
        except IndexUnavailable as e:
            report.usable, report.problem = False, str(e)
        except Exception as e:
            report.usable, report.problem = False, f"the search index cannot be read: {e!r}"
            state["failed"] = True
        finally:
            fresh.close()
    if not report.usable:
        return report
    report.indexed = len(seen)
    report.missing = sorted(set(expected) - set(seen))
    report.extra = sorted(set(seen) - set(expected))
    report.stale = sorted(pid for pid, stamp in expected.items() if pid in seen and seen[pid] != stamp)
    report.duplicates = sorted(dupes)
    return report


def repair(db, index: SearchIndex, report: CheckReport | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> CheckReport:
    """Fix what `check` found: rebuild an unusable or damaged index, otherwise re-index the drifted pages."""
    report = report or check(db, index)
    if report.ok:
        return report
    if not report.usable or report.damaged:
        rebuild(db, index.data_dir, progress=progress)
        index.close()
        after = check(db, index)
        after.rebuilt = after.repaired = True
        return after
    todo = sorted(set(report.missing) | set(report.stale) | set(report.extra) | set(report.duplicates))
    with index.write_lock:
        ix = index.open()
        writer = ix.writer(timeout=30.0)
        try:
            with db.reading() as session:
                for chunk in range(0, len(todo), 500):
                    ids = todo[chunk:chunk + 500]
                    remove_from_index(writer, ids)
                    for page in session.scalars(select(Page).where(Page.id.in_(ids), Page.deleted_at.is_(None))):
                        writer.add_document(**document_for(page))
            writer.commit()
            _tidy_columns(ix)
        except BaseException:
            writer.cancel()
            raise
    after = check(db, index)
    after.repaired = True
    return after


def _problem(index: SearchIndex) -> str | None:
    """Why the index cannot be used (missing, damaged), or None when it reads fine."""
    with _quiet_damage() as state:
        try:
            with index.reading() as view, view.reads:
                view.reader.doc_count()
                # Reading one stored document and a posting list finds most garbage in segment files.
                if view.n:
                    live = np.flatnonzero(view.live)
                    view.searcher.stored_fields(int(live[0]) if len(live) else 0)
                list(view.reader.lexicon("kind"))
            return None
        except IndexUnavailable as e:
            return str(e)
        except Exception as e:
            state["failed"] = True
            index.close()
            return repr(e)


def _usable(index: SearchIndex) -> bool:
    return _problem(index) is None


def ensure_index(db, index: SearchIndex, sync_limit: int | None = None) -> str:
    """Make sure a usable index exists: 'ok', 'rebuilt', or 'deferred' (too big to rebuild now; the worker will).

    Never raises: a database without tables yet, for instance, gives 'deferred'.
    """
    try:
        problem = _problem(index)
        if problem is None:
            index.damaged = False
            return "ok"
        log.warning("search index needs a rebuild: %s", problem)
        if sync_limit is not None:
            with db.reading() as session:
                total = session.scalar(select(func.count()).select_from(Page)) or 0
            if total > sync_limit:
                return "deferred"
        report = rebuild(db, index.data_dir, only_if_unusable=True)
        index.close()
        index.damaged = False
        return "skipped" if report.skipped else "rebuilt"
    except Exception:
        log.exception("could not make sure the search index exists")
        return "deferred"


# ---------------------------------------------------------------------------------------------------------------
# The background worker: one per process

POLL_SECONDS = 1.0


class Worker:
    """A daemon thread that works off the queue every second and rebuilds a missing or damaged index."""

    def __init__(self, db, index: SearchIndex, interval: float = POLL_SECONDS):
        self.db, self.index, self.interval = db, index, interval
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pid = os.getpid()
        self.last_merge = 0.0
        self.thread = threading.Thread(target=self._run, name="kb-search-index", daemon=True)

    def start(self) -> Worker:
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive() and self.pid == os.getpid():
            self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.interval)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                self.tick()
            except Exception:
                log.exception("search index worker")

    def tick(self) -> int:
        if self.index.damaged or not self.index.exists():
            ensure_index(self.db, self.index)
        done = process_queue(self.db, self.index, wait=0.5)
        if not done and time.monotonic() - self.last_merge > 10:
            self.last_merge = time.monotonic()
            merge_segments(self.index)
        return done
