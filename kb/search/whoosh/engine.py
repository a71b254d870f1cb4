"""The index as one process sees it: the current build and a warm view of it (the query engine over a view is
`view`).

`SearchIndex` opens the build (one directory holding one complete Whoosh index) named by `DATA_DIR/index/CURRENT`
and keeps one `_View` (a Whoosh searcher plus everything derived from it), replaced whenever the index changes.

Damage: a file truncated under a live index would kill the process (SIGBUS) when a query reads its memory map past
the new end, so `reading()` first checks every mapped file's size (`_View.damage`) and answers IndexDamaged
instead; queries then say "unavailable" and the worker rebuilds the index (or the column file) in the background.

Threads: `SearchIndex.reading()` hands each query the current view, holding the index lock only to take it; the
query itself runs without it, so threads in one process search at the same time. A view that is replaced while
queries still read it is closed when the last of them is done. Whoosh's own file reads (stored fields, the few
postings not in the column files) are not safe for threads and go through `SearchIndex.reads`, a short lock;
the arrays of the column files are read-only and need none.
"""
from __future__ import annotations

import gc
import os
import re
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from whoosh.filedb.filestore import FileStorage

from kb.search.backend import SearchUnavailable
from kb.search.whoosh import internals
from kb.search.whoosh.documents import SCHEMA
from kb.search.whoosh.view import _Segment, _View

# ---------------------------------------------------------------------------------------------------------------
# Where the index lives: DATA_DIR/index/CURRENT names the build directory in use.

class IndexUnavailable(SearchUnavailable):
    """The index is missing or damaged; it must be rebuilt from the database."""


class IndexMissing(IndexUnavailable):
    pass


class IndexDamaged(IndexUnavailable):
    pass


@contextmanager
def _quiet_damage():
    """Whoosh leaves files open when it fails to read a damaged index: close them here, without ResourceWarnings.

    The failure must be caught inside this block (the files are freed with the exception's traceback)."""
    state = {"failed": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield state
        if state["failed"]:
            gc.collect()


POINTER = "CURRENT"
INDEX_NAME = "MAIN"
BUILD_PREFIX = "b-"
# Builds made before they were called builds are named g-...; they are read as they are and removed like the others.
BUILD_PREFIXES = (BUILD_PREFIX, "g-")
_BUILD_NAME = re.compile(r"(?:b|g)-[0-9a-f-]{1,80}")


def is_build_name(name: str) -> bool:
    return bool(_BUILD_NAME.fullmatch(name or ""))


class SearchIndex:
    """One index location, as seen by one process: opens the current build and keeps a warm view of it."""

    def __init__(self, root: str):
        self.root = root
        self.write_lock = threading.Lock()  # one writer per process; Whoosh's file lock handles other processes
        self._lock = threading.RLock()  # which build and which view are current; held only to change or take them
        self.reads = threading.Lock()  # Whoosh's own readers, which are not safe for threads
        self._build: str | None = None
        self._ix = None
        self._view: _View | None = None
        self._segments: OrderedDict[str, _Segment] = OrderedDict()
        self._leaf_views: dict[int, int] = {}  # id(segment reader) -> how many unreleased views read it
        self.damaged = False

    # -- locations
    @property
    def data_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.root))

    def current_build(self) -> str | None:
        """The name of the build in use; None when there is no index, "" when the pointer is broken."""
        try:
            with open(os.path.join(self.root, POINTER), encoding="ascii") as f:
                name = f.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError):
            return ""
        return name if is_build_name(name) else ""

    def build_dir(self, build: str) -> str:
        return os.path.join(self.root, build)

    # -- opening
    def open(self):
        """The Whoosh index of the current build; IndexMissing / IndexDamaged when it cannot be used."""
        with self._lock:
            build = self.current_build()
            if build is None:
                self._forget()
                raise IndexMissing(f"no search index at {self.root}")
            if not build or not os.path.isdir(self.build_dir(build)):
                self._forget()
                raise IndexDamaged(f"the search index pointer in {self.root} is broken")
            if build != self._build or self._ix is None:
                self._forget()
                problem = None
                with _quiet_damage() as state:
                    try:
                        self._ix = FileStorage(self.build_dir(build)).open_index(INDEX_NAME, schema=SCHEMA)
                    except Exception as e:  # a damaged table of contents shows up as any kind of error
                        problem = repr(e)
                        state["failed"] = True
                if problem is not None:
                    raise IndexDamaged(f"the search index in {self.build_dir(build)} is damaged: {problem}")
                self._build = build
            return self._ix

    def exists(self) -> bool:
        return self.current_build() is not None

    def _forget(self) -> None:
        view, self._view, self._ix, self._build = self._view, None, None, None
        if view is not None:
            self._retire(view)

    def close(self) -> None:
        with self._lock:
            self._forget()

    def view(self) -> _View:
        """An up-to-date view; IndexUnavailable when the index cannot be read. For a query, use `reading()`: a view
        taken here may be closed by another thread unless this index's lock is held while it is used."""
        with self._lock:
            ix = self.open()
            view = self._view
            problem = None
            with _quiet_damage() as state:
                try:
                    view = self._fresh_view(ix, view)
                except Exception as e:
                    problem = repr(e)
                    state["failed"] = True
                    self._forget()
            if problem is not None:
                raise IndexDamaged(f"the search index cannot be read: {problem}")
            return view

    @contextmanager
    def reading(self) -> Iterator[_View]:
        """The current view, for one read: the lock is held only to take it, and the view stays open until the
        read is done even if the index changes meanwhile."""
        with self._lock:
            view = self.view()
            problem = view.damage()
            if problem is not None:
                # Answer "unavailable" instead of reading the map past the file's end, which kills the process
                # (SIGBUS). The damaged segment's cached data goes; the worker repairs the index in the background.
                for leaf, _, seg in view.leaves:
                    if seg.cols.shrunk():
                        self._segments.pop(leaf.segment().segment_id(), None)
                self._forget()
                raise IndexDamaged(f"a search index file changed under this process: {problem}")
            view.users += 1
        try:
            yield view
        finally:
            with self._lock:
                view.users -= 1
                if view.retired and not view.users:
                    self._release(view)

    def _fresh_view(self, ix, view: _View | None) -> _View:
        if view is not None and view.build == self._build and view.searcher.up_to_date():
            return view
        same_build = view is not None and view.build == self._build
        fresh = self._open_view(ix, view if same_build else None)
        self._view = fresh
        if view is not None:
            self._retire(view)
        # Keep only the segments the new view reads (their column files are memory-mapped).
        current = {leaf.segment().segment_id() for leaf, _, _ in fresh.leaves}
        for key in [k for k in self._segments if k not in current]:
            self._segments.pop(key).cols.close()
        return fresh

    def _open_view(self, ix, old: _View | None) -> _View:
        """A view of the newest table of contents that re-uses the old view's readers of unchanged segments."""
        reusable = {leaf.segment().segment_id(): leaf for leaf, _, _ in old.leaves} if old is not None else {}
        searcher = internals.open_searcher(ix, reusable)
        try:
            view = _View(self, searcher, self._build)
        except BaseException:
            for leaf, _ in searcher.reader().leaf_readers():
                if id(leaf) not in self._leaf_views:
                    leaf.close()
            raise
        for leaf, _, _ in view.leaves:
            self._leaf_views[id(leaf)] = self._leaf_views.get(id(leaf), 0) + 1
        return view

    def _retire(self, view: _View) -> None:
        """A view is no longer current: release it now, or when its last reader is done."""
        view.retired = True
        if not view.users:
            self._release(view)

    def _release(self, view: _View) -> None:
        """Close the segment readers that no other view reads."""
        if view.released:
            return
        view.released = True
        for leaf, _, _ in view.leaves:
            left = self._leaf_views.get(id(leaf), 0) - 1
            if left > 0:
                self._leaf_views[id(leaf)] = left
                continue
            self._leaf_views.pop(id(leaf), None)
            try:
                leaf.close()
            except Exception:
                pass

    def segment(self, leaf) -> _Segment:
        """Per-segment data, cached by segment id (a segment never changes, apart from deletions)."""
        key = leaf.segment().segment_id()
        seg = self._segments.get(key)
        if seg is None:
            seg = self._segments[key] = _Segment(leaf)
        else:
            self._segments.move_to_end(key)
        return seg


def open_index(data_dir: str) -> SearchIndex:
    return SearchIndex(os.path.join(data_dir, "index"))
