"""What goes into the Whoosh index: the schema, the analyzer, and the document of a page."""
from __future__ import annotations

import hashlib
import html
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable

from whoosh.analysis import Analyzer, LowercaseFilter, RegexTokenizer, Token
from whoosh.analysis.filters import STOP_WORDS
from whoosh.columns import VarBytesColumn
from whoosh.fields import COLUMN, ID, KEYWORD, NUMERIC, STORED, TEXT, Schema
from whoosh.lang.porter import stem as porter_stem

from kb.kinds import KINDS, field_text, status_of, years_covered
from kb.models import Page
from kb.search.query import WORD_RE

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


@lru_cache(maxsize=100_000)
def analyse_word(word: str) -> str | None:
    """One token's index term: lowercased and stemmed, or None for a stop word (as the STEM analyzer does)."""
    low = word.lower()
    if len(low) < 2 or low in STOP_WORDS:
        return None
    return porter_stem(low)


def analyse(text: str) -> list[str]:
    return [t.text for t in STEM(text)]
