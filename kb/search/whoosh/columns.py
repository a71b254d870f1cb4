"""Compact arrays beside each Whoosh segment, so queries are answered with vectorised arithmetic.

Whoosh keeps a term's postings in pickled blocks: reading a common word's postings (and above all their positions)
costs microseconds per document, hundreds of milliseconds per query at 100,000 pages. So each segment gets a
second, plain copy of what queries need, written once when the segment is written:

* for the text fields and the facet fields: the sorted terms, and per term the document numbers (uint32) and term
  frequencies; for the text fields also every posting's word positions (for phrases);
* each document's field lengths (Whoosh's length byte), last update (milliseconds) and years.

It lives in `kbcols-<segment id>.npc` in the build directory: a small JSON header (array names, types,
offsets, a checksum of the whole payload) and the arrays, read through one read-only memory map, so the pages are
shared by every process on the machine and only the ones a query touches are read.

The file is a cache: it is written as the segment is, by a `Capture` watching Whoosh's field writer
(`install_capture`, through `internals.watch_segment_writes`) (no extra pass over the
postings); when the file is missing, from another version, or fails its checksum, `load` rebuilds it from the
segment itself (slowly: Whoosh's postings are decoded once) and writes it again. A segment never changes apart
from deletions, which are applied at query time from Whoosh's own list.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import re
import struct
import time
import uuid
import zlib
from array import array
from itertools import accumulate
from typing import Any, Iterable

import numpy as np
from whoosh.formats import Positions
from whoosh.util.numeric import length_to_byte

from kb.search.whoosh import internals
from kb.search.whoosh.documents import SCHEMA, TEXT_FIELDS

log = logging.getLogger(__name__)

VERSION = 1
MAGIC = b"KBCOLS01"
PREFIX = "kbcols-"
SUFFIX = ".npc"
FILE_RE = re.compile(r"^kbcols-(.+)\.npc$")

# Fields kept as term -> (documents, frequencies); the text fields also keep positions and lengths.
POSTING_FIELDS = ("title", "tagtext", "fields", "body", "title_words", "kind", "status", "visibility", "readers",
                  "tags", "decade")
POSITION_FIELDS = TEXT_FIELDS
LENGTH_FIELDS = TEXT_FIELDS
NUMERIC_FIELDS = ("updated", "years")  # full-precision values only
CAPTURED = frozenset(POSTING_FIELDS + NUMERIC_FIELDS)
ALIGN = 8


def file_name(segment_id: str) -> str:
    return f"{PREFIX}{segment_id}{SUFFIX}"


class ColumnsDamaged(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Writing

class _FieldData:
    """One field's postings as they stream past: terms in order, then flat documents, frequencies, positions."""

    __slots__ = ("terms", "ends", "docs", "tf", "pos", "positional")

    def __init__(self, positional: bool):
        self.terms: list[bytes] = []
        self.ends: list[int] = []  # postings count at the end of each term
        self.docs = array("I")
        self.tf = array("d")
        self.pos = array("I")
        self.positional = positional


class Capture:
    """Everything a segment's column file holds, gathered while Whoosh writes the segment (or read back)."""

    def __init__(self):
        self.n: int | None = None
        self.fields: dict[str, _FieldData] = {}
        self.lengths_by_field: dict[str, bytes] = {}
        self.numeric: dict[str, tuple[array, array]] = {}  # field -> (docs, values)
        self.valid = True

    def field(self, name: str) -> _FieldData:
        data = self.fields.get(name)
        if data is None:
            data = self.fields[name] = _FieldData(name in POSITION_FIELDS)
        return data

    # -- as a SegmentWatcher (see internals.watch_segment_writes)
    def postings(self, items: Iterable[tuple]) -> Iterable[tuple]:
        if self.fields or self.numeric:
            self.valid = False  # a second batch of postings: leave it to the reader to build the file
        return self.stream(items)

    def lengths(self, perdoc) -> None:
        try:
            if perdoc is not None:
                self.n = perdoc.doc_count_all()
                for name in LENGTH_FIELDS:
                    self.lengths_by_field[name] = internals.raw_lengths(perdoc, name) or b""
            else:
                self.valid = False
        except Exception:
            self.valid = False

    def closed(self, folder: str | None, segment_id: str) -> None:
        if not self.valid or self.n is None or not folder:
            return
        try:
            write(folder, segment_id, self)
        except Exception:  # a full disk, say: the reader builds the file later
            log.warning("could not write the column file of segment %s", segment_id, exc_info=True)

    def stream(self, items: Iterable[tuple]) -> Iterable[tuple]:
        """Pass Whoosh's sorted (field, term, doc, weight, value) postings through, keeping what we need."""
        current, data, last, numeric = None, None, None, None
        for item in items:
            fieldname, btext, docnum, weight, value = item
            if fieldname != current:
                if data is not None and last is not None:
                    data.ends.append(len(data.docs))
                current, data, last, numeric = fieldname, None, None, None
                if fieldname in NUMERIC_FIELDS:
                    numeric = self.numeric.setdefault(fieldname, (array("I"), array("q")))
                    decode = SCHEMA[fieldname].from_bytes
                elif fieldname in CAPTURED:
                    data = self.field(fieldname)
            if docnum >= 0:
                if data is not None:
                    if btext != last:
                        if last is not None:
                            data.ends.append(len(data.docs))
                        data.terms.append(btext)
                        last = btext
                    data.docs.append(docnum)
                    data.tf.append(weight)
                    if data.positional:
                        positions = internals.decode_positions(value)
                        if len(positions) != weight:
                            data.positional = False  # a boosted field: phrases are checked through Whoosh
                        data.pos.extend(positions)
                elif numeric is not None and btext[:1] == b"\x00":
                    numeric[0].append(docnum)
                    numeric[1].append(int(decode(btext)))
            yield item
        if data is not None and last is not None:
            data.ends.append(len(data.docs))

    def arrays(self) -> dict[str, np.ndarray]:
        n = int(self.n or 0)
        out: dict[str, np.ndarray] = {}
        for name, data in self.fields.items():
            terms = data.terms
            blob = b"".join(terms)
            out[f"{name}.terms"] = np.frombuffer(blob, dtype=np.uint8) if blob else np.zeros(0, np.uint8)
            out[f"{name}.toff"] = np.fromiter(accumulate((len(t) for t in terms), initial=0), np.int64,
                                              len(terms) + 1)
            out[f"{name}.ptr"] = np.array([0] + data.ends, dtype=np.int64)
            out[f"{name}.docs"] = np.frombuffer(data.docs, dtype=np.uint32).copy() if data.docs else \
                np.zeros(0, np.uint32)
            tf = np.frombuffer(data.tf, dtype=np.float64) if data.tf else np.zeros(0)
            if tf.size == 0 or (np.all(tf == np.round(tf)) and tf.max() < 65536 and tf.min() >= 0):
                tf = tf.astype(np.uint8 if tf.size == 0 or tf.max() < 256 else np.uint16)
            else:
                tf = tf.astype(np.float32)
            out[f"{name}.tf"] = tf
            if data.positional and name in POSITION_FIELDS:
                pos = np.frombuffer(data.pos, dtype=np.uint32) if data.pos else np.zeros(0, np.uint32)
                out[f"{name}.pos"] = pos.astype(np.uint16) if pos.size == 0 or pos.max() < 65536 else pos.copy()
        for name in LENGTH_FIELDS:
            raw = self.lengths_by_field.get(name, b"")
            col = np.zeros(n, dtype=np.uint8)
            if raw:
                col[: min(n, len(raw))] = np.frombuffer(raw, dtype=np.uint8)[:n]
            out[f"{name}.len"] = col
        docs, values = self.numeric.get("updated", (array("I"), array("q")))
        updated = np.zeros(n, dtype=np.int64)
        if docs:
            updated[np.frombuffer(docs, dtype=np.uint32)] = np.frombuffer(values, dtype=np.int64)
        out["updated.value"] = updated
        docs, values = self.numeric.get("years", (array("I"), array("q")))
        out["years.docs"] = np.frombuffer(docs, dtype=np.uint32).copy() if docs else np.zeros(0, np.uint32)
        out["years.value"] = np.frombuffer(values, dtype=np.int64).astype(np.int32) if values else \
            np.zeros(0, np.int32)
        return out


def write(folder: str, segment_id: str, capture: Capture) -> str:
    """Write a segment's column file atomically (a temporary name, then a rename); returns its path."""
    arrays = capture.arrays()
    layout: dict[str, list] = {}
    offset = 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        arrays[name] = arr
        layout[name] = [arr.dtype.str, offset, int(arr.size)]
        offset += -(-arr.nbytes // ALIGN) * ALIGN
    crc = 0
    for arr in arrays.values():
        crc = zlib.crc32(_padded(arr), crc)
    header = json.dumps({"version": VERSION, "segment": segment_id, "n": int(capture.n or 0), "arrays": layout,
                         "payload": offset, "crc": crc}).encode()
    header += b" " * (-(len(MAGIC) + 8 + len(header)) % ALIGN)
    path = os.path.join(folder, file_name(segment_id))
    tmp = os.path.join(folder, f".{file_name(segment_id)}.{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<II", len(header), zlib.crc32(header)) + header)
            for arr in arrays.values():
                f.write(_padded(arr))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def _padded(arr: np.ndarray) -> bytes:
    raw = arr.tobytes()
    return raw + b"\x00" * (-len(raw) % ALIGN)


def install_capture() -> None:
    """Every segment written (new documents, merges, rebuilds, in any process) gets its column file as the
    segment's files are closed."""
    internals.watch_segment_writes(Capture)


def capture_from_reader(leaf) -> Capture:
    """Read a finished segment's postings back (slow: every block is unpickled); for a missing or damaged file."""
    capture = Capture()
    capture.n = leaf.doc_count_all()

    def items():
        for fieldname in sorted(CAPTURED):
            if fieldname not in leaf.schema:
                continue
            positional = fieldname in POSITION_FIELDS and type(leaf.schema[fieldname].format) is Positions
            for term in leaf.lexicon(fieldname):
                if fieldname in NUMERIC_FIELDS and term[:1] != b"\x00":
                    continue
                ids, weights, values = internals.read_postings(leaf, fieldname, term, values=positional)
                if not positional:
                    values = [b""] * len(ids)
                for d, w, v in zip(ids, weights, values):
                    yield fieldname, term, d, w, v

    for _ in capture.stream(items()):
        pass
    perdoc = internals.per_document_reader(leaf)
    for name in LENGTH_FIELDS:
        try:
            capture.lengths_by_field[name] = internals.raw_lengths(perdoc, name) or b""
        except Exception:
            dfl = leaf.doc_field_length
            capture.lengths_by_field[name] = bytes(length_to_byte(dfl(d, name, 0) or 0) for d in range(capture.n))
    return capture


# ---------------------------------------------------------------------------------------------------------------
# Reading

class Inverted:
    """One field of one segment: sorted terms, and per term its documents, frequencies and (text) positions."""

    def __init__(self, cols: Columns, name: str):
        self.blob = cols.array(f"{name}.terms")
        self.toff = cols.array(f"{name}.toff")
        self.ptr = cols.array(f"{name}.ptr")
        self.docs = cols.array(f"{name}.docs")
        self.tf = cols.array(f"{name}.tf")
        self.pos = cols.array(f"{name}.pos") if cols.has(f"{name}.pos") else None
        self.count = len(self.ptr) - 1
        self._raw = self.blob.tobytes() if self.blob.size < (1 << 16) else None
        self._posptr: np.ndarray | None = None
        if (len(self.toff) != self.count + 1 or (self.count >= 0 and int(self.ptr[-1]) != len(self.docs))
                or len(self.tf) != len(self.docs) or (self.count and int(self.toff[-1]) != len(self.blob))):
            raise ColumnsDamaged(f"inconsistent arrays for field {name}")

    def term(self, i: int) -> bytes:
        a, b = int(self.toff[i]), int(self.toff[i + 1])
        if self._raw is not None:
            return self._raw[a:b]
        return self.blob[a:b].tobytes()

    def find(self, btext: bytes) -> int:
        """The index of a term, or -1."""
        i = self.lower_bound(btext)
        return i if i < self.count and self.term(i) == btext else -1

    def lower_bound(self, btext: bytes) -> int:
        lo, hi = 0, self.count
        term = self.term
        while lo < hi:
            mid = (lo + hi) // 2
            if term(mid) < btext:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def prefix_range(self, bprefix: bytes) -> tuple[int, int]:
        lo = self.lower_bound(bprefix)
        hi = lo
        while hi < self.count and self.term(hi).startswith(bprefix):
            hi += 1
        return lo, hi

    def df(self, i: int) -> int:
        return int(self.ptr[i + 1] - self.ptr[i])

    def postings(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        return self.docs[a:b], self.tf[a:b]

    def positions(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(start of each posting's positions, all positions) of term i; a posting has tf positions."""
        if self._posptr is None:
            # Where each term's positions start (one number per term, not per posting).
            if self.count:
                per_term = np.add.reduceat(self.tf.astype(np.int64), self.ptr[:-1]) if len(self.tf) else \
                    np.zeros(self.count, np.int64)
                per_term[np.diff(self.ptr) == 0] = 0
            else:
                per_term = np.zeros(0, np.int64)
            starts = np.zeros(self.count + 1, dtype=np.int64)
            np.cumsum(per_term, out=starts[1:])
            if int(starts[-1]) != len(self.pos):
                raise ColumnsDamaged("positions do not add up")
            self._posptr = starts
        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        local = np.zeros(b - a + 1, dtype=np.int64)
        np.cumsum(self.tf[a:b], out=local[1:])
        return local + self._posptr[i], self.pos


class Columns:
    """A segment's column file, memory-mapped."""

    def __init__(self, path: str, segment_id: str, n: int):
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 8)
            if len(head) != len(MAGIC) + 8 or head[: len(MAGIC)] != MAGIC:
                raise ColumnsDamaged("not a column file")
            size, crc = struct.unpack("<II", head[len(MAGIC):])
            header = f.read(size)
            if len(header) != size or zlib.crc32(header) != crc:
                raise ColumnsDamaged("damaged header")
            meta = json.loads(header)
            if meta.get("version") != VERSION or meta.get("segment") != segment_id or meta.get("n") != n:
                raise ColumnsDamaged("written for another segment or version")
            start = len(MAGIC) + 8 + size
            payload = int(meta["payload"])
            if os.fstat(f.fileno()).st_size != start + payload:
                raise ColumnsDamaged("wrong size")
            check, left = 0, payload
            while left > 0:
                chunk = f.read(min(left, 1 << 22))
                if not chunk:
                    raise ColumnsDamaged("short file")
                check = zlib.crc32(chunk, check)
                left -= len(chunk)
            if check != meta["crc"]:
                raise ColumnsDamaged("checksum mismatch")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if payload else None
        self.n = n
        self._start = start
        self._layout = meta["arrays"]
        self._fields: dict[str, Inverted | None] = {}
        self.path = path

    def has(self, name: str) -> bool:
        return name in self._layout

    def array(self, name: str) -> np.ndarray:
        dtype, offset, count = self._layout[name]
        if not count:
            return np.zeros(0, dtype=np.dtype(dtype))
        return np.frombuffer(self._map, dtype=np.dtype(dtype), count=count, offset=self._start + offset)

    def field(self, name: str) -> Inverted | None:
        if name not in self._fields:
            self._fields[name] = Inverted(self, name) if self.has(f"{name}.ptr") else None
        return self._fields[name]

    def lengths(self, name: str) -> np.ndarray:
        return self.array(f"{name}.len")

    def shrunk(self) -> bool:
        """Has the file become shorter than its map (truncated under this process)? Reading the map past the new end
        would kill the process with SIGBUS, so every query asks first (one fstat)."""
        m = self._map
        if m is None:
            return False
        try:
            return m.size() < len(m)
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self._fields.clear()
        self._layout = {}
        # The map itself is freed with the last array that views it.
        self._map = None


def load(leaf) -> Columns:
    """The column file of a segment reader's segment: checked, or (re)built from the segment when unusable."""
    segment = leaf.segment()
    segment_id, n = segment.segment_id(), leaf.doc_count_all()
    folder = internals.segment_folder(leaf)
    path = os.path.join(folder, file_name(segment_id)) if folder else None
    problem = "no folder"
    if path is not None:
        try:
            return Columns(path, segment_id, n)
        except FileNotFoundError:
            problem = "missing"
        except (ColumnsDamaged, OSError, ValueError, KeyError, TypeError) as e:
            problem = str(e) or type(e).__name__
    if path is not None:
        log.warning("search index: column file of segment %s is %s; building it again", segment_id, problem)
    capture = capture_from_reader(leaf)
    if path is not None:
        try:
            write(folder, segment_id, capture)
            return Columns(path, segment_id, n)
        except Exception:
            log.warning("could not write the column file of segment %s", segment_id, exc_info=True)
    import tempfile  # no folder to write to (an index in memory): keep the file in a temporary place

    with tempfile.TemporaryDirectory() as tmp:
        return Columns(write(tmp, segment_id, capture), segment_id, n)


def ensure_files(folder: str, segments: Iterable[Any], open_leaf) -> int:
    """Build the missing column files of these segments (`open_leaf(segment)` gives a reader); returns how many."""
    built = 0
    for segment in segments:
        if not os.path.exists(os.path.join(folder, file_name(segment.segment_id()))):
            leaf = open_leaf(segment)
            try:
                load(leaf).close()
                built += 1
            finally:
                leaf.close()
    return built


def remove_unused(folder: str, keep: Iterable[str], min_age: float = 0.0) -> None:
    """Remove column files (and left-over temporary files) of segments that are gone, if older than `min_age`
    seconds. Readers that still map a removed file keep reading it."""
    keep = set(keep)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now = time.time()
    for name in names:
        m = FILE_RE.match(name)
        temporary = name.startswith("." + PREFIX)
        if (m and m.group(1) not in keep) or temporary:
            path = os.path.join(folder, name)
            try:
                if now - os.path.getmtime(path) >= max(min_age, 600.0 if temporary else 0.0):
                    os.remove(path)
            except OSError:
                pass
