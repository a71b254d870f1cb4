"""The benchmark behind scripts/bench: a synthetic corpus, imported, then timed for saving, viewing and searching.

Numbers are medians over several runs and ratios measured in the same run, because these machines are noisy.
Nothing here is a test: it reports, it does not assert. Run from the top of the repository:
`python -m benchmarks.bench --pages 1000` (which is what scripts/bench does).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, path: str = "/healthz", timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server on port {port} did not start")


def _get(port: int, path: str, headers: dict) -> tuple[float, bool]:
    """One GET on a new connection: (seconds, whether it answered 200)."""
    t0 = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        conn.close()
        ok = r.status == 200
    except OSError:
        ok = False
    return time.perf_counter() - t0, ok


def _drive(port: int, next_path, headers: dict, concurrency: int) -> dict:
    """GET whatever next_path(worker_rng) gives, from `concurrency` threads, until it gives None."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(worker: int) -> None:
        rng = random.Random(worker)
        mine, failed = [], 0
        while (path := next_path(rng)) is not None:
            seconds, ok = _get(port, path, headers)
            mine.append(seconds)
            failed += not ok
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=run, args=(i,)) for i in range(concurrency)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000, "errors": errors[0], "requests": len(latencies)}


def _load(port: int, paths: list[str], headers: dict, seconds: float, concurrency: int) -> dict:
    """Requests per second and latency at a fixed concurrency (threads, a new connection per request), random
    paths for `seconds`."""
    stop = time.time() + seconds
    return _drive(port, lambda rng: rng.choice(paths) if time.time() < stop else None, headers, concurrency)


def _load_each(port: int, paths: list[str], headers: dict, concurrency: int) -> dict:
    """Request every path once, in order, spread over `concurrency` threads."""
    todo, lock = iter(paths), threading.Lock()

    def next_path(_rng):
        with lock:
            return next(todo, None)

    return _drive(port, next_path, headers, concurrency)


def worker_peak_rss_mb(master_pid: int) -> list[float]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master_pid)], capture_output=True, text=True).stdout
    peaks = []
    for pid in out.split():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


HELLO_APP = '''
from flask import Flask
app = Flask(__name__)
@app.route("/hello")
def hello():
    return "hello"
'''


@contextmanager
def _served(data_dir: str):
    """`kb serve` with two workers on `data_dir`: yields (port, master process), stops it afterwards."""
    env = dict(os.environ, KB_DATA_DIR=data_dir)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "kb"), "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, "/login")
        yield port, proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench_serving(data_dir: str, slugs: list[str], seconds: float, runs: int,
                  search_paths: list[str] | None = None) -> dict:
    """Page views under `kb serve` (2 workers) against a bare Flask endpoint served the same way, same run; then,
    given search_paths, searches over HTTP."""
    gunicorn_bin = str(Path(sys.executable).parent / "gunicorn")
    hello_dir = tempfile.mkdtemp()
    Path(hello_dir, "hello_app.py").write_text(HELLO_APP)
    hello_port = free_port()
    hello_proc = subprocess.Popen([gunicorn_bin, "--workers", "2", "--bind", f"127.0.0.1:{hello_port}",
                                   "hello_app:app"], cwd=hello_dir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        with _served(data_dir) as (kb_port, kb_proc):
            wait_for(hello_port, "/hello")
            headers = {"Cookie": _login_cookie(kb_port)}
            paths = [f"/wiki/{s}" for s in slugs]
            # First views: every page once, in order, as after an import or any change (each rendered and stored).
            first = _load_each(kb_port, paths, headers, 8)
            view_runs, hello_runs = [], []
            for _ in range(runs):
                view_runs.append(_load(kb_port, paths, headers, seconds, 8))
                hello_runs.append(_load(hello_port, ["/hello"], {}, seconds, 8))
            view_rps = statistics.median(r["rps"] for r in view_runs)
            hello_rps = statistics.median(r["rps"] for r in hello_runs)
            result = {
                "first_view_rps": round(first["rps"], 1),
                "first_view_p50_ms": round(first["p50_ms"], 2),
                "first_view_p95_ms": round(first["p95_ms"], 2),
                "page_view_rps": round(view_rps, 1),
                "page_view_p50_ms": round(statistics.median(r["p50_ms"] for r in view_runs), 2),
                "page_view_p95_ms": round(statistics.median(r["p95_ms"] for r in view_runs), 2),
                "page_view_errors": sum(r["errors"] for r in view_runs),
                "hello_rps": round(hello_rps, 1),
                "view_to_hello_ratio": round(view_rps / hello_rps, 3),
            }
            if search_paths:
                result["search_http"] = search_over_http(kb_port, headers, search_paths, seconds)
            result["worker_peak_rss_mb"] = [round(x, 1) for x in worker_peak_rss_mb(kb_proc.pid)]
            return result
    finally:
        _stop(hello_proc)
        shutil.rmtree(hello_dir, ignore_errors=True)


def search_paths(db, n: int = 200) -> list[str]:
    """The in-process benchmark's query mix as /api/search requests (top 10 with snippets, facets, suggestion)."""
    from urllib.parse import urlencode

    from benchmarks.bench_search import sample_queries

    return [f"/api/search?{urlencode(q)}" for q in sample_queries(db, n)]


def search_over_http(port: int, headers: dict, paths: list[str], seconds: float) -> dict:
    """Search latency over HTTP one query at a time (as one person searching), then throughput at concurrency 8."""
    for path in paths[:10]:
        _get(port, path, headers)  # each worker opens its searcher
    timings = [_get(port, path, headers) for path in paths]
    latencies = [t for t, _ in timings]
    loaded = _load(port, paths, headers, seconds, 8)
    return {"queries": len(paths), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p95_ms": round(percentile(latencies, 95) * 1000, 2), "errors": sum(not ok for _, ok in timings),
            "rps_at_concurrency_8": round(loaded["rps"], 1), "p95_ms_at_concurrency_8": round(loaded["p95_ms"], 2),
            "errors_at_concurrency_8": loaded["errors"]}


def _login_cookie(port: int) -> str:
    """Sign in as the bench account over HTTP and return the session cookie."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/login")
    r = conn.getresponse()
    page = r.read().decode()
    cookie = r.getheader("Set-Cookie").split(";")[0]
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    body = f"csrf_token={token}&name=bench&password=bench-password-123"
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/login", body=body, headers={"Cookie": cookie,
                                                        "Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    r.read()
    if r.status != 302:
        raise RuntimeError(f"bench sign-in failed: {r.status}")
    cookie = r.getheader("Set-Cookie").split(";")[0]
    # Like a browser, follow the redirect and keep the cookie the first page sets (it adds the form token).
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", r.getheader("Location") or "/", headers={"Cookie": cookie})
    r = conn.getresponse()
    r.read()
    updated = r.getheader("Set-Cookie")
    return updated.split(";")[0] if updated else cookie


def bench_saves(app, slugs: list[str], n: int) -> dict:
    """Saves through the API as a server makes them (revision, links, index queue; the index worker updates the
    search index right after the response), and how long until each saved change is findable by search."""
    from sqlalchemy import select

    from kb import accounts, search
    from kb.access import Viewer
    from kb.models import User

    app.config["SEARCH_WORKER"] = True  # as under kb serve
    db = app.extensions["kb_db"]
    with db.writing() as s:
        user = s.scalar(select(User).where(User.name == "bench"))
        token = accounts.create_token(s, user, "bench")
        viewer = Viewer(user.id, user.name, user.role)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    backend = search.backend_for(app)
    rng = random.Random(3)
    times, findable = [], []
    for i in range(n):
        slug = rng.choice(slugs)
        current = client.get(f"/api/pages/{slug}", headers=headers).get_json()
        marker = f"zqmarker{i}x"
        body = current["body"] + f"\n\nEdited {i} ({marker}): see [[{rng.choice(slugs)}]]."
        t0 = time.perf_counter()
        r = client.put(f"/api/pages/{slug}", json={"body": body, "base_revision": current["revision"]},
                       headers=headers)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.get_data(as_text=True)
        while backend.query(viewer, marker).total == 0 and time.perf_counter() - t0 < 10:
            time.sleep(0.01)
        findable.append(time.perf_counter() - t0)
    app.config["SEARCH_WORKER"] = False
    worker = getattr(backend, "worker", None)  # the Whoosh backend's index worker
    if worker is not None:
        worker.stop()
    return {"save_p50_ms": round(percentile(times, 50) * 1000, 1), "save_p95_ms": round(percentile(times, 95) * 1000, 1),
            "findable_p50_ms": round(percentile(findable, 50) * 1000, 1),
            "findable_p95_ms": round(percentile(findable, 95) * 1000, 1)}


def run(pages: int, runs: int, seconds: float, keep: str | None) -> dict:
    from benchmarks import bench_search, corpus
    from kb import create_app, instance, transfer
    from kb.cli import system_viewer

    work = Path(keep or tempfile.mkdtemp(prefix="kb-bench-"))
    corpus_dir, data_dir = work / "corpus", work / "data"
    shutil.rmtree(corpus_dir, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    results: dict = {"pages": pages, "cpus": os.cpu_count()}
    t0 = time.time()
    slugs = corpus.write_tree(corpus_dir, pages)
    results["corpus_generation_s"] = round(time.time() - t0, 1)

    app = create_app({"DATA_DIR": str(data_dir), "SEARCH_WORKER": False})
    instance.prepare(app)
    db = app.extensions["kb_db"]
    with db.writing() as s:
        from kb import accounts

        accounts.create_user(s, "bench", "admin", "bench-password-123")
    t0 = time.time()
    with db.writing() as s:
        transfer.import_tree(s, system_viewer(s), corpus_dir)
    elapsed = time.time() - t0
    results["import_s"] = round(elapsed, 1)
    results["import_pages_per_s"] = round(pages / elapsed, 1)

    results["search"] = bench_search.bench_search(db, str(data_dir), n_queries=200)

    results["save"] = bench_saves(app, slugs, 60)
    queries = search_paths(db)
    db.dispose()
    results["serving"] = bench_serving(str(data_dir), slugs, seconds, runs, queries)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return results


def run_search_only(pages: int, keep: str | None) -> dict:
    """The corpus inserted straight into the pages table (no import, saves or page views), then search figures
    in-process: minutes, not hours, at 100,000 pages. Kept with --keep, `--data KEEP/data` measures it again."""
    from benchmarks import bench_search, corpus
    from kb import create_app, instance

    work = Path(keep or tempfile.mkdtemp(prefix="kb-bench-"))
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    results: dict = {"pages": pages, "cpus": os.cpu_count()}
    app = create_app({"DATA_DIR": str(data_dir), "SEARCH_WORKER": False})
    instance.prepare_database(app)
    db = app.extensions["kb_db"]
    t0 = time.time()
    corpus.insert_pages(db, pages)
    results["corpus_insert_s"] = round(time.time() - t0, 1)
    results["search"] = bench_search.bench_search(db, str(data_dir), n_queries=200)
    db.dispose()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return results


def run_existing(data_dir: str, seconds: float) -> dict:
    """Search figures for an instance that already exists (say, a kept 100,000-page corpus): in-process without a
    rebuild, and over HTTP under `kb serve`, with worker memory. Adds a reader account `bench` if there is none."""
    from sqlalchemy import func, select

    from benchmarks import bench_search
    from kb import accounts, create_app, instance
    from kb.models import Page, User

    app = create_app({"DATA_DIR": data_dir, "SEARCH_WORKER": False})
    instance.prepare(app)
    db = app.extensions["kb_db"]
    with db.writing() as s:
        if s.scalar(select(User).where(User.name == "bench")) is None:
            accounts.create_user(s, "bench", "reader", "bench-password-123")
    with db.reading() as s:
        results: dict = {"pages": s.scalar(select(func.count()).select_from(Page).where(Page.deleted_at.is_(None))),
                         "cpus": os.cpu_count()}
    results["search"] = bench_search.bench_search(db, data_dir, n_queries=200, rebuild=False)
    queries = search_paths(db)
    db.dispose()
    with _served(data_dir) as (port, proc):
        results["search_http"] = search_over_http(port, {"Cookie": _login_cookie(port)}, queries, seconds)
        results["worker_peak_rss_mb"] = [round(x, 1) for x in worker_peak_rss_mb(proc.pid)]
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--pages", type=int, default=1000, help="synthetic corpus size (1000, 10000, 100000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each serving measurement (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each serving run")
    parser.add_argument("--keep", help="work directory to keep (corpus and data)")
    parser.add_argument("--search-only", action="store_true", help="insert the corpus straight into the database "
                        "(no import, saves or page views) and measure search in-process only")
    parser.add_argument("--data", help="measure search on this existing data directory instead (no corpus, no "
                                           "import, no page views)")
    args = parser.parse_args(argv)
    if args.data:
        results = run_existing(args.data, args.seconds)
    elif args.search_only:
        results = run_search_only(args.pages, args.keep)
    else:
        results = run(args.pages, args.runs, args.seconds, args.keep)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
