"""Search benchmark: latency of in-process queries (with snippets for the top 10), rebuild rate, index size.

`scripts/bench` calls `bench_search(db, data_dir, n_queries)` on its synthetic corpus (benchmarks/corpus.py).
"""
from __future__ import annotations

import os
import random
import resource
import statistics
import time
from typing import Any

from sqlalchemy import select

from benchmarks.corpus import TAGS
from kb.search import whoosh as kb_search  # measures the embedded engine itself
from kb.access import Viewer
from kb.models import Page


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
