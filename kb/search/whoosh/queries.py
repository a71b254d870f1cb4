"""Queries over the Whoosh index: snippets, and the searches themselves (search, suggest, tried before).

Visibility is applied before anything is counted: every document set starts from the documents the viewer may
read (`_View.visible`, which asks kb.access.can_read), so results, totals, facet counts, snippets, suggestions and
corrections never reflect a page the viewer may not read. Each read takes `pending` (a function that reads the
index queue, see `view.Pending`), called once before the view is taken, so a page made restricted, taken from a
reader or deleted is hidden as soon as the save is committed, whether or not the index has caught up. User input is never handed to Whoosh's query parser:
`kb.search.query.parse_query` reads it (with this index's analyser) and any text gets an answer.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain
from typing import Any, Callable, Iterable

import numpy as np
from markupsafe import Markup
from whoosh.automata.fsa import find_all_matches
from whoosh.automata.lev import levenshtein_automaton
from whoosh.support.levenshtein import distance as edit_distance

from kb.access import Viewer
from kb.kinds import ENDING_STATUSES
from kb.render import highlight
from kb.search.backend import FACET_NAMES, SORTS, Hit, SearchResults, TriedBefore
from kb.search.query import MAX_TERMS, WORD_RE, ParsedQuery
from kb.search.query import parse_query as _parse_query
from kb.search.whoosh.documents import TOP_TAGS, _cut, analyse, analyse_word
from kb.search.whoosh.engine import IndexMissing, IndexUnavailable, SearchIndex, _quiet_damage
from kb.search.whoosh.view import Pending, _View

log = logging.getLogger(__name__)

# What people type, read with this index's analyser (lower case, Porter stems, no stop words).
parse_query = partial(_parse_query, analyse_word=analyse_word)


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


def snippet(text: str, terms: frozenset[str], width: int = SNIPPET_CHARS,
            prefixes: Iterable[str] = ()) -> Markup | None:
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
    marks = [(s - lead, e - lead) for s, e, _ in spans if s >= lead and e <= end]
    return ("…" if lead > 0 else "") + highlight(text[lead:end], marks) + ("…" if end < len(text) else "")


def _plain_snippet(text: str, width: int = SNIPPET_CHARS) -> Markup:
    text = text or ""
    cut = _cut(text, width)
    return highlight(cut) + ("…" if len(cut) < len(text) else "")


def snippet_for(stored: dict[str, Any], terms: frozenset[str], prefixes: Iterable[str] = ()) -> Markup:
    """HTML snippet for one hit: a window of the body excerpt or the fields around the query terms."""
    for key in ("excerpt", "field_excerpt"):
        found = snippet(stored.get(key) or "", terms, prefixes=prefixes)
        if found:
            return found
    return _plain_snippet(stored.get("excerpt") or stored.get("field_excerpt") or "")


# ---------------------------------------------------------------------------------------------------------------
# Searching

def _scores(view: _View, parsed: ParsedQuery) -> np.ndarray | None:
    """Every document's relevance: BM25 over title, tags, fields and body with per-field boosts, summed over the
    words (in query order), then the prefixes. None when the query has no words."""
    words = list(dict.fromkeys(chain(parsed.words, chain.from_iterable(parsed.phrases))))
    if not words and not parsed.prefixes:
        return None
    out = np.zeros(view.n)
    for t in words:
        ids, scores = view.combined(t)
        out[ids] += scores
    for p in parsed.prefixes:
        out += view.prefix_scores(p)
    return out


def _top(ids: np.ndarray, keys: np.ndarray, want: int) -> np.ndarray:
    """Positions (into ids) of the `want` largest keys, best first; equal keys in document order."""
    if want <= 0 or not len(ids):
        return np.zeros(0, dtype=np.int64)
    if len(ids) > want:
        cut = len(keys) - want
        threshold = np.partition(keys, cut)[cut]
        above = np.flatnonzero(keys > threshold)
        same = np.flatnonzero(keys == threshold)[: want - len(above)]
        chosen = np.concatenate([above, same])
    else:
        chosen = np.arange(len(ids))
    order = np.lexsort((ids[chosen], -keys[chosen]))
    return chosen[order]


def _candidates(view: _View, viewer: Viewer, parsed: ParsedQuery, pending: Pending | None = None) -> np.ndarray:
    """Documents the viewer may read that pass the filters and exclusions (before any word is matched)."""
    docs = view.visible(viewer, pending)
    for kind in parsed.kinds:
        docs = docs & view.value_docs("kind", kind)
    for tag in parsed.tags:
        docs = docs & view.value_docs("tags", tag)
    for status in parsed.statuses:
        docs = docs & view.value_docs("status", status)
    for low, high in parsed.years:
        docs = docs & view.year_docs(low, high)
    for terms in parsed.excluded:
        if docs.any():
            docs = docs & ~view.phrase_docs(terms, docs)
    return docs


PHRASE_EXACT = 20_000  # above this many candidates, phrase matches are checked in rank order within a time budget
PHRASE_BUDGET = 0.02  # seconds


def _matching(view: _View, parsed: ParsedQuery, candidates: np.ndarray, match_all: bool) -> np.ndarray:
    """Documents of `candidates` with the query's words (all of them, or any). Phrases: see `_phrases`."""
    sets = [view.word_docs(t) for t in parsed.words] + [view.prefix_docs(p) for p in parsed.prefixes]
    if match_all:
        sets += [view.word_docs(t) for p in parsed.phrases for t in p]
        docs = candidates
        for found in sets:
            docs = docs & found
        return docs
    docs = view.empty()
    for found in sets:
        docs |= found
    docs &= candidates
    for p in parsed.phrases:
        with_words = candidates.copy()
        for t in p:
            with_words &= view.word_docs(t)
        # Any-word mode is a fallback: a very common phrase counts as its words there.
        docs |= view.phrase_docs(p, with_words) if np.count_nonzero(with_words) <= PHRASE_EXACT else with_words
    return docs


@dataclass
class _Estimate:
    """A phrase query over too many candidates to check them all: exact top hits, estimated count and facets."""

    ranked: list[tuple[int, float]]
    total: int
    facets: dict[str, dict[str, int]]


def _phrases(view: _View, parsed: ParsedQuery, docs: np.ndarray, sort: str,
             want: int) -> tuple[np.ndarray, _Estimate | None]:
    """Keep the documents in which each phrase occurs. Checks positions; past PHRASE_EXACT candidates, checks them
    best first until the page is full and the time budget spent, and estimates the rest from the share found."""
    phrases = [p for p in parsed.phrases if len(p) > 1]
    if not phrases:
        return docs, None
    ids = np.flatnonzero(docs)
    if not len(ids):
        return docs, None
    if len(ids) <= PHRASE_EXACT:
        keep = np.ones(len(ids), dtype=bool)
        for p in phrases:
            keep[keep] = view.phrase_check(p, ids[keep])
        out = view.empty()
        out[ids[keep]] = True
        return out, None
    scores = _scores(view, parsed) if sort == "relevance" else None
    keys = scores[ids] if scores is not None else view.updated[ids].astype(np.float64)
    order = ids[np.lexsort((ids, -keys))]
    deadline = time.perf_counter() + PHRASE_BUDGET
    found_parts: list[np.ndarray] = []
    found_count, checked, step = 0, 0, 256
    while checked < len(order):
        chunk = order[checked: checked + step]
        sorted_chunk = np.sort(chunk)
        keep = np.ones(len(chunk), dtype=bool)
        for p in phrases:
            keep[keep] = view.phrase_check(p, sorted_chunk[keep])
        hits = set(sorted_chunk[keep].tolist())
        in_rank_order = np.array([d for d in chunk.tolist() if d in hits], dtype=np.int64)
        found_parts.append(in_rank_order)
        found_count += len(in_rank_order)
        checked += len(chunk)
        step = min(step * 2, 8192)
        if found_count >= want and time.perf_counter() > deadline:
            break
    found = np.concatenate(found_parts) if found_parts else np.zeros(0, np.int64)
    found_mask = view.empty()
    found_mask[found] = True
    if checked == len(order):
        return found_mask, None
    share = found_count / checked
    rest = view.empty()
    rest[order[checked:]] = True
    found_facets, rest_facets = _count_facets(view, found_mask), _count_facets(view, rest)
    facets = {}
    for name in FACET_NAMES:
        merged = Counter(found_facets[name])
        for value, n in rest_facets[name].items():
            merged[value] += round(n * share)
        merged.pop(None, None)
        merged.pop("", None)
        facets[name] = {k: v for k, v in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])) if v}
        if name == "decade":
            facets[name] = dict(sorted(facets[name].items()))
    top = found[:want].tolist()
    ranked = [(d, float(scores[d]) if scores is not None else float(view.updated[d])) for d in top]
    estimate = _Estimate(ranked=ranked, total=found_count + round((len(order) - checked) * share), facets=facets)
    return found_mask, estimate


def _count_facets(view: _View, docs: np.ndarray) -> dict[str, Counter]:
    """Counts of each facet value among `docs` (a mask)."""
    out: dict[str, Counter] = {}
    for name, source in (("kind", "kind"), ("status", "status")):
        values, codes = view.facet_values[source], view.codes[source][docs]
        counts = np.bincount(codes[codes >= 0], minlength=len(values))
        out[name] = Counter({values[i]: int(c) for i, c in enumerate(counts.tolist()) if c})
    for name, source in (("tag", "tags"), ("decade", "decade")):
        values, (pdocs, pcodes) = view.facet_values[source], view.pairs[source]
        counts = np.bincount(pcodes[docs[pdocs]], minlength=len(values)) if len(pdocs) else []
        out[name] = Counter({values[i]: int(c) for i, c in enumerate(list(counts)) if c})
    return out


def _facets(view: _View, docs: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts by kind, tag, status and decade of `docs`."""
    counts = _count_facets(view, docs)

    def ordered(counter: Counter, limit: int | None = None, by_key: bool = False) -> dict[str, int]:
        counter.pop("", None)
        items = [kv for kv in counter.items() if kv[1] > 0]
        items = sorted(items) if by_key else sorted(items, key=lambda kv: (-kv[1], kv[0]))
        return dict(items[:limit] if limit else items)

    return {"kind": ordered(counts["kind"]), "tag": ordered(counts["tag"], TOP_TAGS),
            "status": ordered(counts["status"]), "decade": ordered(counts["decade"], by_key=True)}


def _hit(view: _View, docnum: int, score: float, terms: frozenset[str], prefixes: Iterable[str] = ()) -> Hit:
    stored = view.stored(docnum)
    return Hit(
        slug=stored.get("slug", ""), title=stored.get("title", ""), kind=stored.get("kind", ""),
        snippet=snippet_for(stored, terms, prefixes), score=float(score or 0.0), status=stored.get("status") or "",
        ended_reason=stored.get("ended_reason") or "",
        tags=[t for t in (stored.get("tags") or "").split(",") if t], updated=stored.get("updated") or 0,
        period=stored.get("period") or "",
    )


def _ranked(view: _View, parsed: ParsedQuery, docs: np.ndarray, sort: str, want: int) -> list[tuple[int, float]]:
    ids = np.flatnonzero(docs)
    if not len(ids) or want <= 0:
        return []
    scores = _scores(view, parsed) if sort == "relevance" and parsed.has_terms else None
    if scores is None:
        top = ids[_top(ids, view.updated[ids], want)]
        return [(d, 0.0) for d in top.tolist()]
    keys = scores[ids]
    chosen = _top(ids, keys, want)
    return list(zip(ids[chosen].tolist(), keys[chosen].tolist()))


PendingReader = Callable[[], "Pending | None"]


def _run(index: SearchIndex, fn: Callable[[_View, Pending | None], Any], fallback: Any,
         pending: PendingReader | None = None) -> Any:
    """Run a read against the index; a missing or damaged index gives the fallback, never an exception.

    `pending()` is called once, before the view is taken (see `view.Pending` for why in that order); when it
    fails, nothing is shown rather than what may no longer be readable."""
    overlay = None
    if pending is not None:
        try:
            overlay = pending()
        except Exception:
            log.exception("could not read the search index queue; answering as unavailable")
            return fallback
    for attempt in (1, 2):
        with _quiet_damage() as state:
            try:
                with index.reading() as view:  # the index lock is held only to take the view
                    return fn(view, overlay)
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
           page: int = 1, per_page: int = 10, offset: int | None = None,
           pending: PendingReader | None = None) -> SearchResults:
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

    def run(view: _View, overlay: Pending | None) -> SearchResults:
        candidates = _candidates(view, viewer, parsed, overlay)
        want = start + per_page
        match_all, estimate = True, None
        if parsed.has_terms:
            docs = _matching(view, parsed, candidates, True)
            docs, estimate = _phrases(view, parsed, docs, sort, want)
            if not docs.any() and len(parsed.words) + len(parsed.phrases) + len(parsed.prefixes) > 1:
                docs = _matching(view, parsed, candidates, False)
                match_all = False
        else:
            docs = candidates
        results.matched_all = match_all
        if estimate is not None:
            results.total, results.facets, results.estimated = estimate.total, estimate.facets, True
            ranked = estimate.ranked[start:]
        else:
            results.total = int(np.count_nonzero(docs))
            results.facets = _facets(view, docs)
            ranked = _ranked(view, parsed, docs, sort, want)[start:]
        terms = parsed.highlight_terms()
        results.hits = [_hit(view, d, s, terms, parsed.prefixes) for d, s in ranked]
        if parsed.typed and (not results.total or not match_all or results.total < 3):
            results.suggestion = _did_you_mean(view, parsed, candidates)
        return results

    unavailable = SearchResults(query=parsed, sort=sort, page=page, per_page=per_page, offset=start,
                                unavailable=True)
    return _run(index, run, unavailable, pending)


def _did_you_mean(view: _View, parsed: ParsedQuery, candidates: np.ndarray) -> str | None:
    """The query with misspelt words replaced by words from the index that give results for this viewer.

    Candidates come from the index's own vocabulary (Whoosh's edit-distance automata over the stemmed title and body
    lexicons); each is shown as it is written in a page the viewer may read. (Separate unstemmed spelling fields
    would cost a third of the indexing time.)
    """
    if not candidates.any():
        return None
    replaced: dict[str, str] = {}
    for typed, term in zip(parsed.typed, parsed.words):
        if (view.word_docs(term) & candidates).any():
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
    if not _matching(view, corrected, candidates, True).any():
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
    found = set(find_all_matches(dfa, lambda text: view.first_at_least(fieldname, text)))
    found.discard(term)
    return found


def _correction(view: _View, word: str, term: str, candidates: np.ndarray) -> str | None:
    """The closest word of the index that this viewer would find results for.

    Two vocabularies: title words as written (which catches a misspelt ending, where the stem goes wrong too), and
    the stems of bodies and titles (shown as a page writes them).
    """
    for maxdist in (1, 2):
        # Rank by edit distance, then by how common the word is (cheap: no postings read), and only then check
        # the best few against what this viewer may read.
        ranked: list[tuple[int, int, str, bool, str]] = []
        for cand in _terms_within(view, "title_words", word, maxdist):
            cterm = analyse_word(cand)
            if cterm:
                ranked.append((edit_distance(word, cand), -view.doc_frequency("title_words", cand), cand, True,
                               cterm))
        for fieldname in ("body", "title"):
            for cand in _terms_within(view, fieldname, term, maxdist):
                ranked.append((edit_distance(term, cand), -view.doc_frequency(fieldname, cand), cand, False, cand))
        tried: set[str] = set()
        for _, _, cand, written, cterm in sorted(ranked):
            if cterm in tried:
                continue
            tried.add(cterm)
            if len(tried) > 6:
                break
            docs = view.word_docs(cterm) & candidates
            if not docs.any():
                continue
            surface = cand if written else _surface_word(view, cand, word, docs)
            if surface and surface != word:
                return surface
    return None


def _surface_word(view: _View, stem_: str, typed: str, docs: np.ndarray) -> str | None:
    """How an index term is written in the pages: the written form closest to what was typed."""
    forms: set[str] = set()
    for d in np.flatnonzero(docs)[:5].tolist():
        stored = view.stored(d)
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


def suggest(index: SearchIndex, viewer: Viewer, prefix: str | None, limit: int = 8,
            pending: PendingReader | None = None) -> list[dict[str, str]]:
    """Titles for search as you type: pages whose title words start with what was typed, best first."""
    words = [w.lower() for w in WORD_RE.findall((prefix or "")[:200])][:8]
    if not words or not viewer.may_read_site:
        return []
    limit = max(1, min(limit, 20))

    def run(view: _View, overlay: Pending | None) -> list[dict[str, str]]:
        docs = view.visible(viewer, overlay)
        for w in words[:-1]:
            docs = docs & view.term_docs("title_words", w)
        docs = docs & view.prefix_docs(words[-1], "title_words")
        ids = np.flatnonzero(docs)
        if not len(ids):
            return []
        typed = " ".join(words)
        scored = []
        for d in ids[_top(ids, view.updated[ids], 300)].tolist():
            card = view.card(d)
            low = card["title"].lower()
            rank = (0 if low.startswith(typed) else 1 if (" " + typed) in (" " + low) else 2, len(low), low)
            scored.append((rank, card))
        scored.sort(key=lambda x: x[0])
        return [card for _, card in scored[:limit]]

    return _run(index, run, [], pending)


def tried_before(index: SearchIndex, viewer: Viewer, text: str | None, exclude: str | None = None,
                 limit: int = 5, pending: PendingReader | None = None) -> TriedBefore:
    """Earlier initiatives (any status, ended ones first) and lessons on the topic of `text` (a title or query)."""
    parsed = parse_query(text)
    terms = list(dict.fromkeys(chain(parsed.words, chain.from_iterable(parsed.phrases))))[:MAX_TERMS]
    if not terms or not viewer.may_read_site:
        return TriedBefore()

    def run(view: _View, overlay: Pending | None) -> TriedBefore:
        pool = view.visible(viewer, overlay) & (view.value_docs("kind", "initiative") | view.value_docs("kind", "lesson"))
        if not pool.any():
            return TriedBefore()
        # The same topic: most of the words found in initiatives and lessons (a word none of them has, like
        # "district-wide", does not count), and at least one of them in the title, tags or fields.
        present = [docs for docs in (view.word_docs(t) & pool for t in terms) if docs.any()]
        if not present:
            return TriedBefore()
        need = math.ceil(len(present) / 2) if len(present) > 2 else len(present)
        counts = np.zeros(view.n, dtype=np.int32)
        for docs in present:
            counts += docs
        strong = view.empty()
        for t in terms:
            for f in ("title", "tagtext", "fields"):
                strong |= view.term_docs(f, t)
        docs = (counts >= need) & strong
        ids = np.flatnonzero(docs)
        if not len(ids):
            return TriedBefore()
        scores = _scores(view, ParsedQuery(words=terms))
        keys = scores[ids]
        hterms = frozenset(terms)
        hits = [_hit(view, d, s, hterms) for d, s in
                zip(ids[_top(ids, keys, limit * 4)].tolist(), keys[_top(ids, keys, limit * 4)].tolist())]
        if not hits:
            return TriedBefore()
        top = hits[0].score
        hits = [h for h in hits if h.slug != exclude and h.score >= top * 0.25]
        initiatives = [h for h in hits if h.kind == "initiative"]
        initiatives.sort(key=lambda h: (h.status not in ENDING_STATUSES, -h.score))
        lessons = [h for h in hits if h.kind == "lesson"]
        return TriedBefore(initiatives[:limit], lessons[:limit])

    return _run(index, run, TriedBefore(), pending)
