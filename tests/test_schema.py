"""Schema upgrades by migrations, and a database that cannot be used stopping start-up with one clear line.

A database made by the last release before migrations (its models are frozen in tests/fixtures/release_models.py)
is filled, upgraded, and must still hold every page, revision, tour and account, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, insert, select, text

from conftest import PASSWORD, _password_hash, viewer_for
from kb import create_app, instance, pages, schema
from kb.config import ConfigError
from kb.db import Database, make_engine
from kb.models import Base

KB = str(Path(sys.executable).parent / "kb")
ROOT = Path(__file__).resolve().parent.parent


def _release_models():
    name = "kb_release_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "fixtures" / "release_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # the annotations are resolved through it
        spec.loader.exec_module(module)
    return sys.modules[name]


def _fill(engine, tables) -> None:
    """What an instance of that release holds: accounts, pages with revisions and links, a tour, a reader's place."""
    when = datetime(2026, 9, 1, 8, 30)
    users, pages_, revisions = tables["users"], tables["pages"], tables["revisions"]
    with engine.begin() as conn:
        conn.execute(insert(users), [
            dict(id=1, name="admin", display_name="Admin", role="admin", password_hash=_password_hash(PASSWORD),
                 active=True, session_version=1, created_at=when, follows_kinds=[], leaving=False),
            dict(id=2, name="reader", display_name="Ré Ader", role="reader", password_hash=_password_hash(PASSWORD),
                 active=True, session_version=3, created_at=when, follows_kinds=["leader"], leaving=True)])
        for n, (slug, title, rev_count) in enumerate([("superintendent", "Superintendent", 3),
                                                      ("board-chair", "Board chair", 1),
                                                      ("old-handover", "Old handover", 2)], 1):
            conn.execute(insert(pages_).values(
                id=n, slug=slug, title=title, kind="page", status=None, fields={"note": "kept"}, tags=["t", slug],
                visibility="public" if n != 3 else "staff", readers=[], sources=["minutes 2019"],
                body=f"[[board-chair]] body of {slug} v{rev_count}", revision=rev_count, owner_id=1,
                review_every=180, created_at=when, updated_at=when, updated_by_id=1,
                deleted_at=when if n == 3 else None, deleted_by_id=1 if n == 3 else None))
            for number in range(1, rev_count + 1):
                conn.execute(insert(revisions).values(
                    page_id=n, number=number, slug=slug, title=title, kind="page", fields={"note": "kept"},
                    tags=["t", slug], visibility="public", readers=[], sources=[], author_id=1, created_at=when,
                    body=f"[[board-chair]] body of {slug} v{number}", html=None, comment=f"save {number} ünïcode"))
            conn.execute(insert(tables["links"]).values(source_id=n, target_slug="board-chair", via="body"))
        conn.execute(insert(tables["tours"]).values(id=1, slug="first-week", title="First week", description="d",
                                                   audience=["leader"], minutes=20, revision=1, owner_id=1,
                                                   created_at=when, updated_at=when))
        conn.execute(insert(tables["tour_stops"]), [dict(tour_id=1, position=0, page_id=1, note="n", question="q"),
                                                    dict(tour_id=1, position=1, page_id=2, note="", question="")])
        conn.execute(insert(tables["tour_revisions"]).values(tour_id=1, number=1, snapshot={"title": "First week"},
                                                            author_id=1, created_at=when, comment=""))
        conn.execute(insert(tables["tour_reads"]).values(user_id=2, tour_id=1, page_id=1, page_revision=3,
                                                        read_at=when))
        conn.execute(insert(tables["settings"]).values(key="content_imported", value="1"))


KEPT = ("users", "pages", "revisions", "links", "tours", "tour_stops", "tour_revisions", "tour_reads", "settings")


def _snapshot(engine, tables) -> dict:
    with engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(select(tables[name]).order_by(*tables[name].primary_key))]
                for name in KEPT}


def _app(url: str, tmp_path):
    return create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "s",
                       "SEARCH_BACKGROUND": False, "WTF_CSRF_ENABLED": False, "DATABASE_URL": url})


def test_migrations_make_the_schema_the_models_describe(new_database_url):
    database = Database(new_database_url("fresh", empty=True))
    try:
        applied = database.upgrade()
        assert applied[0] == "0001" and applied[-1] == schema.head()
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert database.upgrade() == []  # at the newest revision: nothing to do
    finally:
        database.dispose()


def test_a_database_of_the_last_release_is_upgraded_and_keeps_everything(new_database_url, tmp_path):
    url = new_database_url("release", empty=True)
    old = _release_models()
    engine = make_engine(url)
    try:
        old.Base.metadata.create_all(engine)  # what that release's start-up did
        with engine.begin() as conn:  # and an index instances made before it still have
            conn.execute(text("DROP INDEX ix_pages_deleted"))
            conn.execute(text("CREATE INDEX ix_pages_deleted_at ON pages (deleted_at)"))
        _fill(engine, old.Base.metadata.tables)
        before = _snapshot(engine, old.Base.metadata.tables)
    finally:
        engine.dispose()

    app = _app(url, tmp_path)
    db = app.extensions["kb_db"]
    try:
        assert instance.prepare_database(app)[-1] == schema.head()
        assert schema.current(db.engine)[0] == schema.head()
        assert _snapshot(db.engine, Base.metadata.tables) == before
        indexes = {index["name"] for index in inspect(db.engine).get_indexes("pages")}
        assert "ix_pages_deleted" in indexes and "ix_pages_deleted_at" not in indexes
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        # and the instance works: sign in, read, save on top of the old revisions
        client = app.test_client()
        assert client.post("/login", data={"name": "reader", "password": PASSWORD}).status_code == 302
        assert "body of superintendent v3" in client.get("/wiki/superintendent").get_data(as_text=True)
        with db.writing() as s:
            page, _ = pages.save_page(s, viewer_for(app, "admin"), "superintendent",
                                      pages.PageState(title="Superintendent", body="after the upgrade"), 3)
            assert page.revision == 4
        assert instance.prepare_database(app) == []  # a second start-up has nothing to do
    finally:
        db.dispose()


def _kb(*args, url: str, tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    environ.update(KB_DATA_DIR=str(tmp_path / "data"), KB_DATABASE_URL=url, HOME=str(tmp_path), **env)
    return subprocess.run([KB, *args], env=environ, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _one_clear_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_kb_db_upgrade_says_what_it_did(new_database_url, tmp_path):
    url = new_database_url("cli", empty=True)
    first = _kb("db", "upgrade", url=url, tmp_path=tmp_path)
    assert first.returncode == 0 and f"to revision {schema.head()}" in first.stdout, first.stderr
    again = _kb("db", "upgrade", url=url, tmp_path=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_a_database_newer_than_the_code_refuses_to_start(app, tmp_path):
    db = app.extensions["kb_db"]
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(ConfigError, match="9999_from_the_future.*newer kb"):
        instance.prepare_database(app)
    url = app.config["DATABASE_URL"]
    db.dispose()
    for command in (("db", "upgrade"), ("init",), ("serve", "--port", "1")):
        _one_clear_line(_kb(*command, url=url, tmp_path=tmp_path), "9999_from_the_future", "newer kb")


def test_a_database_of_another_application_is_left_alone(new_database_url, tmp_path):
    url = new_database_url("other", empty=True)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))
        conn.execute(text("INSERT INTO orders VALUES (1, 42)"))
    _one_clear_line(_kb("init", url=url, tmp_path=tmp_path), "another application", "orders", "KB_DATABASE_URL")
    with engine.connect() as conn:  # nothing was changed
        assert set(inspect(conn).get_table_names()) == {"orders"}
    engine.dispose()


@pytest.mark.parametrize("url, words", [
    ("postgresql://kb:secret-pw@127.0.0.1:1/kb", ["Cannot open the database", "127.0.0.1:1", "KB_DATABASE_URL"]),
    ("mysql://kb@127.0.0.1/kb", ["driver", "not installed", "KB_DATABASE_URL"]),
    ("not a database url", ["KB_DATABASE_URL", "not a database URL"]),
    ("sqlite:/missing-slashes", ["KB_DATABASE_URL", "not a database URL"]),
    ("sqlite+nodriver:///kb.sqlite3", ["driver", "not installed"]),
    ("sqlite:////nonexistent-folder/kb.sqlite3", ["Cannot open the database", "folder"]),
])
def test_a_database_url_that_cannot_be_used_gets_one_line_and_exit_1(url, words, tmp_path):
    for command in (("init",), ("serve", "--port", "1")):
        line = _one_clear_line(_kb(*command, url=url, tmp_path=tmp_path), *words)
        assert "secret-pw" not in line


# --- The database server going away while serving ----------------------------------------------------------------

def _pg_ctl(*args: str) -> None:
    command = [os.environ["KB_TEST_PG_CTL"], "-D", os.environ["KB_TEST_PG_DATA"], "-w", "-s", *args]
    if os.environ.get("KB_TEST_PG_USER"):
        command = ["runuser", "-u", os.environ["KB_TEST_PG_USER"], "--", *command]
    subprocess.run(command, check=True, timeout=120, stdout=subprocess.DEVNULL)


@pytest.mark.skipif(not os.environ.get("KB_TEST_PG_DATA"), reason="needs the PostgreSQL server scripts/test starts")
def test_a_database_server_that_goes_away_gives_503_and_the_app_recovers_by_itself(app, client, make_page):
    make_page("Superintendent", body="Leads the district.")
    assert client.post("/login", data={"name": "reader", "password": PASSWORD}).status_code == 302
    assert client.get("/wiki/superintendent").status_code == 200
    log = os.path.join(os.path.dirname(os.environ["KB_TEST_PG_DATA"]), "server.log")
    _pg_ctl("-m", "fast", "stop")
    try:
        page = client.get("/wiki/superintendent")
        assert page.status_code == 503 and int(page.headers["Retry-After"]) > 0
        assert "try again" in page.get_data(as_text=True)
        api = client.get("/api/pages/superintendent")
        assert api.status_code == 503 and api.is_json and api.headers["Retry-After"]
        saved = client.post("/wiki/superintendent/edit", data={"title": "Superintendent", "body": "x",
                                                               "base_revision": "1"})
        assert saved.status_code == 503
    finally:
        _pg_ctl("-l", log, "start")
    assert client.get("/wiki/superintendent").status_code == 200  # same app, same pool: reconnected by itself
    assert "Leads the district." in client.get("/api/pages/superintendent").get_data(as_text=True)


def _start_up(url: str, barrier, results) -> None:
    from kb.db import Database

    database = Database(url)
    barrier.wait(timeout=60)
    try:
        results.put(database.upgrade())
    except BaseException as e:
        results.put(repr(e))
    finally:
        database.dispose()


def test_hosts_starting_at_once_upgrade_the_database_once(new_database_url):
    import multiprocessing as mp

    url = new_database_url("together", empty=True)
    ctx = mp.get_context("forkserver")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_start_up, args=(url, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(isinstance(o, list) for o in out), out  # no start-up failed
    upgraded = [o for o in out if o]
    assert len(upgraded) == 1 and upgraded[0][-1] == schema.head(), out  # one did it; the others found it done
