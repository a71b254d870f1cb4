"""Every use of Whoosh's private internals, in one place (whoosh-reloaded 2.7.5).

The rest of the Whoosh backend uses Whoosh's public API and the functions here. An upgrade of Whoosh that renames
or changes one of the names below breaks this module only, and the named test in tests/test_search.py fails.

Private names relied on, and the test that catches a change:

* Field lengths (`_remember_missing_length_columns`, `raw_lengths`):
  `whoosh.codec.whoosh3.W3PerDocReader._cached_reader`, `.doc_field_length`, `._readers`, `._doccount`;
  `whoosh3._lenfield`, `whoosh3.LENGTHS_COLUMN`; a column reader's `._dbfile`, `._basepos`, `._count`.
  Test: `test_whoosh_length_shortcuts_answer_as_whoosh_does`, and the lengths part of
  `test_column_files_agree_with_whoosh_postings_positions_and_scores`.
* Compound segments read in place (`_no_copy_buffer_files`): `whoosh.filedb.structfile.BufferFile.__init__`
  and its attributes `_buf`, `file`, `_name`, `onclose`.
  Test: `test_compound_segment_files_are_read_from_the_map_without_a_copy`.
* The hook that writes each segment's column file (`watch_segment_writes`):
  `whoosh3.W3FieldWriter.add_postings(schema, lengths, items)`, `.close()`, `._storage`, `._segment`.
  Tests: `test_column_files_agree_with_whoosh_postings_positions_and_scores`,
  `test_column_files_are_written_by_rebuild_and_follow_updates_and_deletes`.
* Where a segment's files are (`storage_folder`, `segment_folder`, `per_document_reader`, `mapped_files`):
  `FileStorage.folder`, `OverlayStorage.a` / `.b`, `SegmentReader._storage`, `SegmentReader._perdoc`,
  `CompoundStorage._source` (the compound file's memory map).
  Tests: `test_column_files_are_written_by_rebuild_and_follow_updates_and_deletes`, and for `mapped_files`
  `test_a_file_truncated_under_a_live_index_is_answered_as_rebuilding_and_heals` (tests/test_faults.py).
* The table of contents (`open_searcher`, `segments`): `FileIndex._read_toc()`, `FileIndex._segments()`,
  a TOC's `segments`, `schema`, `generation`; `SegmentReader(..., generation=)`, `SegmentReader.is_closed`.
  Test: `test_a_save_reopens_only_the_segment_readers_it_changed`.
* Postings a block at a time (`read_postings`): a FilterMatcher's `child`; the W3 block matcher's `_read_ids`,
  `_read_weights`, `_read_values`, `_next_block`, `_atend`, `_i`, `_ids`, `_weights`, `_values`.
  Test: `test_reading_postings_a_block_at_a_time_agrees_with_the_matcher`.
* The Positions format's bytes (`decode_positions`): a 4-byte count, then a pickled list of gaps without its
  final STOP opcode. Test: `test_reading_postings_a_block_at_a_time_agrees_with_the_matcher` and the positions part
  of `test_column_files_agree_with_whoosh_postings_positions_and_scores`.

`install()` applies the two patches that speed Whoosh up; the package installs them, and the column-file hook,
when it is imported.
"""
from __future__ import annotations

import io
import pickle
import time
from itertools import accumulate
from typing import Any, Callable, Iterable, Protocol

from whoosh.codec import whoosh3
from whoosh.filedb import structfile
from whoosh.formats import Positions
from whoosh.util.numeric import byte_to_length

# ---------------------------------------------------------------------------------------------------------------
# Field lengths. whoosh-reloaded 2.7.5 spends most of a segment write looking up field lengths: for every posting
# it asks whether a field's length column file exists (one stat() per posting for fields without lengths: ID,
# KEYWORD, NUMERIC), then reads the document's length byte through three layers of calls. A finished segment's
# files never change, so remember both the answer and the whole column.

WHOOSH_LENGTHS = [byte_to_length(b) if b else None for b in range(256)]  # a length byte, decoded (0: None)


def raw_lengths(perdoc, fieldname: str) -> bytes | None:
    """A field's one-byte-per-document length column as stored; None when the field has no column.
    Raises ValueError for a short column."""
    column = perdoc._cached_reader(whoosh3._lenfield(fieldname), whoosh3.LENGTHS_COLUMN)
    if column is None:
        return None
    raw = column._dbfile.get(column._basepos, column._count)
    if len(raw) != column._count:
        raise ValueError("short lengths column")
    return bytes(raw)


def _length_column(perdoc, fieldname: str):
    """Decoded lengths of every document (None for 0, as Whoosh answers), () without a column, False if unreadable."""
    try:
        raw = raw_lengths(perdoc, fieldname)
    except Exception:
        return False
    return () if raw is None else [WHOOSH_LENGTHS[b] for b in raw]


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
    doc_field_length.kb_original = original_length  # for the test that compares the two
    _cached_reader.kb_remembers = True
    whoosh3.W3PerDocReader._cached_reader = _cached_reader
    whoosh3.W3PerDocReader.doc_field_length = doc_field_length


# ---------------------------------------------------------------------------------------------------------------
# Compound segments read in place

class MappedFile(io.RawIOBase):
    """A read-only file over a memoryview, without copying it."""

    def __init__(self, buf: memoryview):
        self._buf = buf
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = max(0, min(len(b), len(self._buf) - self._pos))
        b[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos if whence == 1 else len(self._buf) + pos
        return self._pos

    def tell(self) -> int:
        return self._pos


def _no_copy_buffer_files() -> None:
    """Whoosh reads a compound segment through one memory map, but wraps each file in it (the postings, the columns)
    in a BytesIO, which copies the whole file into memory for every reader: hundreds of megabytes at 100,000
    pages. Read the map in place instead."""
    original = structfile.BufferFile.__init__
    if getattr(original, "kb_no_copy", False):
        return

    def __init__(self, buf, name=None, onclose=None):
        original(self, buf if not isinstance(buf, memoryview) else b"", name=name, onclose=onclose)
        if isinstance(buf, memoryview):
            self._buf = buf
            self.file = MappedFile(buf)

    __init__.kb_no_copy = True
    structfile.BufferFile.__init__ = __init__


def install() -> None:
    """Apply the two speed-ups above (idempotent)."""
    _remember_missing_length_columns()
    _no_copy_buffer_files()


# ---------------------------------------------------------------------------------------------------------------
# Watching segments being written

class SegmentWatcher(Protocol):
    """Sees one segment's postings stream past as Whoosh writes them, and is told when the segment is closed."""

    def postings(self, items: Iterable[tuple]) -> Iterable[tuple]:
        """Pass the sorted (field, term, document, weight, value) postings through, unchanged."""

    def lengths(self, perdoc) -> None:
        """The new segment's per-document reader (or None), once its postings are written."""

    def closed(self, folder: str | None, segment_id: str) -> None:
        """The segment's files are complete, in `folder`."""


def watch_segment_writes(start: Callable[[], SegmentWatcher]) -> None:
    """Hook Whoosh's field writer: for every segment written (new documents, merges, rebuilds, in any process),
    `start()` makes a watcher that sees the postings as they are written (no extra pass over them)."""
    writer = whoosh3.W3FieldWriter
    if getattr(writer, "kb_watched", False):
        return
    original_add, original_close = writer.add_postings, writer.close

    def add_postings(self, schema, lengths, items):
        watcher = self.__dict__.get("_kb_watcher")
        if watcher is None:
            watcher = self._kb_watcher = start()
        original_add(self, schema, lengths, watcher.postings(items))
        watcher.lengths(lengths)

    def close(self):
        original_close(self)
        watcher = self.__dict__.pop("_kb_watcher", None)
        if watcher is not None:
            watcher.closed(storage_folder(self._storage), self._segment.segment_id())

    writer.add_postings = add_postings
    writer.close = close
    writer.kb_watched = True


# ---------------------------------------------------------------------------------------------------------------
# Where a segment's files are

def storage_folder(storage) -> str | None:
    """The directory of a Whoosh storage (through the overlay a compound segment is read with), or None."""
    for candidate in (storage, getattr(storage, "b", None), getattr(storage, "a", None)):
        folder = getattr(candidate, "folder", None)
        if isinstance(folder, str) and folder:
            return folder
    return None


def segment_folder(leaf) -> str | None:
    """The directory of a segment reader's files, or None (an index in memory)."""
    return storage_folder(leaf._storage)


def per_document_reader(leaf):
    """A segment reader's per-document reader (lengths, columns, stored fields)."""
    return leaf._perdoc


def mapped_files(leaf) -> list:
    """The memory maps a segment reader reads through: its compound file's (`CompoundStorage._source`, behind the
    OverlayStorage a compound segment is read with), if it was mapped."""
    maps = []
    for storage in (leaf._storage, getattr(leaf._storage, "a", None), getattr(leaf._storage, "b", None)):
        source = getattr(storage, "_source", None)
        if source is not None and hasattr(source, "size") and source not in maps:
            maps.append(source)
    return maps


# ---------------------------------------------------------------------------------------------------------------
# The table of contents

def segments(ix) -> list:
    """The segments of the index's current table of contents."""
    return ix._segments()


def open_searcher(ix, reusable: dict[str, Any]):
    """A searcher on the index's newest table of contents, re-using the given readers (segment id -> reader) of
    segments whose deletions have not changed. Closes nothing: the caller closes the readers it no longer uses.

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
    readers, opened = [], []
    try:
        for segment in toc.segments:
            leaf = reusable.get(segment.segment_id())
            if leaf is not None and not leaf.is_closed and leaf.segment().deleted_count() == segment.deleted_count():
                readers.append(leaf)
            else:
                opened.append(SegmentReader(ix.storage, toc.schema, segment, generation=toc.generation))
                readers.append(opened[-1])
    except BaseException:
        for r in opened:
            r.close()
        raise
    # The searcher must not close the readers it was given: they belong to the views that share them.
    return Searcher(MultiReader(readers, generation=toc.generation), fromindex=ix, closereader=False)


# ---------------------------------------------------------------------------------------------------------------
# Postings, a block at a time

def _unwrap(matcher):
    # A segment with deletions wraps its postings in a FilterMatcher; deleted documents are removed later, because
    # every document set is intersected with the visible (live) documents.
    return getattr(matcher, "child", matcher)


def read_postings(leaf, fieldname: str, text, values: bool = False) -> tuple[list, list, list]:
    """(ids, weights, values) of one term in one segment, deleted documents included, a block at a time."""
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


def decode_positions(value: bytes) -> list[int]:
    """A Positions posting value -> its word positions: unpickle the gaps and add them up in C."""
    if not value:
        return []
    raw = value[4:] if value.endswith(b".") else value[4:] + b"."
    return list(accumulate(pickle.loads(raw)))


def positions_decoder(fmt) -> Callable[[bytes], Iterable[int]]:
    """How to read the positions of a field's posting values (quickly for Whoosh's own Positions format)."""
    return decode_positions if type(fmt) is Positions else fmt.decode_positions

