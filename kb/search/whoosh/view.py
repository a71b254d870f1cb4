"""The vectorised query engine over one view of the index: document sets as numpy masks, BM25 scores summed with
`bincount`, facet counts, phrases and the visibility filter.

A `_View` is a Whoosh searcher plus everything derived from it, replaced whenever the index changes (`engine`
opens it and hands it to queries). `_Segment` holds what queries need from one segment, read from its column file
(see `columns`) and kept across views, since a segment never changes apart from deletions.

Visibility that changed after indexing: the index's copy of a page's visibility lags until its queue entry is done.
`Pending` holds, for the pages with a queue entry, their visibility, readers and deletion as the database has them
now, and `_View.visible` hides the documents of those the viewer may no longer read (it never shows more).
"""
from __future__ import annotations

import bisect
import heapq
import math
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
from whoosh.util.numeric import byte_to_length

from kb import access
from kb.access import Viewer
from kb.search.whoosh import columns, internals
from kb.search.whoosh.documents import BOOSTS, TEXT_FIELDS
# ---------------------------------------------------------------------------------------------------------------
# Scoring constants and facets

K1, B = 1.2, 0.75  # BM25, as Whoosh's BM25F default
LENGTHS = np.array([float(byte_to_length(b)) for b in range(256)])  # Whoosh's length byte, decoded
SINGLE_FACETS = ("kind", "status", "visibility")
MULTI_FACETS = ("tags", "decade", "readers")


class _SizedCache:
    """A least-recently-used cache bounded by the bytes of its values, so a few huge entries cannot pile up."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.size = 0
        self.data: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()  # queries in several threads share one view's caches

    @staticmethod
    def _weight(value: Any) -> int:
        if isinstance(value, tuple):
            return 64 + sum(_SizedCache._weight(v) for v in value)
        if isinstance(value, np.ndarray):
            return 64 + value.nbytes
        if isinstance(value, (list, dict, set, frozenset)):
            return 64 + 40 * len(value)
        return 64

    def get(self, key: tuple) -> Any:
        with self._lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key: tuple, value: Any) -> Any:
        weight = self._weight(value)
        with self._lock:
            old = self.data.pop(key, None)
            if old is not None:
                self.size -= self._weight(old)
            self.data[key] = value
            self.size += weight
            while self.size > self.max_size and len(self.data) > 1:
                _, evicted = self.data.popitem(last=False)
                self.size -= self._weight(evicted)
        return value


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class _Segment:
    """What fast queries need from one segment, from its column file: postings, lengths, facet codes, dates."""

    def __init__(self, leaf):
        self.n = n = leaf.doc_count_all()
        self.cols = columns.load(leaf)
        self.fields = {f: self.cols.field(f) for f in columns.POSTING_FIELDS}
        # Facets: each document's value as a code into the field's sorted terms (-1: none), or (document, code)
        # pairs for fields with several values per document.
        self.single: dict[str, tuple[list[str], np.ndarray]] = {}
        for name in SINGLE_FACETS:
            inv = self.fields[name]
            codes = np.full(n, -1, dtype=np.int32)
            values: list[str] = []
            if inv is not None and inv.count:
                values = [inv.term(i).decode("utf-8") for i in range(inv.count)]
                codes[inv.docs] = np.repeat(np.arange(inv.count, dtype=np.int32), np.diff(inv.ptr))
            self.single[name] = (values, codes)
        self.multi: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
        for name in MULTI_FACETS:
            inv = self.fields[name]
            if inv is not None and inv.count:
                values = [inv.term(i).decode("utf-8") for i in range(inv.count)]
                codes = np.repeat(np.arange(inv.count, dtype=np.int32), np.diff(inv.ptr))
                self.multi[name] = (values, np.asarray(inv.docs), codes)
            else:
                self.multi[name] = ([], np.zeros(0, np.uint32), np.zeros(0, np.int32))
        self.updated = self.cols.array("updated.value")
        self.years = (self.cols.array("years.docs"), self.cols.array("years.value"))
        self.lengths = {f: self.cols.lengths(f) for f in columns.LENGTH_FIELDS}
        if any(len(a) != n for a in (self.updated, *self.lengths.values())):
            raise columns.ColumnsDamaged("per-document arrays of the wrong length")
        self._values: _SizedCache = _SizedCache(4_000_000)

    def find(self, fieldname: str, btext: bytes) -> int:
        inv = self.fields.get(fieldname)
        return -1 if inv is None else inv.find(btext)

    def values(self, leaf, fieldname: str, term: str) -> dict[int, bytes]:
        """Segment document number -> the posting's value (positions) of a term, from Whoosh (the slow way; the
        caller holds the index's `reads` lock)."""
        key = (fieldname, term)
        found = self._values.get(key)
        if found is None:
            ids, _, values = internals.read_postings(leaf, fieldname, term, values=True)
            found = self._values.put(key, dict(zip(ids, values)))
        return found


class Pending:
    """The pages the index has not caught up with (those with an entry in the index queue), as the database has
    them now: page id -> (visibility, readers, deleted). A page missing from the database counts as deleted.

    Read before the view is taken (see `queries._run`): an entry gone by then was deleted after the index commit
    that holds its page, so that view has the page's new version."""

    __slots__ = ("pages",)

    def __init__(self, pages: dict[int, tuple[str | None, tuple[str, ...], bool]]):
        self.pages = pages

    def __bool__(self) -> bool:
        return bool(self.pages)

    def __len__(self) -> int:
        return len(self.pages)

    def hidden_from(self, viewer: Viewer) -> list[int]:
        """The pending pages this viewer may not read as they are now (kb.access.can_read)."""
        return sorted(pid for pid, (visibility, readers, deleted) in self.pages.items()
                      if deleted or visibility is None or not access.can_read(viewer, visibility, readers))


def _mask_of(n: int, ids: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[ids] = True
    return mask


class _View:
    """A searcher plus everything derived from it; replaced whenever the index changes."""

    CACHE = 32 << 20  # bytes of cached masks, scores and lists

    def __init__(self, index, searcher, build: str):  # index: the engine's SearchIndex, whose read lock it shares
        self.searcher = searcher
        self.build = build
        self.reads = index.reads
        self.users = 0  # queries reading this view now (see SearchIndex.reading)
        self.retired = self.released = False
        reader = searcher.reader()
        self.reader = reader
        self.n = n = reader.doc_count_all()
        self.doc_count = max(1, reader.doc_count())
        self.leaves: list[tuple[Any, int, _Segment]] = []
        live = np.ones(n, dtype=bool)
        for leaf, offset in reader.leaf_readers():
            seg = index.segment(leaf)
            self.leaves.append((leaf, offset, seg))
            if leaf.has_deletions():
                dels = np.fromiter(leaf.deleted_docs_set, dtype=np.int64)
                live[dels[dels < seg.n] + offset] = False
        self.live = _readonly(live)
        self.offsets = [offset for _, offset, _ in self.leaves]
        one = len(self.leaves) == 1
        # Facet values: one vocabulary per field for the whole view, segment codes translated into it.
        self.facet_values: dict[str, list[str]] = {}
        self.codes: dict[str, np.ndarray] = {}
        for name in SINGLE_FACETS:
            values = sorted(set().union(*(seg.single[name][0] for _, _, seg in self.leaves)))
            where = {v: i for i, v in enumerate(values)}
            parts = []
            for _, _, seg in self.leaves:
                seg_values, seg_codes = seg.single[name]
                if one or seg_values == values:
                    parts.append(seg_codes)
                else:
                    remap = np.array([where[v] for v in seg_values] + [-1], dtype=np.int32)
                    parts.append(remap[seg_codes])
            self.facet_values[name] = values
            self.codes[name] = _readonly(np.concatenate(parts) if parts else np.zeros(0, np.int32))
        self.pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in MULTI_FACETS:
            values = sorted(set().union(*(seg.multi[name][0] for _, _, seg in self.leaves)))
            where = {v: i for i, v in enumerate(values)}
            docs, codes = [], []
            for _, offset, seg in self.leaves:
                seg_values, seg_docs, seg_codes = seg.multi[name]
                docs.append(seg_docs.astype(np.int64) + offset)
                if one or seg_values == values:
                    codes.append(seg_codes)
                elif len(seg_codes):
                    codes.append(np.array([where[v] for v in seg_values], dtype=np.int32)[seg_codes])
                else:
                    codes.append(seg_codes)
            self.facet_values[name] = values
            self.pairs[name] = (_readonly(np.concatenate(docs) if docs else np.zeros(0, np.int64)),
                                _readonly(np.concatenate(codes) if codes else np.zeros(0, np.int32)))
        self.updated = _readonly(np.concatenate([seg.updated for _, _, seg in self.leaves]) if self.leaves
                                 else np.zeros(0, np.int64))
        self.years = (np.concatenate([seg.years[0].astype(np.int64) + off for _, off, seg in self.leaves])
                      if self.leaves else np.zeros(0, np.int64),
                      np.concatenate([seg.years[1] for _, _, seg in self.leaves]) if self.leaves
                      else np.zeros(0, np.int32))
        self._cards: dict[int, Any] = {}  # each segment's "card" column reader, opened on first use
        self._cache = _SizedCache(self.CACHE)
        self._visible: dict[tuple, np.ndarray] = {}
        self._page_docs: dict[int, list[int]] = {}
        self._avgdl: dict[str, float] = {}
        self._df: dict[tuple, int] = {}

    def damage(self) -> str | None:
        """Which of the files this view reads through a memory map has been truncated under it (None: none). Reading
        such a map past the file's new end kills the process with SIGBUS, so every read checks first: an fstat per
        mapped file. (A file truncated during the few milliseconds of one query is not caught.)"""
        for leaf, _, seg in self.leaves:
            for m in internals.mapped_files(leaf):
                try:
                    if m.size() < len(m):
                        return f"segment {leaf.segment().segment_id()} is shorter than when it was opened"
                except (OSError, ValueError):
                    return f"segment {leaf.segment().segment_id()} cannot be read"
            if seg.cols.shrunk():
                return f"the column file of segment {leaf.segment().segment_id()} is shorter than when it was opened"
        return None

    def _cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        found = self._cache.get(key)
        if found is None:
            found = self._cache.put(key, make())
        return found

    def empty(self) -> np.ndarray:
        return np.zeros(self.n, dtype=bool)

    def visible(self, viewer: Viewer, pending: Pending | None = None) -> np.ndarray:
        """Documents this viewer may read: the one place search decides visibility (see kb.access).

        The rule is kb.access.can_read, asked once per visibility value, and once per document that names readers.
        With `pending` (the pages the index has not caught up with, as the database has them now), the documents
        of those pages stay only if the viewer may read the page as it is now: this only narrows, so a page the
        index hides stays hidden until its new version is indexed.
        """
        docs = self._visible_in_index(viewer)
        hidden = pending.hidden_from(viewer) if pending else ()
        if hidden:
            numbers = [d for pid in hidden for d in self.page_docs(pid)]
            if numbers:
                docs = docs.copy()
                docs[numbers] = False
                docs = _readonly(docs)
        return docs

    def page_docs(self, page_id: int) -> list[int]:
        """Document numbers (deleted ones included) of a page, cached for this view (which never changes)."""
        found = self._page_docs.get(page_id)
        if found is None:
            if len(self._page_docs) > 50_000:
                self._page_docs.clear()
            found = self._page_docs[page_id] = self.id_docs(str(page_id))
        return found

    def _visible_in_index(self, viewer: Viewer) -> np.ndarray:
        """Documents this viewer may read by the visibility and readers stored in the index."""
        levels = viewer.visible_levels()
        name = viewer.name if viewer.signed_in and viewer.may_read_site and "restricted" not in levels else None
        key = (levels, name)
        docs = self._visible.get(key)
        if docs is None:
            values = self.facet_values["visibility"]
            allowed = np.array([access.can_read(viewer, v, ()) for v in values] + [access.can_read(viewer, None, ())],
                               dtype=bool)
            docs = allowed[self.codes["visibility"]] if self.n else self.empty()  # code -1 (none): the last one
            rdocs, rcodes = self.pairs["readers"]
            if len(rdocs):
                rvalues = self.facet_values["readers"]
                order = np.argsort(rdocs, kind="stable")
                rdocs, rcodes = rdocs[order], rcodes[order]
                starts = np.flatnonzero(np.r_[True, rdocs[1:] != rdocs[:-1]])
                ends = np.r_[starts[1:], len(rdocs)]
                vis_values, vis_codes = values + [None], self.codes["visibility"]
                asked: dict[tuple, bool] = {}
                for a, b in zip(starts.tolist(), ends.tolist()):
                    d = int(rdocs[a])
                    names = tuple(rvalues[c] for c in rcodes[a:b].tolist())
                    vis = vis_values[vis_codes[d]]
                    k = (vis, names)
                    ok = asked.get(k)
                    if ok is None:
                        ok = asked[k] = access.can_read(viewer, vis, names)
                    docs[d] = ok
            docs = _readonly(docs & self.live)
            if len(self._visible) > 64:
                self._visible.clear()
            self._visible[key] = docs
        return docs

    # -- document sets (boolean masks over the view's document numbers)
    def value_docs(self, fieldname: str, value: str) -> np.ndarray:
        """Documents with this exact value in a facet field (kind, status, visibility, tags, decade, readers)."""
        def make() -> np.ndarray:
            values = self.facet_values[fieldname]
            i = bisect.bisect_left(values, value)
            if i >= len(values) or values[i] != value:
                return _readonly(self.empty())
            if fieldname in self.codes:
                return _readonly(self.codes[fieldname] == i)
            docs, codes = self.pairs[fieldname]
            return _readonly(_mask_of(self.n, docs[codes == i]))

        return self._cached(("v", fieldname, value), make)

    def postings(self, fieldname: str, term: str) -> list[tuple[int, _Segment, int]]:
        """(offset, segment, term index) of each segment holding the term in this field."""
        btext = term.encode("utf-8")
        out = []
        for _, offset, seg in self.leaves:
            i = seg.find(fieldname, btext)
            if i >= 0:
                out.append((offset, seg, i))
        return out

    def term_docs(self, fieldname: str, term: str) -> np.ndarray:
        def make() -> np.ndarray:
            if fieldname in self.facet_values:
                return self.value_docs(fieldname, term)
            mask = self.empty()
            for offset, seg, i in self.postings(fieldname, term):
                docs = seg.fields[fieldname].postings(i)[0]
                mask[docs.astype(np.int64) + offset if offset else docs] = True
            return _readonly(mask)

        return self._cached(("t", fieldname, term), make)

    def id_docs(self, value: str) -> list[int]:
        """Documents (deleted ones included) whose id field is `value`, from Whoosh's own postings."""
        out: list[int] = []
        for leaf, offset, _ in self.leaves:
            with self.reads:
                out.extend(offset + d for d in internals.read_postings(leaf, "id", value)[0])
        return out

    def word_docs(self, term: str) -> np.ndarray:
        """Documents with an (analysed) word in any text field."""
        return self._cached(("w", term), lambda: _readonly(_mask_of(self.n, self.combined(term)[0])))

    def prefix_docs(self, prefix: str, fieldname: str | None = None) -> np.ndarray:
        def make() -> np.ndarray:
            mask = self.empty()
            for f in ((fieldname,) if fieldname else TEXT_FIELDS):
                for t in self.expand(f, prefix):
                    mask |= self.term_docs(f, t)
            return _readonly(mask)

        return self._cached(("x", prefix, fieldname), make)

    def expand(self, fieldname: str, prefix: str, limit: int = 40) -> list[str]:
        """The terms of a field that start with `prefix`: the `limit` most common (of the first 1,000)."""
        def make() -> list[str]:
            bprefix = prefix.encode("utf-8")
            df: dict[bytes, int] = {}
            for _, _, seg in self.leaves:
                inv = seg.fields.get(fieldname)
                if inv is None:
                    continue
                lo, hi = inv.prefix_range(bprefix)
                if hi - lo > 1000:
                    hi = lo + 1000
                counts = np.diff(inv.ptr[lo:hi + 1]).tolist()
                for i, c in zip(range(lo, hi), counts):
                    t = inv.term(i)
                    df[t] = df.get(t, 0) + c
            terms = sorted(df)[:1000]
            if len(terms) > limit:
                terms = heapq.nlargest(limit, terms, key=df.__getitem__)
            return [t.decode("utf-8") for t in terms]

        return self._cached(("e", fieldname, prefix, limit), make)

    def year_docs(self, low: int, high: int) -> np.ndarray:
        def make() -> np.ndarray:
            docs, years = self.years
            return _readonly(_mask_of(self.n, docs[(years >= low) & (years <= high)]))

        return self._cached(("y", low, high), make)

    # -- phrases
    def phrase_check(self, terms: tuple[str, ...], docs: np.ndarray) -> np.ndarray:
        """For each document number in `docs` (sorted, unique): do the terms stand next to each other, in order, in
        some text field? Reads positions from the column files."""
        found = np.zeros(len(docs), dtype=bool)
        if not len(docs):
            return found
        for leaf, offset, seg in self.leaves:
            lo, hi = np.searchsorted(docs, [offset, offset + seg.n])
            if lo == hi:
                continue
            local = docs[lo:hi] - offset
            hit = np.zeros(hi - lo, dtype=bool)
            for fieldname in TEXT_FIELDS:
                inv = seg.fields.get(fieldname)
                if inv is None:
                    continue
                if inv.pos is None:  # a field without positions in the column file: ask Whoosh, one by one
                    for j, d in enumerate(local.tolist()):
                        if not hit[j] and self._whoosh_phrase(leaf, seg, fieldname, terms, d):
                            hit[j] = True
                    continue
                hit |= _phrase_in_field(inv, terms, local)
            found[lo:hi] = hit
        return found

    def _whoosh_phrase(self, leaf, seg: _Segment, fieldname: str, terms: tuple[str, ...], d: int) -> bool:
        decode = internals.positions_decoder(self.searcher.schema[fieldname].format)
        try:
            with self.reads:
                values = [seg.values(leaf, fieldname, t) for t in terms]
            if not all(d in v for v in values):
                return False
            starts = set(decode(values[0][d]))
            for k, v in enumerate(values[1:], 1):
                starts = {p - k for p in decode(v[d])} & starts
                if not starts:
                    return False
            return bool(starts)
        except Exception:  # a missing or unreadable posting: not a match
            return False

    def phrase_docs(self, terms: tuple[str, ...], within: np.ndarray | None = None) -> np.ndarray:
        """Documents (of `within`, or all) with the phrase."""
        if len(terms) == 1:
            return self.word_docs(terms[0]) if within is None else self.word_docs(terms[0]) & within
        candidates = self.word_docs(terms[0]).copy()
        for t in terms[1:]:
            candidates &= self.word_docs(t)
        if within is not None:
            candidates &= within
        ids = np.flatnonzero(candidates)
        out = self.empty()
        out[ids[self.phrase_check(terms, ids)]] = True
        return out

    # -- scores
    def avgdl(self, fieldname: str) -> float:
        found = self._avgdl.get(fieldname)
        if found is None:
            with self.reads:
                length = self.reader.field_length(fieldname) or 0
            found = self._avgdl[fieldname] = length / self.doc_count or 1.0
        return found

    def doc_frequency(self, fieldname: str, term: str) -> int:
        key = (fieldname, term)
        found = self._df.get(key)
        if found is None:
            if fieldname in columns.POSTING_FIELDS:
                found = sum(seg.fields[fieldname].df(i) for _, seg, i in self.postings(fieldname, term))
            else:
                with self.reads:
                    found = self.reader.doc_frequency(fieldname, term)
            if len(self._df) > 50_000:
                self._df.clear()
            self._df[key] = found
        return found

    def combined(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(documents, scores) of `term`: Σ over title, tags, fields and body of boost × BM25, documents sorted."""
        def make() -> tuple[np.ndarray, np.ndarray]:
            parts = []
            for fieldname, boost in BOOSTS.items():
                found = self.postings(fieldname, term)
                if not found:
                    continue
                df = sum(seg.fields[fieldname].df(i) for _, seg, i in found)
                idf = math.log(self.doc_count / (df + 1)) + 1.0
                avgdl = self.avgdl(fieldname)
                k1b, k1nb, scale = K1 * B / (avgdl or 1.0), K1 * (1 - B), boost * idf * (K1 + 1)
                ids, scores = [], []
                for offset, seg, i in found:
                    docs, tf = seg.fields[fieldname].postings(i)
                    w = tf.astype(np.float64)
                    lengths = LENGTHS[seg.lengths[fieldname][docs]]
                    scores.append(scale * w / (w + k1nb + k1b * lengths))
                    ids.append(docs.astype(np.int64) + offset)
                parts.append((np.concatenate(ids), np.concatenate(scores)))
            if not parts:
                return np.zeros(0, np.int64), np.zeros(0)
            if len(parts) == 1:
                return _readonly(parts[0][0]), _readonly(parts[0][1])
            parts.sort(key=lambda p: -len(p[0]))  # as the scores were always added: the biggest field first
            ids = np.concatenate([p[0] for p in parts])
            uniq, where = np.unique(ids, return_inverse=True)
            scores = np.bincount(where, weights=np.concatenate([p[1] for p in parts]), minlength=len(uniq))
            return _readonly(uniq), _readonly(scores)

        return self._cached(("c", term), make)

    def prefix_scores(self, prefix: str) -> np.ndarray:
        def make() -> np.ndarray:
            out = np.zeros(self.n)
            for fieldname, boost in BOOSTS.items():
                out[self.prefix_docs(prefix, fieldname)] += boost
            return _readonly(out)

        return self._cached(("xs", prefix), make)

    def card(self, d: int) -> dict[str, str]:
        """A document's slug, title and kind, from a column (cheap) or the stored fields (older indexes)."""
        i = bisect.bisect_right(self.offsets, d) - 1
        leaf, offset, _ = self.leaves[i]
        with self.reads:
            column = self._cards.get(i)
            if column is None:
                try:
                    column = self._cards[i] = leaf.column_reader("card") if leaf.has_column("card") else False
                except Exception:
                    column = self._cards[i] = False
            raw = column[d - offset] if column is not False else b""
        if raw:
            slug, title, kind = raw.decode("utf-8").split("\x1f")
            return {"slug": slug, "title": title, "kind": kind}
        stored = self.stored(d)
        return {"slug": stored.get("slug", ""), "title": stored.get("title", ""), "kind": stored.get("kind", "")}

    def stored(self, d: int) -> dict[str, Any]:
        """A document's stored fields (slug, title, excerpts...), from Whoosh."""
        with self.reads:
            return self.searcher.stored_fields(d)

    def first_at_least(self, fieldname: str, text: str) -> str | None:
        """The first term of a field (in any segment) that sorts at or after `text`, from the column files' sorted
        term tables (so no vocabulary is held in memory)."""
        btext = text.encode("utf-8")
        best = None
        for _, _, seg in self.leaves:
            inv = seg.fields.get(fieldname)
            if inv is None:
                continue
            i = inv.lower_bound(btext)
            if i < inv.count:
                term = inv.term(i)
                if best is None or term < best:
                    best = term
        return None if best is None else best.decode("utf-8")


def _phrase_in_field(inv: columns.Inverted, terms: tuple[str, ...], local: np.ndarray) -> np.ndarray:
    """Which of the (sorted) segment documents `local` hold the phrase in this field, from the stored positions."""
    keys = None
    rows_of_first = None
    for k, term in enumerate(terms):
        i = inv.find(term.encode("utf-8"))
        if i < 0:
            return np.zeros(len(local), dtype=bool)
        docs, _ = inv.postings(i)
        where = np.searchsorted(docs, local)
        where[where >= len(docs)] = 0
        has = docs[where] == local if len(docs) else np.zeros(len(local), dtype=bool)
        if not has.any():
            return np.zeros(len(local), dtype=bool)
        rows = where[has]
        starts, pos = inv.positions(i)
        a, b = starts[rows], starts[rows + 1]
        counts = b - a
        total = int(counts.sum())
        # Gather every position of the chosen postings, labelled with its document.
        first = np.repeat(a - np.r_[0, np.cumsum(counts)[:-1]], counts)
        at = pos[first + np.arange(total)].astype(np.int64) - k
        labels = np.repeat(local[has].astype(np.int64), counts)
        ok = at >= 0
        key = (labels[ok] << 32) | at[ok]
        keys = key if keys is None else np.intersect1d(keys, key, assume_unique=True)
        if rows_of_first is None:
            rows_of_first = True
        if not len(keys):
            return np.zeros(len(local), dtype=bool)
    matched = np.unique(keys >> 32)
    return np.isin(local, matched, assume_unique=True)
