"""Search benchmark: latency of in-process queries (with snippets for the top 10), rebuild rate, index size.

`scripts/bench` calls `bench_search(db, data_dir, n_queries)` after generating its synthetic corpus;
`synthetic_pages` / `add_synthetic_pages` make such a corpus when none is given (used by `python -m kb.bench_search`).
"""
from __future__ import annotations

import os
import bisect
import itertools
import random
import resource
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from typing import Any, Iterator

from sqlalchemy import insert, select

from kb.search import whoosh as kb_search
from kb.access import Viewer
from kb.models import Page

WORDS = """
assessment writing rubric teacher teachers principal principals superintendent district school schools literacy
mathematics science coach coaching cadre leadership leader leaders partnership community practice routine
meeting meetings budget funding grant evaluation evidence pilot initiative reform curriculum standards benchmark
samples scoring release time professional development onboarding onboard induction mentor mentoring network
central office data indicators goals strategy improvement achievement students student learners english
immersion inquiry lesson lessons review after action handover successor transition turnover tenure board
policy mandate compliance calendar october spring summer institute workshop cohort grade level team teams
family families engagement equity attendance discipline climate survey interview documentation research
university college career readiness principal-supervisor instructional rounds walkthrough observation feedback
""".split()
FILLER = """
the a of and to in for with on by from as at that this which was were is are be been it its their they
into over after before during about through under between among while when where who what how why also
""".split()
TAGS = [f"{w}" for w in WORDS[:60]] + ["writing-assessment", "teacher-leadership", "central-office",
                                      "math-coaching", "new-superintendent", "community-of-practice"]
KINDS = ["page", "initiative", "routine", "community", "lesson", "leader", "partnership", "handover"]
STATUSES = ["proposed", "piloting", "active", "sustained", "ended", "replaced"]
REASONS = ["funding", "leader-change", "evaluated-ineffective", "assumed-failed", "mandate", "capacity", "other"]


SYLLABLES = "ka lo mi ne ra so tu vi be da fe gu ho ji ku la ma no pe qui ri sa te uv wo xa yo ze".split()


def _vocabulary(size: int = 3000, seed: int = 11) -> list[str]:
    """District words mixed with made-up ones (names, places, rarer words), in the order of how common they are."""
    rng = random.Random(seed)
    made_up: set[str] = set()
    while len(made_up) < size - len(WORDS):
        made_up.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    vocab = sorted(made_up)
    rng.shuffle(vocab)
    for i, w in enumerate(WORDS):  # district words spread over ranks 3..600: some very common, most not
        vocab.insert(min(len(vocab), 3 + i * 3), w)
    return vocab


VOCAB = _vocabulary()
_CUM = list(itertools.accumulate(1.0 / r for r in range(1, len(VOCAB) + 1)))


def _word(rng: random.Random) -> str:
    if rng.random() < 0.40:
        return rng.choice(FILLER)
    return VOCAB[bisect.bisect(_CUM, rng.random() * _CUM[-1])]  # Zipf: rank r has weight 1/r


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(_word(rng) for _ in range(n)).capitalize() + "."


def synthetic_pages(n: int, seed: int = 4, start_id: int = 1) -> Iterator[dict[str, Any]]:
    """Rows for `pages`: realistic-looking district pages with fields, tags, links and visibility."""
    rng = random.Random(seed)
    base = datetime(2024, 1, 1)
    for i in range(start_id, start_id + n):
        kind = rng.choice(KINDS)
        title = " ".join(_word(rng) if rng.random() < 0.5 else rng.choice(WORDS)
                         for _ in range(rng.randint(2, 6))).title() + f" {i}"
        slug = title.lower().replace(" ", "-")
        fields: dict[str, Any] = {}
        status = None
        if kind == "initiative":
            y = rng.randint(1985, 2023)
            status = rng.choice(STATUSES)
            fields = {"status": status, "started": str(y), "problem": _sentence(rng, 14),
                      "evidence": _sentence(rng, 12)}
            if status in ("ended", "replaced"):
                fields["ended"] = str(min(2024, y + rng.randint(1, 8)))
                fields["ended_reason"] = rng.choice(REASONS)
        elif kind == "lesson":
            status = rng.choice(["observation", "insight", "lesson", "learned"])
            fields = {"occurred": str(rng.randint(1990, 2023)), "lesson": _sentence(rng, 12), "maturity": status}
        elif kind == "routine":
            fields = {"purpose": _sentence(rng, 10), "cadence": rng.choice(["weekly", "monthly", "each October"])}
        paragraphs = []
        for p in range(rng.randint(3, 8)):
            if p and rng.random() < 0.3:
                paragraphs.append("## " + " ".join(rng.choice(WORDS) for _ in range(3)).title())
            text = " ".join(_sentence(rng, rng.randint(8, 22)) for _ in range(rng.randint(2, 5)))
            if rng.random() < 0.4:
                text += f" See [[{rng.choice(WORDS)}-{rng.choice(WORDS)}]] and **{rng.choice(WORDS)}**."
            paragraphs.append(text)
        r = rng.random()
        visibility = "public" if r < 0.8 else "staff" if r < 0.95 else "restricted"
        yield {
            "id": i, "slug": slug, "title": title, "kind": kind, "status": status, "fields": fields,
            "tags": sorted(set(rng.sample(TAGS, rng.randint(0, 4)))), "visibility": visibility,
            "readers": ["reader1"] if visibility == "restricted" and rng.random() < 0.5 else [],
            "sources": [], "body": "\n\n".join(paragraphs), "revision": 1,
            "updated_at": base - timedelta(minutes=i * 7), "created_at": base - timedelta(days=400),
        }


def add_synthetic_pages(db, n: int, seed: int = 4) -> None:
    with db.writing() as session:
        start = (session.scalar(select(Page.id).order_by(Page.id.desc()).limit(1)) or 0) + 1
        batch: list[dict] = []
        for row in synthetic_pages(n, seed, start):
            batch.append(row)
            if len(batch) >= 1000:
                session.execute(insert(Page), batch)
                batch = []
        if batch:
            session.execute(insert(Page), batch)


def sample_queries(db, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A mix of what people type: one or two words, a phrase, a filter, an exclusion, a misspelling, a prefix."""
    rng = random.Random(seed)
    with db.reading() as session:
        titles = list(session.scalars(select(Page.title).limit(5000)))
    words = [w.lower() for t in titles for w in t.split() if w.isalpha() and len(w) > 3] or ["district"]
    out: list[dict[str, Any]] = []
    for i in range(n):
        a, b = rng.choice(words), rng.choice(words)
        shape = i % 8
        if shape == 0:
            out.append({"q": a})
        elif shape == 1:
            out.append({"q": f"{a} {b}"})
        elif shape == 2:
            out.append({"q": f'"{a} {b}"'})
        elif shape == 3:
            out.append({"q": f"{a} kind:initiative status:ended"})
        elif shape == 4:
            out.append({"q": f"{a} -{b}", "sort": "updated"})
        elif shape == 5:
            out.append({"q": a[:-1] + "x" + a[-1]})  # a misspelling: "did you mean"
        elif shape == 6:
            out.append({"q": f"{a[:4]}*", "year": "2000-2009"})
        else:
            out.append({"q": f"{a} {b} tag:{rng.choice(TAGS)}"})
    return out


def _percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return 0.0
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def bench_search(db, data_dir: str, n_queries: int = 200, rebuild: bool = True,
                 viewer: Viewer | None = None) -> dict[str, Any]:
    """Rebuild the index from `db` into `data_dir/index`, then time `n_queries` searches (top 10, snippets).

    Returns milliseconds for p50/p95/max (in-process, wall clock; cpu_* in process time), suggest p95, rebuild
    pages/s and seconds, index bytes. The queries are a fixed mix (see `sample_queries`), first runs included.
    """
    result: dict[str, Any] = {}
    if rebuild:
        report = kb_search.rebuild(db, data_dir)
        result.update(pages=report.pages, rebuild_seconds=round(report.seconds, 2),
                      rebuild_pages_per_second=round(report.pages_per_second, 1))
    index = kb_search.open_index(data_dir)
    viewer = viewer or Viewer(user_id=1, name="bench", role="reader")
    queries = sample_queries(db, n_queries)
    kb_search.search(index, viewer, "district")  # open the searcher and fill the per-segment caches
    times: list[float] = []
    cpu: list[float] = []  # process time: what a query costs even when other programs share the machine
    for q in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        kb_search.search(index, viewer, q["q"], sort=q.get("sort", "relevance"), year=q.get("year"))
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    suggest_times: list[float] = []
    for q in queries[: max(1, n_queries // 4)]:
        t0 = time.perf_counter()
        kb_search.suggest(index, viewer, q["q"][:3])
        suggest_times.append((time.perf_counter() - t0) * 1000)
    build = index.current_build()
    result.update(
        queries=len(times), p50_ms=round(statistics.median(times), 2), p95_ms=round(_percentile(times, 0.95), 2),
        max_ms=round(max(times), 2), cpu_p50_ms=round(statistics.median(cpu), 2),
        cpu_p95_ms=round(_percentile(cpu, 0.95), 2), suggest_p95_ms=round(_percentile(suggest_times, 0.95), 2),
        index_bytes=_dir_size(index.build_dir(build)) if build else 0,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # this process, so far
    )
    index.close()
    return result


def main() -> None:  # python -m kb.bench_search [PAGES] [QUERIES]
    import json
    import sys

    from kb.db import Database

    pages = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/kb.sqlite")
        db.create_all()
        add_synthetic_pages(db, pages)
        print(json.dumps(bench_search(db, tmp, n), indent=2))
        db.dispose()


if __name__ == "__main__":
    main()
