"""Reading what people type into the search box, the same way for every backend.

`parse_query` splits a query into words, "phrases", -exclusions, trailing-star prefixes and the `kind:` `tag:`
`status:` `year:` filters. It never fails: odd syntax becomes plain words. How a word becomes an index term (lower
case, stemming, stop words) belongs to the backend, which passes its own `analyse_word`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable

MAX_QUERY_CHARS = 1000
MAX_TERMS = 24
FILTER_RE = re.compile(r"^(kind|tag|status|year|type):(.*)$", re.I)
YEAR_RE = re.compile(r"^\s*(\d{1,4})\s*(?:(?:-|–|\.\.)\s*(\d{1,4}))?\s*$")
TOKEN_RE = re.compile(r'(-?)(?:"([^"]*)"|(\S+))')
WORD_RE = re.compile(r"\w+(?:\.?\w+)*", re.U)


def lower_word(word: str) -> str | None:
    """The plainest analysis: the word in lower case (one-letter words dropped)."""
    low = word.lower()
    return low if len(low) >= 2 else None


@dataclass
class ParsedQuery:
    """What a search box query asks for. `words` are index terms (as the backend analyses them); `typed` the words
    as typed."""

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
                year: str | None = None, analyse_word: Callable[[str], str | None] = lower_word) -> ParsedQuery:
    """Read a search box query (plus filters given as parameters). Never fails: odd syntax becomes plain words.

    `analyse_word` turns one typed word into an index term, or None for a word the index leaves out."""
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
