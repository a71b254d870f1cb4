"""Faults and hostile input: YAML bombs, symlinks out of an import folder, damaged index files, killed commands.

The quick tests run in seconds; the kill -9 ones are marked `slow` (they run by default; skip them locally with
`-m "not slow"`)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kb.models import Page

LAUGHS = "\n".join(["lol0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]"] +
                   [f"lol{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
                    f"*a{i - 1}, *a{i - 1}]" for i in range(1, 10)])


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def page_count(app) -> int:
    with app.extensions["kb_db"].reading() as s:
        return s.scalar(select(func.count(Page.id)))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "corpus"
    write(root, "a.md", "---\ntitle: Alpha\n---\nFirst page.\n")
    return root


# --- YAML: no anchors or aliases, capped sizes, refused in milliseconds

def test_a_billion_laughs_front_matter_is_refused_in_milliseconds_naming_file_and_line(app, runner, folder):
    write(folder, "bomb.md", "---\ntitle: Laughs\nfields:\n" +
          "\n".join("  " + line for line in LAUGHS.splitlines()) + "\n---\nbody\n")
    started = time.monotonic()
    result = runner.invoke(args=["import", str(folder)])
    elapsed = time.monotonic() - started
    assert result.exit_code != 0 and "nothing was written" in result.output
    assert "corpus/bomb.md:4" in result.output and "anchors and aliases are not allowed" in result.output
    assert elapsed < 2.0
    assert page_count(app) == 0


def test_a_billion_laughs_tour_file_is_refused_in_milliseconds(app, runner, folder):
    write(folder, "tours/bomb.yaml", "title: Laughs\nslug: laughs\n" + LAUGHS + "\nstops:\n  - page: alpha\n")
    started = time.monotonic()
    result = runner.invoke(args=["import", str(folder)])
    assert time.monotonic() - started < 2.0
    assert result.exit_code != 0 and "tours/bomb.yaml:3" in result.output
    assert "anchors and aliases are not allowed" in result.output


def test_a_single_alias_is_refused_too(app, runner, folder):
    write(folder, "b.md", "---\ntitle: &t Beta\ntags: [*t]\n---\n")
    result = runner.invoke(args=["import", str(folder)])
    assert result.exit_code != 0 and "b.md:2" in result.output and "anchor &t" in result.output


def test_oversized_front_matter_and_tour_files_are_refused(app, runner, folder):
    from kb.yamlfile import MAX_YAML_BYTES

    filler = "\n".join(f"# {'x' * 70}" for _ in range(MAX_YAML_BYTES // 70 + 10))
    write(folder, "big.md", f"---\ntitle: Big\n{filler}\n---\nbody\n")
    result = runner.invoke(args=["import", str(folder)])
    assert result.exit_code != 0 and "big.md:2" in result.output and "too large" in result.output
    (folder / "big.md").unlink()
    write(folder, "tours/big.yaml", f"title: Big\n{filler}\nstops: []\n")
    result = runner.invoke(args=["import", str(folder)])
    assert result.exit_code != 0 and "tours/big.yaml:1" in result.output and "too large" in result.output
    assert page_count(app) == 0


# --- Symlinks: an import never reads outside its folder

def test_a_symlink_pointing_outside_the_import_folder_is_refused_by_name(app, runner, folder, tmp_path):
    secret = write(tmp_path / "elsewhere", "secret.md", "---\ntitle: Secret\n---\nquokkaplume\n")
    (folder / "linked.md").symlink_to(secret)
    result = runner.invoke(args=["import", str(folder)])
    assert result.exit_code != 0 and "nothing was written" in result.output
    assert "corpus/linked.md" in result.output and "outside the import folder" in result.output
    assert page_count(app) == 0


def test_a_symlinked_folder_pointing_outside_is_refused_and_one_inside_is_followed(app, runner, folder, tmp_path):
    outside = tmp_path / "elsewhere"
    write(outside, "tours/t.yaml", "title: T\nstops:\n  - page: alpha\n")
    (folder / "tours").symlink_to(outside / "tours", target_is_directory=True)
    result = runner.invoke(args=["import", str(folder)])
    assert result.exit_code != 0 and "corpus/tours" in result.output and "outside the import folder" in result.output
    (folder / "tours").unlink()
    # A link that stays inside the folder is harmless: it is read like what it points to, each file once.
    write(folder, "inner/b.md", "---\ntitle: Beta\n---\n")
    (folder / "also-b.md").symlink_to(folder / "inner" / "b.md")
    (folder / "pages").symlink_to(folder / "inner", target_is_directory=True)
    (folder / "inner" / "loop").symlink_to(folder, target_is_directory=True)
    result = runner.invoke(args=["import", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Imported 2 new pages" in result.output


# --- The background merge and another process's swap

def test_a_merge_that_meets_another_processes_swap_logs_one_info_line_not_an_error(app, make_page, monkeypatch,
                                                                                    caplog):
    import logging
    import os
    import shutil
    import uuid

    from whoosh.index import FileIndex

    from kb.search.whoosh import maintenance

    for i in range(maintenance.MERGE_AT + 2):
        make_page(f"Merge page {i}", body=f"word{i}")
    index = app.extensions["kb_search"].index
    root = index.root
    original = FileIndex.writer

    def writer(self, **kwargs):
        w = original(self, **kwargs)
        commit = w.commit

        def swapped_then_commit(**kw):
            # Another process rebuilt the index meanwhile: a new build is swapped in and this one removed.
            old = index.current_build()
            new = f"b-{uuid.uuid4().hex}"
            shutil.copytree(index.build_dir(old), index.build_dir(new))
            maintenance._swap(root, new)
            shutil.rmtree(index.build_dir(old))
            return commit(**kw)

        w.commit = swapped_then_commit
        return w

    monkeypatch.setattr(FileIndex, "writer", writer)
    caplog.set_level(logging.INFO, logger="kb")
    assert maintenance.merge_segments(index) is False
    monkeypatch.setattr(FileIndex, "writer", original)
    swaps = [r for r in caplog.records if r.name.startswith("kb.search")]
    assert [r.levelname for r in swaps] == ["INFO"], [(r.levelname, r.getMessage()) for r in swaps]
    assert "swapped" in swaps[0].getMessage() and not swaps[0].exc_info
    assert os.path.isdir(index.build_dir(index.current_build()))
    # The next merge works on the new build.
    assert maintenance.merge_segments(index) is True


# --- kb check reports damage; only --repair (and start-up, reindex) repairs it

def _build_dir(app) -> Path:
    index = app.extensions["kb_search"].index
    return Path(index.build_dir(index.current_build()))


def _truncate(path: Path, size: int | None = None) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2 if size is None else size)


@pytest.mark.parametrize("damage", ["column file", "segment file", "deleted column file"])
def test_kb_check_reports_damage_with_counts_and_only_repair_repairs_it(app, make_page, damage):
    from kb import create_app

    for i in range(3):
        make_page(f"Checked page {i}", body=f"checkword{i}")
    app.extensions["kb_search"].close()
    folder = _build_dir(app)
    if damage == "segment file":
        target = sorted(folder.glob("*.seg"))[0]
        _truncate(target)
        expected = f"damaged: {target.name}"
    else:
        target = sorted(folder.glob("kbcols-*.npc"))[0]
        if damage == "deleted column file":
            target.unlink()
            expected = f"damaged: {target.name}: missing"
        else:
            _truncate(target)
            expected = f"damaged: {target.name}"
    before = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
    # A new app (what every kb command builds) and the commands that do not repair leave the damage alone.
    other = create_app(dict(app.config))
    try:
        runner = other.test_cli_runner()
        assert runner.invoke(args=["export", str(folder.parent.parent / "export")]).exit_code == 0
        result = runner.invoke(args=["check"])
        assert result.exit_code == 1, result.output
        assert "search index damaged: 1 file(s) missing or damaged (3 segments checked)" in result.output
        assert expected in result.output
        if damage == "segment file":
            assert "1 missing" in result.output and "3 pages in the database, 2 indexed" in result.output
        assert sorted((p.name, p.stat().st_size) for p in folder.iterdir()) == before
        assert runner.invoke(args=["check"]).exit_code == 1  # still there: check only reads
        result = runner.invoke(args=["check", "--repair"])
        assert result.exit_code == 0 and "(rebuilt from the database)" in result.output, result.output
        result = runner.invoke(args=["check"])
        assert result.exit_code == 0 and "matches the database (3 pages, 0 queued)" in result.output
    finally:
        other.extensions["kb_search"].close()
        other.extensions["kb_db"].dispose()


# --- kill -9 of a command takes its worker processes with it

def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has died
    except OSError:
        return False


def _kill_when_children_work(args: list[str], env: dict, timeout: float = 60.0) -> set[int]:
    """Start `kb ARGS`, wait until it has two worker processes, kill it with SIGKILL; returns the workers."""
    proc = subprocess.Popen([sys.executable, "-m", "kb", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        workers: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            if len(workers) >= 2:
                break
            time.sleep(0.02)
        assert len(workers) >= 2, f"no worker processes seen (exit {proc.poll()})"
        time.sleep(0.3)  # mid-way through their work
        workers |= _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return workers


def _corpus(root: Path, n: int) -> Path:
    para = "Teachers scored writing samples together and [[Another page]] kept the rubric. " * 12
    for i in range(n):
        write(root, f"p{i:05d}.md", f"---\ntitle: Killed page {i}\ntags: [t{i % 30}]\n---\n{para}\n\n| a | b |\n"
                                    f"|---|---|\n| {i} | x |\n")
    return root


def _env(data_dir: Path) -> dict:
    env = dict(os.environ, KB_DATA_DIR=str(data_dir), KB_ADMIN_PASSWORD="a long enough password 1")
    env.pop("KB_DATABASE_URL", None)
    return env


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_kill_9_of_kb_import_leaves_no_worker_process(tmp_path):
    folder = _corpus(tmp_path / "corpus", 4000)
    workers = _kill_when_children_work(["import", str(folder)], _env(tmp_path / "data"))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in workers if _alive(p)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_kill_9_of_kb_reindex_leaves_no_worker_process(tmp_path):
    env = _env(tmp_path / "data")
    folder = _corpus(tmp_path / "corpus", 3000)
    subprocess.run([sys.executable, "-m", "kb", "import", str(folder)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = _kill_when_children_work(["reindex"], env)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in workers if _alive(p)]
    # The interrupted rebuild left the index as it was: still usable, still complete.
    result = subprocess.run([sys.executable, "-m", "kb", "check"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- A file of a live index truncated under a running process

LIVE_QUERIES = r'''
import json, sys, time
from kb import create_app, pages, search
from kb.access import Viewer

config = json.loads(sys.argv[1])
app = create_app(config)
backend = search.backend_for(app)
viewer = Viewer(*config["VIEWER"])
expected = config["EXPECTED"]
first = backend.query(viewer, "checkword")
assert first.total == expected and not first.unavailable, first
backend.start_background()  # as a server process does on its first request
print("ready", flush=True)
sys.stdin.readline()  # the file is truncated now
seen, saved, deadline = [], False, time.monotonic() + 60
while time.monotonic() < deadline:
    r = backend.query(viewer, "checkword")
    seen.append("unavailable" if r.unavailable else r.total)
    if not saved:  # saves go on while search is rebuilding
        with app.extensions["kb_db"].writing() as s:
            pages.save_page(s, viewer, None, pages.PageState(title="Saved while damaged", body="checkword extra"),
                            None, "during damage")
        backend.kick()
        saved = True
    if r.total == expected + 1 and not r.unavailable:
        break
    time.sleep(0.05)
print(json.dumps(seen), flush=True)
'''


@pytest.mark.parametrize("target", ["segment file", "column file"])
def test_a_file_truncated_under_a_live_index_is_answered_as_rebuilding_and_heals(app, make_page, target):
    import json

    from tests.conftest import viewer_for

    filler = " ".join(f"filler{j}" for j in range(3000))
    for i in range(3):
        make_page(f"Live page {i}", body=f"checkword {filler}")
    app.extensions["kb_search"].close()
    folder = _build_dir(app)
    pattern = "*.seg" if target == "segment file" else "kbcols-*.npc"
    victim = max(folder.glob(pattern), key=lambda p: p.stat().st_size)
    assert victim.stat().st_size > 3 * 4096  # several pages of the map lie past the truncated end
    viewer = viewer_for(app, "admin")
    config = {k: app.config[k] for k in ("DATA_DIR", "DATABASE_URL", "SECRET_KEY")}
    config.update(SEARCH_BACKGROUND=True, SEARCH_WORKER=True, EXPECTED=3,
                  VIEWER=[viewer.user_id, viewer.name, viewer.role])
    child = subprocess.Popen([sys.executable, "-c", LIVE_QUERIES, json.dumps(config)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(Path(__file__).resolve().parent.parent))
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        _truncate(victim, 0)
        out, err = child.communicate("go\n", timeout=90)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, f"the query process died with {child.returncode}: {err[-3000:]}"
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen[0] == "unavailable"  # the affected query: "search is rebuilding", not a crash
    assert seen[-1] == 4, seen  # healed in the background, with the page saved meanwhile
