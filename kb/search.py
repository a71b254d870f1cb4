"""Full-text search: the Whoosh index, kept true to the database, and the queries people run against it.

The database is the truth; the index under `DATA_DIR/index` is derived and can be thrown away at any time.

* Keeping it current: every save puts an `IndexQueueEntry` in the same transaction as the page. `process_queue`
  works those entries off (the save path calls `kick` right after its commit; a per-process background worker
  picks up whatever `kick` could not do because the index was locked by another process, damaged or missing).
  Queue entries are deleted only after the index commit, so a failure loses nothing.
* Repair: `rebuild` builds a fresh index in a new directory and swaps it in by replacing the `CURRENT` pointer
  file (an atomic rename); `check` compares database and index (which pages, which revisions); `repair` fixes
  drift; start-up (`init_app`) rebuilds a missing or damaged index instead of crashing.
* Queries: `search` (words, "phrases", -exclusions, `kind:` `tag:` `status:` `year:` filters, facets, snippets,
  "did you mean"), `suggest` (titles, for search as you type) and `tried_before` (earlier initiatives and
  lessons on a topic).

Visibility is applied here, before anything is counted: every document set is intersected with the set of
documents the viewer may read, so results, totals, facet counts, snippets, suggestions and corrections never
reflect a page the viewer may not read. User input is never handed to Whoosh's query parser; `parse_query`
reads it and any text gets an answer.
"""
from __future__ import annotations

import bisect
import errno
import fcntl
import gc
import hashlib
import heapq
import html
import logging
import math
import os
import pickle
import re
import shutil
import threading
import time
import uuid
import warnings
from array import array
from collections import Counter, OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from itertools import accumulate, chain
from typing import Any, Callable, Iterable

from sqlalchemy import delete, func, select
from whoosh import index as whoosh_index
from whoosh.analysis import Analyzer, LowercaseFilter, RegexTokenizer, Token
from whoosh.analysis.filters import STOP_WORDS
from whoosh.automata.fsa import find_all_matches
from whoosh.automata.lev import levenshtein_automaton
from whoosh.codec import whoosh3
from whoosh.columns import VarBytesColumn
from whoosh.fields import COLUMN, ID, KEYWORD, NUMERIC, STORED, TEXT, Schema
from whoosh.formats import Positions
from whoosh.filedb.filestore import FileStorage
from whoosh.index import LockError
from whoosh.lang.porter import stem as porter_stem
from whoosh.query import NumericRange
from whoosh.support.levenshtein import distance as edit_distance
from whoosh.util.numeric import byte_to_length

from kb import access
from kb.access import Viewer
from kb.kinds import KINDS, field_text, status_of, years_covered
from kb.models import IndexQueueEntry, Page

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Two fixes for whoosh-reloaded 2.7.5, which spends most of a segment write looking up field lengths: for every
# posting it asks whether a field's length column file exists (one stat() per posting for fields without lengths:
# ID, KEYWORD, NUMERIC), then reads the document's length byte through three layers of calls. A finished
# segment's files never change, so remember both the answer and the whole column.

def _remember_missing_length_columns() -> None:
    original = whoosh3.W3PerDocReader._cached_reader
    if getattr(original, "kb_remembers", False):
        return

    def _cached_reader(self, fieldname, column):
        try:
            return self._readers[fieldname]
        except KeyError:
            reader = self._readers[fieldname] = original(self, fieldname, column)
            return reader

    def doc_field_length(self, docnum, fieldname, default=0):
        cache = self.__dict__.setdefault("_kb_lengths", {})
        lengths = cache.get(fieldname)
        if lengths is None:
            lengths = cache[fieldname] = _length_column(self, fieldname)
        if lengths is False:
            return original_length(self, docnum, fieldname, default)
        if docnum > self._doccount:
            raise IndexError("Asked for docnum %r of %d" % (docnum, self._doccount))
        if not lengths:
            return default
        return lengths[docnum] if docnum < len(lengths) else None

    original_length = whoosh3.W3PerDocReader.doc_field_length
    _cached_reader.kb_remembers = True
    whoosh3.W3PerDocReader._cached_reader = _cached_reader
    whoosh3.W3PerDocReader.doc_field_length = doc_field_length


def _length_column(perdoc, fieldname: str):
    """Decoded lengths of every document (None for 0, as Whoosh answers), () without a column, False if unreadable."""
    try:
        column = perdoc._cached_reader(whoosh3._lenfield(fieldname), whoosh3.LENGTHS_COLUMN)
        if column is None:
            return ()
        raw = column._dbfile.get(column._basepos, column._count)
        if len(raw) != column._count:
            return False
        return [_WHOOSH_LENGTHS[b] for b in raw]
    except Exception:
        return False


_WHOOSH_LENGTHS = [byte_to_length(b) if b else None for b in range(256)]
_remember_missing_length_columns()

# ---------------------------------------------------------------------------------------------------------------
# The schema and the documents in it

class StemAnalyzer(Analyzer):
    """Whoosh's StemmingAnalyzer (words, lower case, no stop words or one-letter words, Porter stems), in one loop
    instead of four chained generators: the same terms and positions, in about half the indexing time."""

    def __call__(self, value, positions=False, chars=False, keeporiginal=False, removestops=True, start_pos=0,
                 start_char=0, tokenize=True, mode="", **kwargs):
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        pos = None  # as StopFilter renumbers: the first word kept keeps its place, the next ones follow it
        for i, m in enumerate(WORD_RE.finditer(value)):
            word = m.group(0)
            term = analyse_word(word)
            if term is None:
                if removestops:
                    continue
                token.stopped, token.text = True, word.lower()
            else:
                token.stopped, token.text = False, term
            token.boost = 1.0
            if keeporiginal:
                token.original = word
            if positions:
                pos = start_pos + i if pos is None else pos + 1
                token.pos = pos
            if chars:
                token.startchar, token.endchar = start_char + m.start(), start_char + m.end()
            yield token

    def has_morph(self) -> bool:
        return True


STEM = StemAnalyzer()
TITLE_WORDS = RegexTokenizer() | LowercaseFilter()  # unstemmed title words, for search as you type

SCHEMA = Schema(
    id=ID(unique=True, stored=True),
    slug=ID(stored=True),
    title=TEXT(analyzer=STEM, stored=True),
    title_words=TEXT(analyzer=TITLE_WORDS, phrase=False),
    tagtext=TEXT(analyzer=STEM),
    fields=TEXT(analyzer=STEM),
    body=TEXT(analyzer=STEM),
    tags=KEYWORD(commas=True, lowercase=True, stored=True),
    kind=ID(stored=True),
    status=ID(stored=True),
    ended_reason=ID(stored=True),
    years=NUMERIC(int, bits=32),
    decade=KEYWORD(commas=True),
    visibility=ID(stored=True),
    readers=KEYWORD(commas=True),
    updated=NUMERIC(int, bits=64, stored=True, sortable=True),
    revision=NUMERIC(int, stored=True),
    card=COLUMN(VarBytesColumn()),  # slug, title and kind, readable without unpickling the stored excerpt
    stamp=STORED,
    period=STORED,
    excerpt=STORED,
    field_excerpt=STORED,
)

# Query-time weights: a word in the title or the tags counts for much more than the same word in the body.
BOOSTS = {"title": 5.0, "tagtext": 3.0, "fields": 1.5, "body": 1.0}
TEXT_FIELDS = tuple(BOOSTS)
EXCERPT_CHARS = 2400
FIELD_EXCERPT_CHARS = 1200
FACET_NAMES = ("kind", "tag", "status", "decade")
TOP_TAGS = 25


def page_stamp(page_id: int, revision: int, slug: str, visibility: str, readers: Iterable[str] | None,
               updated: datetime | None) -> str:
    """What must match between database and index, beyond the revision: a rename or a visibility change."""
    raw = "\x1f".join([str(page_id), str(revision), slug, visibility, ",".join(sorted(readers or ())),
                       updated.isoformat() if updated else ""])
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


_FENCE = re.compile(r"^[ \t]*(?:```|~~~).*$", re.M)
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)")
_WIKI = re.compile(r"\[\[([^\[\]\n|]+)(?:\\?\|([^\[\]\n]+))?\]\]")
_REF_DEF = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S.*$", re.M)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>\n]{0,300}>")
_LINE_MARKS = re.compile(r"^[ \t]*(?:(?:#{1,6}|>|[-*+]|\d{1,3}[.)])[ \t]+)+", re.M)
_RULE = re.compile(r"^[ \t]*(?:[-*_=][ \t]*){3,}$|^[ \t|:-]*-{3,}[ \t|:-]*$", re.M)
_EMPHASIS = re.compile(r"\*{1,3}|~~|`+|(?<!\w)_{1,3}|_{1,3}(?!\w)")
_SPACES = re.compile(r"\s+")
_SLUGLIKE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)+$")


def _wiki_label(m: re.Match) -> str:
    target, label = m.group(1).strip(), (m.group(2) or "").strip()
    if label:
        return label
    return target.replace("-", " ") if _SLUGLIKE.match(target) else target


def strip_markdown(text: str) -> str:
    """Markdown -> plain text, cheaply (a few regular expressions, no rendering), for indexing and excerpts."""
    if not text:
        return ""
    text = _FENCE.sub(" ", text)
    text = _REF_DEF.sub(" ", text)
    text = _IMAGE.sub(r"\1", text)
    text = _WIKI.sub(_wiki_label, text)
    text = _LINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _RULE.sub(" ", text)
    text = _LINE_MARKS.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = text.replace("|", " ")
    return _SPACES.sub(" ", html.unescape(text)).strip()


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit]


def _epoch_ms(value: datetime | None) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def _period(kind: str, fields: dict[str, Any], years: list[int]) -> str:
    started, ended = fields.get("started") or fields.get("occurred"), fields.get("ended")
    if started or ended:
        return f"{str(started or '?')[:4]}–{str(ended)[:4]}" if ended else f"{str(started)[:4]}–"
    if years:
        return str(years[0]) if years[0] == years[-1] else f"{years[0]}–{years[-1]}"
    return ""


def document_for(page: Page) -> dict[str, Any]:
    """The index document of a page (only live pages are indexed)."""
    fields = page.fields or {}
    kind = page.kind or "page"
    years = years_covered(kind, fields) if kind in KINDS else []
    tags = [str(t).strip().lower() for t in (page.tags or []) if str(t).strip()]
    status = page.status or (status_of(kind, fields) if kind in KINDS else None) or ""
    ftext = field_text(kind, fields) if kind in KINDS else ""
    body = strip_markdown(page.body or "")
    readers = [str(r) for r in (page.readers or []) if str(r).strip()]
    return {
        "id": str(page.id),
        "slug": page.slug,
        "title": page.title or page.slug,
        "title_words": page.title or page.slug,
        "tagtext": " ".join(t.replace("-", " ") for t in tags),
        "fields": ftext,
        "body": body,
        "tags": ",".join(t.replace(",", " ") for t in tags),
        "kind": kind,
        "status": status,
        "ended_reason": str(fields.get("ended_reason") or ""),
        "years": years,
        "decade": ",".join(sorted({f"{y // 10 * 10}s" for y in years})),
        "visibility": page.visibility or "public",
        "readers": ",".join(r.replace(",", " ") for r in readers),
        "updated": _epoch_ms(page.updated_at),  # milliseconds: saves a second apart still sort
        "revision": int(page.revision or 0),
        "card": "\x1f".join((page.slug, page.title or page.slug, kind)).encode("utf-8"),
        "stamp": page_stamp(page.id, page.revision or 0, page.slug, page.visibility or "public", readers,
                            page.updated_at),
        "period": _period(kind, fields, years),
        "excerpt": _cut(body, EXCERPT_CHARS),
        "field_excerpt": _cut(_SPACES.sub(" ", ftext), FIELD_EXCERPT_CHARS),
    }


# ---------------------------------------------------------------------------------------------------------------
# Where the index lives: DATA_DIR/index/CURRENT names the generation directory in use.

class IndexUnavailable(Exception):
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


class SearchIndex:
    """One index location, as seen by one process: opens the current generation and keeps a warm searcher."""

    def __init__(self, root: str):
        self.root = root
        self.write_lock = threading.Lock()  # one writer per process; Whoosh's file lock handles other processes
        self._lock = threading.RLock()
        self._gen: str | None = None
        self._ix = None
        self._view: _View | None = None
        self._segments: OrderedDict[str, _Segment] = OrderedDict()
        self.damaged = False

    # -- locations
    @property
    def data_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.root))

    def current_generation(self) -> str | None:
        try:
            with open(os.path.join(self.root, POINTER), encoding="ascii") as f:
                name = f.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError):
            return ""
        return name if re.fullmatch(r"g-[0-9a-f-]{1,80}", name or "") else ""

    def generation_dir(self, gen: str) -> str:
        return os.path.join(self.root, gen)

    # -- opening
    def open(self):
        """The Whoosh index of the current generation; IndexMissing / IndexDamaged when it cannot be used."""
        with self._lock:
            gen = self.current_generation()
            if gen is None:
                self._forget()
                raise IndexMissing(f"no search index at {self.root}")
            if not gen or not os.path.isdir(self.generation_dir(gen)):
                self._forget()
                raise IndexDamaged(f"the search index pointer in {self.root} is broken")
            if gen != self._gen or self._ix is None:
                self._forget()
                problem = None
                with _quiet_damage() as state:
                    try:
                        self._ix = whoosh_index.open_dir(self.generation_dir(gen), indexname=INDEX_NAME,
                                                         schema=SCHEMA)
                    except Exception as e:  # a damaged table of contents shows up as any kind of error
                        problem = repr(e)
                        state["failed"] = True
                if problem is not None:
                    raise IndexDamaged(f"the search index in {self.generation_dir(gen)} is damaged: {problem}")
                self._gen = gen
            return self._ix

    def exists(self) -> bool:
        return self.current_generation() is not None

    def _forget(self) -> None:
        view, self._view, self._ix, self._gen = self._view, None, None, None
        if view is not None:
            view.close()

    def close(self) -> None:
        with self._lock:
            self._forget()

    def view(self) -> _View:
        """An up-to-date searcher with its caches; IndexUnavailable when the index cannot be read."""
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

    def _fresh_view(self, ix, view: _View | None) -> _View:
        if view is None or view.gen != self._gen:
            self._view = None
            if view is not None:
                view.close()
            view = self._view = _View(self, _open_searcher(ix, None), self._gen)
        elif not view.searcher.up_to_date():
            self._view = None
            view = self._view = _View(self, _open_searcher(ix, view), self._gen)
        return view

    def segment(self, leaf) -> _Segment:
        """Per-segment data, cached by segment id (a segment never changes, apart from deletions)."""
        key = leaf.segment().segment_id()
        seg = self._segments.get(key)
        if seg is None:
            seg = self._segments[key] = _Segment(leaf)
            while len(self._segments) > 200:
                self._segments.popitem(last=False)
        else:
            self._segments.move_to_end(key)
        return seg


def _open_searcher(ix, old: _View | None):
    """A searcher on the newest generation that re-uses the old view's readers of unchanged segments.

    (Whoosh's own Searcher.refresh() re-uses readers too, but keeps a segment's old set of deleted documents after
    an update, and can bring back segments that were merged away; opening every segment again costs tens of
    milliseconds per save.)"""
    from whoosh.reading import MultiReader, SegmentReader
    from whoosh.searching import Searcher

    for attempt in range(10):
        try:
            toc = ix._read_toc()
            break
        except IOError:  # a writer removed a file as we read: try again, as Whoosh does
            if attempt == 9:
                raise
            time.sleep(0.05)
    reusable: dict[str, Any] = {}
    if old is not None:
        for leaf, _, _ in old.leaves:
            reusable[leaf.segment().segment_id()] = leaf
    readers, opened, stale = [], [], []
    try:
        for segment in toc.segments:
            leaf = reusable.pop(segment.segment_id(), None)
            if leaf is not None and not leaf.is_closed and leaf.segment().deleted_count() == segment.deleted_count():
                readers.append(leaf)
            else:
                if leaf is not None:
                    stale.append(leaf)  # its deletions changed
                opened.append(SegmentReader(ix.storage, toc.schema, segment, generation=toc.generation))
                readers.append(opened[-1])
    except BaseException:
        for r in opened:
            r.close()
        raise
    for leaf in chain(stale, reusable.values()):
        leaf.close()
    return Searcher(MultiReader(readers, generation=toc.generation), fromindex=ix)


def open_index(data_dir: str) -> SearchIndex:
    return SearchIndex(os.path.join(data_dir, "index"))


# ---------------------------------------------------------------------------------------------------------------
# Fast reads. Whoosh's own scorer costs 10-20 µs per matching document in Python, several hundred milliseconds for
# a common word at 10,000 pages. Instead, each segment's postings are read a block at a time into plain lists and
# kept (a segment never changes apart from deletions, so this survives index updates); document sets are Python
# sets, so filters, visibility, totals and facets are set operations; scores are BM25 impacts summed per document.

K1, B = 1.2, 0.75  # BM25, as Whoosh's BM25F default


class _SizedCache:
    """A least-recently-used cache bounded by the total length of its values, so a few huge entries cannot pile up."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.size = 0
        self.data: OrderedDict[tuple, Any] = OrderedDict()

    @staticmethod
    def _weight(value: Any) -> int:
        if isinstance(value, tuple):
            return 1 + sum(len(v) for v in value if hasattr(v, "__len__"))
        return 1 + (len(value) if hasattr(value, "__len__") else 0)

    def get(self, key: tuple) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: tuple, value: Any) -> Any:
        old = self.data.pop(key, None)
        if old is not None:
            self.size -= self._weight(old)
        self.data[key] = value
        self.size += self._weight(value)
        while self.size > self.max_size and len(self.data) > 1:
            _, evicted = self.data.popitem(last=False)
            self.size -= self._weight(evicted)
        return value


def _unwrap(matcher):
    # A segment with deletions wraps its postings in a FilterMatcher; deleted documents are removed later, because
    # every document set is intersected with the visible (live) documents.
    return getattr(matcher, "child", matcher)


def _read_postings(leaf, fieldname: str, text, values: bool = False) -> tuple[list, list, list]:
    """(ids, weights, values) of one term in one segment, a block at a time."""
    try:
        m = _unwrap(leaf.postings(fieldname, text))
    except Exception:  # TermNotFound and friends
        return [], [], []
    ids: list = []
    weights: list = []
    vals: list = []
    if all(hasattr(m, a) for a in ("_read_ids", "_read_weights", "_read_values", "_next_block", "_atend")):
        while m.is_active():
            m._read_ids()
            m._read_weights()
            i = m._i
            ids.extend(m._ids[i:])
            weights.extend(m._weights[i:])
            if values:
                m._read_values()
                vals.extend(m._values[i:])
            m._next_block()
    else:  # another codec: the slow, public way
        while m.is_active():
            ids.append(m.id())
            weights.append(m.weight())
            if values:
                vals.append(m.value())
            m.next()
    return ids, weights, vals


_BYTE_LENGTHS = [float(byte_to_length(b)) for b in range(256)]


def _positions_decoder(fmt) -> Callable[[bytes], Iterable[int]]:
    """Whoosh's Positions format stores a count and a pickled list of gaps; unpickle and add up in C."""
    if type(fmt) is Positions:
        return lambda v: accumulate(pickle.loads(v[4:] if v.endswith(b".") else v[4:] + b"."))
    return fmt.decode_positions


def _bulk_lengths(leaf, fieldname: str, n: int) -> list[float]:
    # Whoosh keeps field lengths in a one-byte-per-document column; read it in one go instead of n lookups.
    column = leaf._perdoc._cached_reader(whoosh3._lenfield(fieldname), whoosh3.LENGTHS_COLUMN)
    if column is None:
        return [0.0] * n
    raw = column._dbfile.get(column._basepos, column._count)
    if len(raw) != column._count:
        raise ValueError("short lengths column")
    return [_BYTE_LENGTHS[b] for b in raw] + [0.0] * (n - len(raw))


class _Segment:
    """What fast queries need from one segment: facet columns, field lengths, and postings as lists."""

    POSTINGS_CACHE = 3_000_000  # postings (ids and weights in arrays: 8 bytes each) per segment
    VALUES_CACHE = 200_000  # positions of recently read postings (bytes objects: ~50 bytes each)

    def __init__(self, leaf):
        n = leaf.doc_count_all()
        self.n = n
        self.kind: list[str | None] = self._single(leaf, "kind", n)
        self.status: list[str | None] = self._single(leaf, "status", n)
        self.visibility: list[str | None] = self._single(leaf, "visibility", n)
        self.tags: list[tuple[str, ...]] = self._multi(leaf, "tags", n)
        self.decade: list[tuple[str, ...]] = self._multi(leaf, "decade", n)
        readers = self._multi(leaf, "readers", n)
        self.readers = {d: frozenset(r) for d, r in enumerate(readers) if r}
        try:
            self.updated = list(leaf.column_reader("updated"))
        except Exception:
            self.updated = [0] * n
        self._lengths: dict[str, list[float]] = {}
        self._postings = _SizedCache(self.POSTINGS_CACHE)
        self._values = _SizedCache(self.VALUES_CACHE)
        self.lock = threading.Lock()

    @staticmethod
    def _single(leaf, fieldname: str, n: int) -> list:
        out: list = [None] * n
        for term in leaf.lexicon(fieldname):
            value = term.decode("utf-8") if isinstance(term, bytes) else term
            for d in _read_postings(leaf, fieldname, term)[0]:
                out[d] = value
        return out

    @staticmethod
    def _multi(leaf, fieldname: str, n: int) -> list:
        out: list = [()] * n
        for term in leaf.lexicon(fieldname):
            value = term.decode("utf-8") if isinstance(term, bytes) else term
            for d in _read_postings(leaf, fieldname, term)[0]:
                out[d] = out[d] + (value,)
        return out

    def lengths(self, leaf, fieldname: str) -> list[float]:
        """Each document's length in a field (as Whoosh stores it: one byte, decoded), for BM25."""
        found = self._lengths.get(fieldname)
        if found is None:
            try:
                found = _bulk_lengths(leaf, fieldname, self.n)
            except Exception:  # another codec: one document at a time
                dfl = leaf.doc_field_length
                found = [float(dfl(d, fieldname, 0) or 0) for d in range(self.n)]
            self._lengths[fieldname] = found
        return found

    def vocabulary(self, leaf, fieldname: str) -> list[str]:
        """The terms of a field in this segment, sorted (for "did you mean")."""
        key = ("*vocabulary*", fieldname)
        found = self._postings.get(key)
        if found is None:
            words = [t.decode("utf-8") if isinstance(t, bytes) else t for t in leaf.lexicon(fieldname)]
            found = self._postings.put(key, words)
        return found

    def postings(self, leaf, fieldname: str, term: str) -> tuple[list, list]:
        """(ids, weights) of a term in this segment."""
        key = (fieldname, term)
        found = self._postings.get(key)
        if found is None:
            # A block holds ids, weights and positions in one pickle: the positions come for free, so keep the
            # recent ones for phrase checks.
            ids, weights, values = _read_postings(leaf, fieldname, term, values=True)
            found = self._postings.put(key, (array("I", ids), array("f", weights)))
            if values and values[0] is not None:
                self._values.put(key, dict(zip(ids, values)))
        return found

    def values(self, leaf, fieldname: str, term: str) -> dict[int, bytes]:
        """Segment document number -> the posting's value (positions) of a term."""
        key = (fieldname, term)
        found = self._values.get(key)
        if found is None:
            ids, _, values = _read_postings(leaf, fieldname, term, values=True)
            found = self._values.put(key, dict(zip(ids, values)))
        return found

    def combined(self, leaf, term: str, fields: tuple) -> tuple[list[int], list[float]]:
        """(ids, scores) of a term over several fields: Σ boost × BM25, for the given collection statistics.

        `fields` holds (field name, boost, idf, average length); scores are kept until the statistics move.
        """
        stats = tuple((f, b, round(idf, 2), round(avgdl, 1)) for f, b, idf, avgdl in fields)
        key = ("*combined*", term)
        found = self._postings.get(key)
        if found is not None and found[0] == stats:
            return found[1], found[2]
        # Largest field first (usually the body): its scores become the dict in one step; the smaller fields are
        # then added document by document.
        parts = []
        for fieldname, boost, idf, avgdl in fields:
            ids, weights = self.postings(leaf, fieldname, term)
            if ids:
                parts.append((len(ids), fieldname, boost, idf, avgdl, ids, weights))
        parts.sort(key=lambda p: -p[0])
        acc: dict[int, float] = {}
        for i, (_, fieldname, boost, idf, avgdl, ids, weights) in enumerate(parts):
            lengths = self.lengths(leaf, fieldname)
            k1b, k1nb, k1p1 = K1 * B / (avgdl or 1.0), K1 * (1 - B), K1 + 1
            scale = boost * idf * k1p1
            scores = [scale * w / (w + k1nb + k1b * lengths[d]) for d, w in zip(ids, weights)]
            if i == 0:
                acc = dict(zip(ids, scores))
            else:
                get = acc.get
                for d, x in zip(ids, scores):
                    acc[d] = get(d, 0.0) + x
        ids, scores = array("I", acc), array("d", acc.values())
        self._postings.put(key, (stats, ids, scores))
        return ids, scores


class _Scores(dict):
    """Document number -> score; documents without the word score 0."""

    def __missing__(self, key):
        return 0.0


class _View:
    """A searcher plus everything derived from it; replaced whenever the index changes."""

    CACHE = 1_500_000  # document numbers held in sets and dicts (~60-100 bytes each)

    def __init__(self, index: SearchIndex, searcher, gen: str):
        self.searcher = searcher
        self.gen = gen
        reader = searcher.reader()
        self.reader = reader
        self.n = reader.doc_count_all()
        self.doc_count = max(1, reader.doc_count())
        self.kind: list = []
        self.status: list = []
        self.visibility: list = []
        self.tags: list = []
        self.decade: list = []
        self.updated: list = []
        self.readers: dict[int, frozenset] = {}
        self.leaves: list[tuple[Any, int, _Segment]] = []
        deleted: set[int] = set()
        for leaf, offset in reader.leaf_readers():
            seg = index.segment(leaf)
            self.leaves.append((leaf, offset, seg))
            self.kind += seg.kind
            self.status += seg.status
            self.visibility += seg.visibility
            self.tags += seg.tags
            self.decade += seg.decade
            self.updated += seg.updated
            for d, names in seg.readers.items():
                self.readers[d + offset] = names
            if leaf.has_deletions():
                deleted.update(d + offset for d in leaf.deleted_docs_set)
        self.deleted = frozenset(deleted)
        self.offsets = [offset for _, offset, _ in self.leaves]
        self._cards: dict[int, Any] = {}  # each segment's "card" column reader, opened on first use
        self._phrase_memo: dict[tuple, bool] = {}
        self._live: frozenset | None = None
        self._cache = _SizedCache(self.CACHE)
        self._visible: dict[tuple, frozenset] = {}
        self._avgdl: dict[str, float] = {}

    def close(self) -> None:
        try:
            self.searcher.close()
        except Exception:
            pass

    def _cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        found = self._cache.get(key)
        if found is None:
            found = self._cache.put(key, make())
        return found

    @property
    def live(self) -> frozenset:
        if self._live is None:
            self._live = frozenset(range(self.n)) - self.deleted
        return self._live

    def visible(self, viewer: Viewer) -> frozenset:
        """Document numbers this viewer may read: the one place search decides visibility (see kb.access)."""
        levels = viewer.visible_levels()
        name = viewer.name if viewer.signed_in and viewer.may_read_site and "restricted" not in levels else None
        key = (levels, name)
        docs = self._visible.get(key)
        if docs is None:
            # The rule itself is kb.access.can_read, asked once per document and remembered per (levels, name).
            vis, readers = self.visibility, self.readers
            docs = frozenset(d for d in self.live if access.can_read(viewer, vis[d], readers.get(d, ())))
            if len(self._visible) > 64:
                self._visible.clear()
            self._visible[key] = docs
        return docs

    # -- document sets (global document numbers; they may include deleted documents until intersected with
    #    `visible`, which every query starts from)
    def term_docs(self, fieldname: str, term: str) -> frozenset:
        def make() -> frozenset:
            out: set[int] = set()
            for leaf, offset, seg in self.leaves:
                ids = seg.postings(leaf, fieldname, term)[0]
                out.update(map(offset.__add__, ids) if offset else ids)
            return frozenset(out)

        return self._cached(("t", fieldname, term), make)

    def word_docs(self, term: str) -> frozenset:
        """Documents with an (analysed) word in any text field."""
        return self._cached(("w", term), lambda: frozenset(self.combined(term)))

    def values(self, fieldname: str, term: str) -> dict[int, bytes]:
        """Global document number -> the posting's value (its positions), for checking phrases."""
        def make() -> dict[int, bytes]:
            out: dict[int, bytes] = {}
            for leaf, offset, seg in self.leaves:
                local = seg.values(leaf, fieldname, term)
                out.update(zip(map(offset.__add__, local), local.values()) if offset else local)
            return out

        return self._cached(("v", fieldname, term), make)

    def has_phrase(self, d: int, terms: tuple[str, ...]) -> bool:
        """Do the terms stand next to each other, in order, in some text field of document `d`?"""
        memo = self._phrase_memo
        if len(memo) > 100_000:
            memo.clear()
        key = (terms, d)
        found = memo.get(key)
        if found is not None:
            return found
        found = False
        for fieldname in TEXT_FIELDS:
            if not all(d in self.term_docs(fieldname, t) for t in terms):
                continue
            decode = _positions_decoder(self.searcher.schema[fieldname].format)
            try:
                starts = set(decode(self.values(fieldname, terms[0])[d]))
                for k, t in enumerate(terms[1:], 1):
                    starts = {p - k for p in decode(self.values(fieldname, t)[d])} & starts
                    if not starts:
                        break
            except Exception:  # a missing or unreadable posting: not a match
                starts = set()
            if starts:
                found = True
                break
        memo[key] = found
        return found

    def phrase_docs(self, terms: tuple[str, ...], within: frozenset | None = None) -> frozenset:
        """Documents (of `within`, or all) with the phrase. Costs a positions check per document with every word."""
        if len(terms) == 1:
            return self.word_docs(terms[0])
        candidates = frozenset.intersection(*(self.word_docs(t) for t in terms))
        if within is not None:
            candidates = candidates & within
        return frozenset(d for d in candidates if self.has_phrase(d, terms))

    def prefix_docs(self, prefix: str, fieldname: str | None = None) -> frozenset:
        def make() -> frozenset:
            fields = (fieldname,) if fieldname else TEXT_FIELDS
            return frozenset().union(*(self.term_docs(f, t) for f in fields for t in self.expand(f, prefix)))

        return self._cached(("x", prefix, fieldname), make)

    def expand(self, fieldname: str, prefix: str, limit: int = 40) -> list[str]:
        """The terms of a field that start with `prefix`: the `limit` most common (of the first 1,000)."""
        terms = []
        for i, term in enumerate(self.reader.expand_prefix(fieldname, prefix)):
            if i >= 1000:
                break
            terms.append(term.decode("utf-8") if isinstance(term, bytes) else term)
        if len(terms) > limit:
            terms = heapq.nlargest(limit, terms, key=lambda t: self.reader.doc_frequency(fieldname, t))
        return terms

    def year_docs(self, low: int, high: int) -> frozenset:
        return self._cached(("y", low, high),
                            lambda: frozenset(self.searcher.docs_for_query(NumericRange("years", low, high))))

    # -- scores
    def avgdl(self, fieldname: str) -> float:
        found = self._avgdl.get(fieldname)
        if found is None:
            found = self._avgdl[fieldname] = (self.reader.field_length(fieldname) or 0) / self.doc_count or 1.0
        return found

    def combined(self, term: str) -> _Scores:
        """Global document number -> boosted BM25 score of `term` over title, tags, fields and body."""
        def make() -> _Scores:
            fields = []
            for fieldname, boost in BOOSTS.items():
                df = self.reader.doc_frequency(fieldname, term)
                if df:
                    fields.append((fieldname, boost, math.log(self.doc_count / (df + 1)) + 1.0,
                                   self.avgdl(fieldname)))
            out = _Scores()
            if not fields:
                return out
            for leaf, offset, seg in self.leaves:
                ids, scores = seg.combined(leaf, term, tuple(fields))
                if ids:
                    out.update(zip(map(offset.__add__, ids) if offset else ids, scores))
            return out

        return self._cached(("c", term), make)

    def card(self, d: int) -> dict[str, str]:
        """A document's slug, title and kind, from a column (cheap) or the stored fields (older indexes)."""
        i = bisect.bisect_right(self.offsets, d) - 1
        leaf, offset, _ = self.leaves[i]
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
        stored = self.searcher.stored_fields(d)
        return {"slug": stored.get("slug", ""), "title": stored.get("title", ""), "kind": stored.get("kind", "")}

    def vocabulary(self, fieldname: str) -> list[str]:
        """Every term of a field, sorted, across segments."""
        def make() -> list[str]:
            lists = [seg.vocabulary(leaf, fieldname) for leaf, _, seg in self.leaves]
            return lists[0] if len(lists) == 1 else sorted(set().union(*lists))

        return self._cached(("vocab", fieldname), make)

    def cached_facets(self, visible: frozenset) -> dict[str, Counter]:
        """Facet counts of a whole visible set (one per kind of viewer), kept for this searcher."""
        return self._cached(("f", len(visible), hash(visible)), lambda: _count_facets(self, visible))

    def prefix_scores(self, prefix: str) -> _Scores:
        def make() -> _Scores:
            out = _Scores()
            for fieldname, boost in BOOSTS.items():
                for d in self.prefix_docs(prefix, fieldname):
                    out[d] += boost
            return out

        return self._cached(("xs", prefix), make)


# ---------------------------------------------------------------------------------------------------------------
# Reading what people type

MAX_QUERY_CHARS = 1000
MAX_TERMS = 24
FILTER_RE = re.compile(r"^(kind|tag|status|year|type):(.*)$", re.I)
YEAR_RE = re.compile(r"^\s*(\d{1,4})\s*(?:(?:-|–|\.\.)\s*(\d{1,4}))?\s*$")
TOKEN_RE = re.compile(r'(-?)(?:"([^"]*)"|(\S+))')
WORD_RE = re.compile(r"\w+(?:\.?\w+)*", re.U)


@lru_cache(maxsize=100_000)
def analyse_word(word: str) -> str | None:
    """One token's index term: lowercased and stemmed, or None for a stop word (as the STEM analyzer does)."""
    low = word.lower()
    if len(low) < 2 or low in STOP_WORDS:
        return None
    return porter_stem(low)


def analyse(text: str) -> list[str]:
    return [t.text for t in STEM(text)]


@dataclass
class ParsedQuery:
    """What a search box query asks for. `words` are index terms (stemmed); `typed` the words as typed."""

    words: list[str] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)
    phrases: list[tuple[str, ...]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    excluded: list[tuple[str, ...]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    years: list[tuple[int, int]] = field(default_factory=list)
    text: str = ""  # the query without its filters, as typed

    @property
    def has_terms(self) -> bool:
        return bool(self.words or self.phrases or self.prefixes)

    @property
    def has_filters(self) -> bool:
        return bool(self.kinds or self.tags or self.statuses or self.years)

    def highlight_terms(self) -> frozenset[str]:
        return frozenset(chain(self.words, chain.from_iterable(self.phrases)))


def parse_year(value: str) -> tuple[int, int] | None:
    """'2003' -> (2003, 2003); '2001-2004' -> (2001, 2004); anything else -> None."""
    m = YEAR_RE.match(value or "")
    if not m:
        return None
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) else low
    if low > high:
        low, high = high, low
    return (low, high) if high - low <= 3000 else None


def _add_filter(parsed: ParsedQuery, key: str, value: str) -> bool:
    key = key.lower()
    value = value.strip().strip("\"'").strip()
    if not value:
        return False
    if key in ("kind", "type"):
        parsed.kinds.append(value.lower())
    elif key == "tag":
        parsed.tags.append(value.lower())
    elif key == "status":
        parsed.statuses.append(value.lower())
    elif key == "year":
        years = parse_year(value)
        if years is None:
            return False
        parsed.years.append(years)
    return True


def parse_query(text: str | None, kind: str | None = None, tag: str | None = None, status: str | None = None,
                year: str | None = None) -> ParsedQuery:
    """Read a search box query (plus filters given as parameters). Never fails: odd syntax becomes plain words."""
    parsed = ParsedQuery()
    text = (text or "")[:MAX_QUERY_CHARS]
    if text.count('"') % 2:
        text = text.replace('"', " ")  # an unbalanced quote: read everything as plain words
    kept: list[str] = []
    for m in TOKEN_RE.finditer(text):
        negative, phrase, bare = m.group(1) == "-", m.group(2), m.group(3)
        if bare is not None:
            fm = FILTER_RE.match(bare)
            if fm and not negative and _add_filter(parsed, fm.group(1), fm.group(2)):
                continue
            kept.append(m.group(0))
            if bare.endswith("*") and not negative:
                stem = bare.rstrip("*").lower()
                if len(stem) >= 2 and WORD_RE.fullmatch(stem):
                    if len(parsed.prefixes) < 4:
                        parsed.prefixes.append(stem)
                    continue
            tokens = WORD_RE.findall(bare)
        else:
            kept.append(m.group(0))
            tokens = WORD_RE.findall(phrase)
        terms = tuple(t for t in (analyse_word(w) for w in tokens) if t)
        if not terms:
            continue
        if negative:
            parsed.excluded.append(terms)
        elif phrase is not None or len(terms) > 1:
            parsed.phrases.append(terms)
        else:
            parsed.words.append(terms[0])
            parsed.typed.append(tokens[0] if len(tokens) == 1 else terms[0])
    for key, value in (("kind", kind), ("tag", tag), ("status", status), ("year", year)):
        if value:
            _add_filter(parsed, key, str(value)[:200])
    # Keep the query small: a 10,000-word paste is still answered, from its first words.
    parsed.words = list(dict.fromkeys(parsed.words))[:MAX_TERMS]
    parsed.typed = parsed.typed[:MAX_TERMS]
    parsed.phrases = [p[:MAX_TERMS] for p in dict.fromkeys(parsed.phrases)][:8]
    parsed.excluded = parsed.excluded[:MAX_TERMS]
    parsed.text = " ".join(kept)
    return parsed


# ---------------------------------------------------------------------------------------------------------------
# Snippets: from the stored excerpt, only for the hits shown, escaped, with our own <mark> tags

SNIPPET_CHARS = 220


@lru_cache(maxsize=512)
def _term_pattern(terms: frozenset[str], prefixes: tuple[str, ...]) -> re.Pattern | None:
    # A Porter stem, less its last letter, starts the words it comes from ("communiti" <- "community"): find
    # candidate words with one regular expression, then stem only those.
    heads = {t[:-1] if len(t) > 3 else t for t in terms} | set(prefixes)
    heads = {h for h in heads if h}
    if not heads:
        return None
    alternatives = "|".join(re.escape(h) for h in sorted(heads, key=len, reverse=True))
    return re.compile(r"(?<!\w)(?:" + alternatives + r")\w*(?:\.\w+)*", re.I)


def snippet(text: str, terms: frozenset[str], width: int = SNIPPET_CHARS, prefixes: Iterable[str] = ()) -> str | None:
    """The best window of `text` around the query terms, as HTML (escaped, with <mark>); None if no term occurs."""
    prefixes = tuple(sorted(prefixes))
    pattern = _term_pattern(terms, prefixes) if text else None
    if pattern is None:
        return None
    spans = []
    for m in pattern.finditer(text):
        word = m.group(0)
        low = word.lower()
        t = analyse_word(word)
        if t in terms:
            spans.append((m.start(), m.end(), t))
        elif prefixes and low.startswith(prefixes):
            spans.append((m.start(), m.end(), low[:3]))
    if not spans:
        return None
    best, best_score = 0, -1
    j = 0
    for i, (start, _, _) in enumerate(spans):
        while j < len(spans) and spans[j][1] <= start + width:
            j += 1
        score = len({s[2] for s in spans[i:j]}) * 100 + (j - i)
        if score > best_score:
            best, best_score = i, score
    start = spans[best][0]
    # A little context before the first match, starting on a word.
    lead = max(0, start - 40)
    if lead > 0:
        sp = text.find(" ", lead, start)
        lead = sp + 1 if sp != -1 else start
    end = min(len(text), lead + width)
    if end < len(text):
        sp = text.rfind(" ", lead, end)
        end = sp if sp > spans[best][1] else end
    out = ["…" if lead > 0 else ""]
    pos = lead
    for s, e, _ in spans:
        if s < pos or e > end:
            continue
        out.append(html.escape(text[pos:s]))
        out.append("<mark>" + html.escape(text[s:e]) + "</mark>")
        pos = e
    out.append(html.escape(text[pos:end]))
    out.append("…" if end < len(text) else "")
    return "".join(out)


def _plain_snippet(text: str, width: int = SNIPPET_CHARS) -> str:
    text = text or ""
    cut = _cut(text, width)
    return html.escape(cut) + ("…" if len(cut) < len(text) else "")


def snippet_for(stored: dict[str, Any], terms: frozenset[str], prefixes: Iterable[str] = ()) -> str:
    """HTML snippet for one hit: a window of the body excerpt or the fields around the query terms."""
    for key in ("excerpt", "field_excerpt"):
        found = snippet(stored.get(key) or "", terms, prefixes=prefixes)
        if found:
            return found
    return _plain_snippet(stored.get("excerpt") or stored.get("field_excerpt") or "")


# ---------------------------------------------------------------------------------------------------------------
# Searching

@dataclass
class Hit:
    slug: str
    title: str
    kind: str
    snippet: str  # HTML: escaped text with <mark> around matches
    score: float
    status: str = ""
    ended_reason: str = ""
    tags: list[str] = field(default_factory=list)
    updated: int = 0
    period: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "kind": self.kind, "snippet": self.snippet,
                "score": round(self.score, 4)}


@dataclass
class SearchResults:
    query: ParsedQuery
    total: int = 0
    hits: list[Hit] = field(default_factory=list)
    facets: dict[str, dict[str, int]] = field(default_factory=lambda: {f: {} for f in FACET_NAMES})
    suggestion: str | None = None  # "did you mean": a corrected query text that gives results
    matched_all: bool = True  # False when no page had every word and pages with any of them are shown
    sort: str = "relevance"
    page: int = 1
    per_page: int = 10
    offset: int = 0
    unavailable: bool = False  # the index is being rebuilt
    estimated: bool = False  # total and facets are estimates (a phrase made of very common words)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "results": [h.as_json() for h in self.hits], "facets": self.facets,
                "suggestion": self.suggestion}


SORTS = ("relevance", "updated")


def _score_key(view: _View, parsed: ParsedQuery, docs: frozenset) -> Callable[[int], float]:
    """A document's relevance: BM25 over title, tags, fields and body with per-field boosts, summed over words."""
    parts = [view.combined(t) for t in dict.fromkeys(chain(parsed.words, chain.from_iterable(parsed.phrases)))]
    parts += [view.prefix_scores(p) for p in parsed.prefixes]
    parts = [p for p in parts if p]
    if not parts:
        return lambda d: 0.0
    if len(parts) == 1:
        return parts[0].__getitem__
    if len(parts) == 2:
        a, b = parts
        return lambda d: a[d] + b[d]
    if len(parts) == 3:
        a, b, c = parts
        return lambda d: a[d] + b[d] + c[d]
    return lambda d: sum(p[d] for p in parts)


def _candidates(view: _View, viewer: Viewer, parsed: ParsedQuery) -> frozenset:
    """Documents the viewer may read that pass the filters and exclusions (before any word is matched)."""
    docs = view.visible(viewer)
    for kind in parsed.kinds:
        docs = docs & view.term_docs("kind", kind)
    for tag in parsed.tags:
        docs = docs & view.term_docs("tags", tag)
    for status in parsed.statuses:
        docs = docs & view.term_docs("status", status)
    for low, high in parsed.years:
        docs = docs & view.year_docs(low, high)
    for terms in parsed.excluded:
        if docs:
            docs = docs - view.phrase_docs(terms, docs)
    return docs


PHRASE_EXACT = 1500  # above this many candidates, phrase matches are checked in rank order within a time budget
PHRASE_BUDGET = 0.02  # seconds


def _matching(view: _View, parsed: ParsedQuery, candidates: frozenset, match_all: bool) -> frozenset:
    """Documents of `candidates` with the query's words (all of them, or any). Phrases: see `_phrases`."""
    sets = [view.word_docs(t) for t in parsed.words] + [view.prefix_docs(p) for p in parsed.prefixes]
    if match_all:
        sets += [view.word_docs(t) for p in parsed.phrases for t in p]
        docs = candidates
        for found in sorted(sets, key=len):
            docs = docs & found
            if not docs:
                break
        return docs
    docs = frozenset().union(*sets) & candidates if sets else frozenset()
    for p in parsed.phrases:
        with_words = frozenset.intersection(*(view.word_docs(t) for t in p)) & candidates
        # Any-word mode is a fallback: a very common phrase counts as its words there.
        docs = docs | (view.phrase_docs(p, with_words) if len(with_words) <= PHRASE_EXACT else with_words)
    return docs


@dataclass
class _Estimate:
    """A phrase query over too many candidates to check them all: exact top hits, estimated count and facets."""

    ranked: list[tuple[int, float]]
    total: int
    facets: dict[str, dict[str, int]]


def _phrases(view: _View, parsed: ParsedQuery, docs: frozenset, sort: str,
             want: int) -> tuple[frozenset, _Estimate | None]:
    """Keep the documents in which each phrase occurs. Checks positions; past PHRASE_EXACT candidates, checks them
    best first until the page is full and the time budget spent, and estimates the rest from the share found."""
    phrases = [p for p in parsed.phrases if len(p) > 1]
    if not phrases or not docs:
        return docs, None
    if len(docs) <= PHRASE_EXACT:
        for p in phrases:
            docs = view.phrase_docs(p, docs)
        return docs, None
    key = _score_key(view, parsed, docs) if sort == "relevance" else view.updated.__getitem__
    order = sorted(docs, key=key, reverse=True)
    deadline = time.perf_counter() + PHRASE_BUDGET
    found: list[int] = []
    checked = 0
    for i, d in enumerate(order):
        if all(view.has_phrase(d, p) for p in phrases):
            found.append(d)
        checked = i + 1
        if checked % 32 == 0 and len(found) >= want and time.perf_counter() > deadline:
            break
    if checked == len(order):
        return frozenset(found), None
    share = len(found) / checked
    rest = frozenset(order[checked:])
    found_facets, rest_facets = _facets(view, frozenset(found)), _facets(view, rest)
    facets = {}
    for name in FACET_NAMES:
        merged = Counter(found_facets[name])
        for value, n in rest_facets[name].items():
            merged[value] += round(n * share)
        facets[name] = {k: v for k, v in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])) if v}
        if name == "decade":
            facets[name] = dict(sorted(facets[name].items()))
    estimate = _Estimate(ranked=[(d, key(d)) for d in found[:want]], total=len(found) + round(len(rest) * share),
                         facets=facets)
    return frozenset(found), estimate


def _count_facets(view: _View, docs: Iterable[int]) -> dict[str, Counter]:
    docs = docs if isinstance(docs, (set, frozenset)) else frozenset(docs)
    return {
        "kind": Counter(map(view.kind.__getitem__, docs)),
        "tag": Counter(chain.from_iterable(map(view.tags.__getitem__, docs))),
        "status": Counter(map(view.status.__getitem__, docs)),
        "decade": Counter(chain.from_iterable(map(view.decade.__getitem__, docs))),
    }


def _facets(view: _View, docs: frozenset, visible: frozenset | None = None) -> dict[str, dict[str, int]]:
    """Counts by kind, tag, status and decade of `docs`. When `docs` is most of what the viewer may see, the
    counts of everything visible (cached) minus those of the rest are cheaper."""
    if visible is not None and len(docs) > len(visible) // 2 and docs <= visible:
        whole = view.cached_facets(visible)
        rest = _count_facets(view, visible - docs)
        counts = {name: whole[name] - rest[name] for name in FACET_NAMES}
    else:
        counts = _count_facets(view, docs)

    def ordered(counter: Counter, limit: int | None = None, by_key: bool = False) -> dict[str, int]:
        counter.pop(None, None)
        counter.pop("", None)
        items = [kv for kv in counter.items() if kv[1] > 0]
        items = sorted(items) if by_key else sorted(items, key=lambda kv: (-kv[1], kv[0]))
        return dict(items[:limit] if limit else items)

    return {"kind": ordered(counts["kind"]), "tag": ordered(counts["tag"], TOP_TAGS),
            "status": ordered(counts["status"]), "decade": ordered(counts["decade"], by_key=True)}


def _hit(view: _View, docnum: int, score: float, terms: frozenset[str], prefixes: Iterable[str] = ()) -> Hit:
    stored = view.searcher.stored_fields(docnum)
    return Hit(
        slug=stored.get("slug", ""), title=stored.get("title", ""), kind=stored.get("kind", ""),
        snippet=snippet_for(stored, terms, prefixes), score=float(score or 0.0), status=stored.get("status") or "",
        ended_reason=stored.get("ended_reason") or "",
        tags=[t for t in (stored.get("tags") or "").split(",") if t], updated=stored.get("updated") or 0,
        period=stored.get("period") or "",
    )


def _ranked(view: _View, parsed: ParsedQuery, docs: frozenset, sort: str, want: int) -> list[tuple[int, float]]:
    if not docs or want <= 0:
        return []
    if sort != "relevance" or not parsed.has_terms:
        return [(d, 0.0) for d in heapq.nlargest(want, docs, key=view.updated.__getitem__)]
    key = _score_key(view, parsed, docs)
    return [(d, key(d)) for d in heapq.nlargest(want, docs, key=key)]


def _run(index: SearchIndex, fn: Callable[[_View], Any], fallback: Any) -> Any:
    """Run a read against the index; a missing or damaged index gives the fallback, never an exception."""
    for attempt in (1, 2):
        with _quiet_damage() as state:
            try:
                with index._lock:
                    return fn(index.view())
            except IndexUnavailable as e:
                log.warning("search index unavailable: %s", e)
                index.damaged = not isinstance(e, IndexMissing)
                return fallback
            except Exception:
                # Files may have been swapped under us by a rebuild in another process: reopen once, then give up.
                log.exception("search failed (attempt %d)", attempt)
                state["failed"] = True
                index.close()
    index.damaged = True
    return fallback


def search(index: SearchIndex, viewer: Viewer, q: str | None = "", *, kind: str | None = None,
           tag: str | None = None, status: str | None = None, year: str | None = None, sort: str = "relevance",
           page: int = 1, per_page: int = 10, offset: int | None = None) -> SearchResults:
    """Pages matching a search box query that this viewer may read: one page of hits, totals, facets, correction.

    `offset` (for the API) overrides `page`. Never raises for any input.
    """
    try:
        parsed = parse_query(q, kind=kind, tag=tag, status=status, year=year)
    except Exception:  # belt and braces: the parser is meant not to fail
        log.exception("could not read query %r", (q or "")[:200])
        parsed = ParsedQuery(words=analyse(" ".join(WORD_RE.findall(q or "")))[:MAX_TERMS])
    sort = sort if sort in SORTS else "relevance"
    per_page = max(1, min(int(per_page or 10), 100))
    page = max(1, int(page or 1))
    start = max(0, int(offset)) if offset is not None else (page - 1) * per_page
    start = min(start, 100_000)
    results = SearchResults(query=parsed, sort=sort, page=page, per_page=per_page, offset=start)
    if not viewer.may_read_site:
        return results

    def run(view: _View) -> SearchResults:
        candidates = _candidates(view, viewer, parsed)
        want = start + per_page
        match_all, estimate = True, None
        if parsed.has_terms:
            docs = _matching(view, parsed, candidates, True)
            docs, estimate = _phrases(view, parsed, docs, sort, want)
            if not docs and len(parsed.words) + len(parsed.phrases) + len(parsed.prefixes) > 1:
                docs = _matching(view, parsed, candidates, False)
                match_all = False
        else:
            docs = candidates
        results.matched_all = match_all
        if estimate is not None:
            results.total, results.facets, results.estimated = estimate.total, estimate.facets, True
            ranked = estimate.ranked[start:]
        else:
            results.total = len(docs)
            results.facets = _facets(view, docs, view.visible(viewer))
            ranked = _ranked(view, parsed, docs, sort, want)[start:]
        terms = parsed.highlight_terms()
        results.hits = [_hit(view, d, s, terms, parsed.prefixes) for d, s in ranked]
        if parsed.typed and (not docs or not match_all or results.total < 3):
            results.suggestion = _did_you_mean(view, parsed, candidates)
        return results

    unavailable = SearchResults(query=parsed, sort=sort, page=page, per_page=per_page, offset=start,
                                unavailable=True)
    return _run(index, run, unavailable)


def _did_you_mean(view: _View, parsed: ParsedQuery, candidates: frozenset) -> str | None:
    """The query with misspelt words replaced by words from the index that give results for this viewer.

    Candidates come from the index's own vocabulary (Whoosh's edit-distance automata over the stemmed title and body
    lexicons); each is shown as it is written in a page the viewer may read. (Separate unstemmed spelling fields
    would cost a third of the indexing time.)
    """
    if not candidates:
        return None
    replaced: dict[str, str] = {}
    for typed, term in zip(parsed.typed, parsed.words):
        if view.word_docs(term) & candidates:
            continue
        word = typed.lower()
        if len(word) < 3 or not word.isalpha():
            continue
        fixed = _correction(view, word, term, candidates)
        if fixed:
            replaced[typed] = fixed
    if not replaced:
        return None
    corrected = parse_query(" ".join(replaced.get(t, t) for t in parsed.typed))
    corrected.phrases, corrected.prefixes = parsed.phrases, parsed.prefixes
    if not _matching(view, corrected, candidates, True):
        return None
    out = []
    for token in parsed.text.split():
        core = token.strip("\"'()[]{}.,;:!?-")
        fixed = replaced.get(core) or replaced.get(core.lower())
        out.append(token.replace(core, fixed) if fixed else token)
    filters = [f"kind:{k}" for k in parsed.kinds] + [f"tag:{t}" for t in parsed.tags]
    filters += [f"status:{s}" for s in parsed.statuses]
    filters += [f"year:{a}" if a == b else f"year:{a}-{b}" for a, b in parsed.years]
    return " ".join(out + filters)


@lru_cache(maxsize=256)
def _levenshtein_dfa(term: str, maxdist: int):
    return levenshtein_automaton(term, maxdist, prefix=1).to_dfa()


def _terms_within(view: _View, fieldname: str, term: str, maxdist: int) -> set[str]:
    """Index terms of a field within `maxdist` edits of `term` (same first letter): Whoosh's Levenshtein automaton
    walked over the field's sorted vocabulary."""
    dfa = _levenshtein_dfa(term, maxdist)
    vocab = view.vocabulary(fieldname)

    def first_at_least(text: str) -> str | None:
        i = bisect.bisect_left(vocab, text)
        return vocab[i] if i < len(vocab) else None

    found = set(find_all_matches(dfa, first_at_least))
    found.discard(term)
    return found


def _correction(view: _View, word: str, term: str, candidates: frozenset) -> str | None:
    """The closest word of the index that this viewer would find results for.

    Two vocabularies: title words as written (which catches a misspelt ending, where the stem goes wrong too), and
    the stems of bodies and titles (shown as a page writes them).
    """
    reader = view.reader
    for maxdist in (1, 2):
        # Rank by edit distance, then by how common the word is (cheap: no postings read), and only then check
        # the best few against what this viewer may read.
        ranked: list[tuple[int, int, str, bool, str]] = []
        for cand in _terms_within(view, "title_words", word, maxdist):
            cterm = analyse_word(cand)
            if cterm:
                ranked.append((edit_distance(word, cand), -reader.doc_frequency("title_words", cand), cand, True,
                               cterm))
        for fieldname in ("body", "title"):
            for cand in _terms_within(view, fieldname, term, maxdist):
                ranked.append((edit_distance(term, cand), -reader.doc_frequency(fieldname, cand), cand, False, cand))
        tried: set[str] = set()
        for _, _, cand, written, cterm in sorted(ranked):
            if cterm in tried:
                continue
            tried.add(cterm)
            if len(tried) > 6:
                break
            docs = view.word_docs(cterm) & candidates
            if not docs:
                continue
            surface = cand if written else _surface_word(view, cand, word, docs)
            if surface and surface != word:
                return surface
    return None


def _surface_word(view: _View, stem_: str, typed: str, docs: frozenset) -> str | None:
    """How an index term is written in the pages: the written form closest to what was typed."""
    forms: set[str] = set()
    for d in heapq.nsmallest(5, docs):
        stored = view.searcher.stored_fields(d)
        for key in ("title", "excerpt", "field_excerpt"):
            for w in WORD_RE.findall(stored.get(key) or ""):
                low = w.lower()
                if low[:1] == stem_[:1] and analyse_word(low) == stem_:
                    forms.add(low)
        if forms:
            break
    if not forms:
        return None
    return min(forms, key=lambda f: (edit_distance(typed, f), f))


def suggest(index: SearchIndex, viewer: Viewer, prefix: str | None, limit: int = 8) -> list[dict[str, str]]:
    """Titles for search as you type: pages whose title words start with what was typed, best first."""
    words = [w.lower() for w in WORD_RE.findall((prefix or "")[:200])][:8]
    if not words or not viewer.may_read_site:
        return []
    limit = max(1, min(limit, 20))

    def run(view: _View) -> list[dict[str, str]]:
        visible = view.visible(viewer)
        docs = visible
        for w in words[:-1]:
            docs = docs & view.term_docs("title_words", w)
        last = words[-1]
        docs = docs & view.prefix_docs(last, "title_words")
        if not docs:
            return []
        typed = " ".join(words)
        scored = []
        for d in heapq.nlargest(300, docs, key=view.updated.__getitem__):
            card = view.card(d)
            low = card["title"].lower()
            rank = (0 if low.startswith(typed) else 1 if (" " + typed) in (" " + low) else 2, len(low), low)
            scored.append((rank, card))
        scored.sort(key=lambda x: x[0])
        return [card for _, card in scored[:limit]]

    return _run(index, run, [])


@dataclass
class TriedBefore:
    """Earlier initiatives (ended and replaced first) and lessons on the same topic as some text."""

    initiatives: list[Hit] = field(default_factory=list)
    lessons: list[Hit] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.initiatives or self.lessons)

    def as_json(self) -> dict[str, Any]:
        def item(h: Hit) -> dict[str, Any]:
            return {"slug": h.slug, "title": h.title, "kind": h.kind, "status": h.status or None,
                    "ended_reason": h.ended_reason or None, "period": h.period, "snippet": h.snippet}

        return {"initiatives": [item(h) for h in self.initiatives], "lessons": [item(h) for h in self.lessons]}


ENDED = ("ended", "replaced")


def tried_before(index: SearchIndex, viewer: Viewer, text: str | None, exclude: str | None = None,
                 limit: int = 5) -> TriedBefore:
    """Earlier initiatives (any status, ended ones first) and lessons on the topic of `text` (a title or query)."""
    parsed = parse_query(text)
    terms = list(dict.fromkeys(chain(parsed.words, chain.from_iterable(parsed.phrases))))[:MAX_TERMS]
    if not terms or not viewer.may_read_site:
        return TriedBefore()

    def run(view: _View) -> TriedBefore:
        visible = view.visible(viewer)
        kinds = view.term_docs("kind", "initiative") | view.term_docs("kind", "lesson")
        pool = visible & kinds
        if not pool:
            return TriedBefore()
        # The same topic: most of the words found in initiatives and lessons (a word none of them has, like
        # "district-wide", does not count), and at least one of them in the title, tags or fields.
        per_term = [view.word_docs(t) & pool for t in terms]
        present = [docs for docs in per_term if docs]
        if not present:
            return TriedBefore()
        need = math.ceil(len(present) / 2) if len(present) > 2 else len(present)
        counts: Counter = Counter()
        for docs in present:
            counts.update(docs)
        strong = frozenset().union(*(view.term_docs(f, t) for t in terms for f in ("title", "tagtext", "fields")))
        docs = frozenset(d for d, n in counts.items() if n >= need) & strong
        if not docs:
            return TriedBefore()
        key = _score_key(view, ParsedQuery(words=terms), docs)
        hterms = frozenset(terms)
        hits = [_hit(view, d, key(d), hterms) for d in heapq.nlargest(limit * 4, docs, key=key)]
        if not hits:
            return TriedBefore()
        top = hits[0].score
        hits = [h for h in hits if h.slug != exclude and h.score >= top * 0.25]
        initiatives = [h for h in hits if h.kind == "initiative"]
        initiatives.sort(key=lambda h: (h.status not in ENDED, -h.score))
        lessons = [h for h in hits if h.kind == "lesson"]
        return TriedBefore(initiatives[:limit], lessons[:limit])

    return _run(index, run, TriedBefore())


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


def process_queue(db, index: SearchIndex, batch: int = QUEUE_BATCH, wait: float = 0.0,
                  max_batches: int | None = None) -> int:
    """Index the pages waiting in the queue; returns how many queue entries were done.

    Entries are deleted only after the index commit. A locked index (another process is writing), a damaged or
    missing one, or a full disk is logged and leaves the entries for later; nothing here raises for those.
    """
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
        if index.current_generation() != index._gen:
            raise IndexUnavailable("the index was rebuilt while we waited")  # write into the new one next time
        _remove_old_versions(index, writer, page_ids)
        for pid in page_ids:
            if pid in docs:
                writer.add_document(**docs[pid])
        # A save adds a small segment and merges nothing (merging costs up to a second at 10,000 pages); the
        # background worker merges small segments (`merge_segments`), or this does once there are too many.
        writer.commit(merge=len(writer.segments) >= MAX_SEGMENTS)
    except BaseException as e:
        try:
            writer.cancel()
        except Exception:
            pass
        if not isinstance(e, Exception):
            raise
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


MAX_SEGMENTS = 24  # past this many segments a queue commit merges the small ones itself
MERGE_AT = 8  # the background worker merges small segments past this many


def _remove_old_versions(index: SearchIndex, writer, page_ids: list[int]) -> None:
    """Delete the indexed documents of these pages. Uses the warm searcher's document numbers when it reads exactly
    the segments the writer holds (opening a reader over every segment per save is the slow part of
    `update_document`), and Whoosh's own lookup otherwise."""
    segments = [seg.segment_id() for seg in writer.segments]
    with index._lock:  # the view is shared with the threads answering searches
        view = index._view
        if view is not None and view.gen == index._gen and [leaf.segment().segment_id() for leaf, _, _ in
                                                             view.leaves] == segments:
            total = sum(seg.doc_count_all() for seg in writer.segments)
            if total == view.n:
                for pid in page_ids:
                    for d in view.term_docs("id", str(pid)):
                        if not writer.is_deleted(d):
                            writer.delete_document(d)
                return
    for pid in page_ids:
        writer.delete_by_term("id", str(pid))


def merge_segments(index: SearchIndex) -> bool:
    """Merge small segments (Whoosh's MERGE_SMALL) when there are more than MERGE_AT; for the background worker."""
    with index.write_lock:
        try:
            ix = index.open()
            if len(ix._segments()) <= MERGE_AT:
                return False
            writer = ix.writer(timeout=0.0)
        except (LockError, IndexUnavailable):
            return False
        try:
            writer.commit(merge=True)
            return True
        except Exception:
            writer.cancel()
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


def _whoosh_write_lock(gen_dir: str):
    """The write lock of an existing generation, taken without opening it (it may be damaged)."""
    try:
        lock = FileStorage(gen_dir).lock(f"{INDEX_NAME}_WRITELOCK")
        return lock
    except Exception:
        return None


REBUILD_PROCS = min(2, os.cpu_count() or 1)


def rebuild(db, data_dir: str, progress: Callable[[str, int, int], None] | None = None, procs: int | None = None,
            blocking: bool = True, only_if_unusable: bool = False) -> RebuildReport:
    """Build a new index from the database in a new directory and swap it in atomically.

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
    old_gen = index.current_generation()
    old_lock = None
    try:
        if old_gen:
            old_lock = _whoosh_write_lock(index.generation_dir(old_gen))
            if old_lock is not None and not _try(old_lock.acquire, 30.0):
                log.warning("the search index stayed locked for 30 s; rebuilding anyway")
                old_lock = None
        gen = f"g-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        gen_dir = index.generation_dir(gen)
        os.makedirs(gen_dir)
        try:
            done, queued = _build(db, gen_dir, progress, procs)
        except BaseException:
            shutil.rmtree(gen_dir, ignore_errors=True)
            raise
        _swap(root, gen)
        # The pages queued before the snapshot are in the new index.
        if queued:
            with db.writing() as session:
                for chunk in range(0, len(queued), 500):
                    session.execute(delete(IndexQueueEntry).where(IndexQueueEntry.id.in_(queued[chunk:chunk + 500])))
        _remove_old_generations(root, keep={gen, old_gen})
        return RebuildReport(pages=done, seconds=time.monotonic() - started, directory=gen_dir)
    finally:
        if old_lock is not None:
            try:
                old_lock.release()
            except Exception:
                pass
        lock.release()


def _build(db, gen_dir: str, progress, procs: int | None) -> tuple[int, list[int]]:
    """Index every live page into a new index in `gen_dir`; returns (pages, queue entry ids seen)."""
    ix = whoosh_index.create_in(gen_dir, SCHEMA, indexname=INDEX_NAME)
    procs = REBUILD_PROCS if procs is None else procs
    with db.reading() as session:
        total = session.scalar(select(func.count()).select_from(Page).where(Page.deleted_at.is_(None))) or 0
        queued = list(session.scalars(select(IndexQueueEntry.id)))
        # Sub-processes only from a main thread: forking a threaded server process is asking for trouble.
        use_procs = procs if total >= 2000 and threading.current_thread() is threading.main_thread() else 1
        if use_procs > 1:
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


def _swap(root: str, gen: str) -> None:
    tmp = os.path.join(root, f".{POINTER}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(gen + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, POINTER))


def _remove_old_generations(root: str, keep: set) -> None:
    """Remove superseded generations, but keep the one just replaced: other processes may still be reading it."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name in keep or name == POINTER or not os.path.isdir(path):
            continue
        if name.startswith("g-"):
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

@dataclass
class CheckReport:
    """Drift between database and index. Empty lists and `usable` mean they agree."""

    usable: bool = True  # False: the index is missing or damaged
    problem: str = ""
    pages: int = 0  # live pages in the database
    indexed: int = 0  # documents in the index
    missing: list[int] = field(default_factory=list)  # page ids not in the index
    stale: list[int] = field(default_factory=list)  # indexed at another revision, slug or visibility
    extra: list[int] = field(default_factory=list)  # in the index, but deleted or gone from the database
    duplicates: list[int] = field(default_factory=list)
    queued: int = 0
    repaired: bool = False
    rebuilt: bool = False

    @property
    def ok(self) -> bool:
        return self.usable and not (self.missing or self.stale or self.extra or self.duplicates)

    @property
    def drift(self) -> bool:
        return not self.ok

    def describe(self) -> str:
        """What `kb check` prints."""
        text = self.summary()
        if self.rebuilt:
            text += " (rebuilt from the database)"
        elif self.repaired:
            text += " (repaired)"
        if not self.ok:
            for label, ids in (("missing", self.missing), ("stale", self.stale), ("extra", self.extra)):
                if ids:
                    text += f"\n  {label}: page ids {', '.join(map(str, ids[:20]))}{' ...' if len(ids) > 20 else ''}"
        return text

    def summary(self) -> str:
        if not self.usable:
            return f"search index unusable: {self.problem}"
        if self.ok:
            return f"search index matches the database ({self.pages} pages, {self.queued} queued)"
        return (f"search index drift: {len(self.missing)} missing, {len(self.stale)} stale, {len(self.extra)} extra, "
                f"{len(self.duplicates)} duplicated ({self.pages} pages in the database, {self.indexed} indexed, "
                f"{self.queued} queued)")


def check(db, index: SearchIndex) -> CheckReport:
    """Compare which pages and which revisions the database and the index hold."""
    report = CheckReport()
    with db.reading() as session:
        rows = session.execute(select(Page.id, Page.revision, Page.slug, Page.visibility, Page.readers,
                                      Page.updated_at).where(Page.deleted_at.is_(None))).all()
        report.queued = session.scalar(select(func.count()).select_from(IndexQueueEntry)) or 0
    expected = {r[0]: page_stamp(r[0], r[1] or 0, r[2], r[3] or "public", r[4], r[5]) for r in rows}
    report.pages = len(expected)
    seen: dict[int, str] = {}
    dupes: set[int] = set()
    with _quiet_damage() as state:
        try:
            with index._lock:
                view = index.view()
                for stored in view.reader.all_stored_fields():
                    pid = int(stored.get("id") or 0)
                    if pid in seen:
                        dupes.add(pid)
                    seen[pid] = stored.get("stamp") or ""
        except IndexUnavailable as e:
            report.usable, report.problem = False, str(e)
        except Exception as e:
            report.usable, report.problem = False, f"the search index cannot be read: {e!r}"
            state["failed"] = True
            index.close()
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
    """Fix what `check` found: rebuild an unusable index, otherwise re-index the drifted pages."""
    report = report or check(db, index)
    if report.ok:
        return report
    if not report.usable:
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
        except BaseException:
            writer.cancel()
            raise
    after = check(db, index)
    after.repaired = True
    return after


_repair = repair  # for check_app_index, whose `repair` argument hides the function


def _problem(index: SearchIndex) -> str | None:
    """Why the index cannot be used (missing, damaged), or None when it reads fine."""
    with _quiet_damage() as state:
        try:
            with index._lock:
                view = index.view()
                view.reader.doc_count()
                # Reading one stored document and a posting list finds most garbage in segment files.
                if view.n:
                    view.searcher.stored_fields(next(iter(view.live), 0))
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
# The app side: one index object and one background worker per process

SYNC_REBUILD_LIMIT = 5000  # at start-up, rebuild a broken index of up to this many pages before serving
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


_workers_lock = threading.Lock()


def index_for(app) -> SearchIndex:
    return app.extensions["kb_search"]


def worker_enabled(app) -> bool:
    return bool(app.config.get("SEARCH_BACKGROUND", True) and app.config.get("SEARCH_WORKER", True))


def _ensure_worker(app) -> None:
    if not worker_enabled(app):
        return
    worker = app.extensions.get("kb_search_worker")
    if worker is not None and worker.alive():
        return
    with _workers_lock:
        worker = app.extensions.get("kb_search_worker")
        if worker is None or not worker.alive():
            app.extensions["kb_search_worker"] = Worker(app.extensions["kb_db"], index_for(app)).start()


def init_app(app) -> None:
    """Attach the index to the app, repair a missing or damaged one, and start the worker on first request.

    Config: SEARCH_BACKGROUND (the worker thread; default on), SEARCH_SYNC_REBUILD_LIMIT (at most this many pages
    are rebuilt before serving; a bigger broken index is rebuilt by the worker while search answers "unavailable").
    """
    data_dir = app.config["DATA_DIR"]
    index = SearchIndex(os.path.join(data_dir, "index"))
    app.extensions["kb_search"] = index
    db = app.extensions["kb_db"]
    ensure_index(db, index, sync_limit=app.config.get("SEARCH_SYNC_REBUILD_LIMIT", SYNC_REBUILD_LIMIT))
    app.before_request(lambda: _ensure_worker(app))


def rebuild_app_index(app, progress: Callable[[str, int, int], None] | None = None) -> int:
    """`kb reindex`: rebuild this app's index; returns the number of pages indexed."""
    index = index_for(app)
    report = rebuild(app.extensions["kb_db"], index.data_dir, progress=progress)
    index.close()
    index.damaged = False
    return report.pages


def check_app_index(app, repair: bool = False) -> CheckReport:
    """`kb check [--repair]`: compare database and index; with repair, fix the drift and report what is left."""
    db, index = app.extensions["kb_db"], index_for(app)
    report = check(db, index)
    if repair and not report.ok:
        report = _repair(db, index, report)
    return report


def kick(app, background: bool | None = None) -> None:
    """Called after a commit that queued index work; never raises.

    Where this process runs the index worker (a server), the worker is woken and indexes the save right after the
    response, so saving does not wait for the index; otherwise (tests, commands) the queue is worked off here.
    """
    if background is None:
        background = bool(app.config.get("SEARCH_WORKER", not app.testing))
    if background and not worker_enabled(app):
        background = False  # nobody else would do it
    if not background:
        try:
            db, index = app.extensions["kb_db"], index_for(app)
            if not index.exists():
                # A fresh instance (or a deleted index): small ones are rebuilt right away, big ones by the worker.
                ensure_index(db, index, sync_limit=app.config.get("SEARCH_SYNC_REBUILD_LIMIT", SYNC_REBUILD_LIMIT))
            process_queue(db, index, wait=0.25, max_batches=2)
        except Exception:
            log.exception("search index update after save failed; the worker will retry")
    try:
        _ensure_worker(app)
        worker = app.extensions.get("kb_search_worker")
        if worker is not None:
            worker.wake.set()
    except Exception:
        log.exception("could not wake the search index worker")


__all__ = [
    "SCHEMA", "SearchIndex", "open_index", "index_for", "document_for", "strip_markdown", "parse_query",
    "ParsedQuery", "search", "SearchResults", "Hit", "suggest", "tried_before", "TriedBefore", "snippet",
    "add_to_index", "remove_from_index", "process_queue", "queue_length", "rebuild", "RebuildReport", "check",
    "repair", "CheckReport", "ensure_index", "Worker", "init_app", "kick", "IndexUnavailable", "rebuild_app_index",
    "check_app_index", "parse_year", "SORTS", "FACET_NAMES",
]
