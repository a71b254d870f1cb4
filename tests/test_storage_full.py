"""A full database or disk: saves get a clear answer that keeps the person's text, nothing half-saved, and saving
works again by itself once there is room. SQLite's page limit gives exactly the error a full disk gives
(SQLITE_FULL), without filling a disk."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import event

from kb.db import is_storage_full
from kb.errors import StorageFull

from conftest import ON_POSTGRES

BIG = "A paragraph about the district's budget calendar, written out at length. " * 3000


@pytest.fixture
def full(app):
    if ON_POSTGRES:
        pytest.skip("fills SQLite through its page limit; PostgreSQL's disk_full is recognised by the test below")
    """Make the database refuse to grow from now on; undo with full.room()."""
    engine = app.extensions["kb_db"].engine
    state = {"limit": None}

    def limit(dbapi_conn, _record):
        if state["limit"]:
            dbapi_conn.execute(f"PRAGMA max_page_count={state['limit']}")
        else:
            dbapi_conn.execute("PRAGMA max_page_count=1073741823")

    event.listen(engine, "connect", limit)
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    state["limit"] = pages + 2
    engine.dispose()  # new connections get the limit

    class Full:
        def room(self):
            state["limit"] = None
            engine.dispose()

    yield Full()
    event.remove(engine, "connect", limit)
    engine.dispose()


def test_an_api_save_on_a_full_disk_answers_507_and_saves_nothing(client, auth, full, caplog):
    auth.login("contributor")
    with caplog.at_level(logging.ERROR, logger="kb.db"):
        response = client.put("/api/pages/budget-calendar", json={"title": "Budget Calendar", "body": BIG})
    assert response.status_code == 507
    assert "run out of storage space" in response.get_json()["error"]
    assert any("storage full" in r.getMessage() and "kb.sqlite3" in r.getMessage() for r in caplog.records)
    full.room()
    assert client.get("/api/pages/budget-calendar").status_code == 404  # nothing half-saved
    response = client.put("/api/pages/budget-calendar", json={"title": "Budget Calendar", "body": BIG})
    assert response.status_code == 201  # works again by itself once there is room


def test_the_editor_on_a_full_disk_keeps_the_text_and_says_what_happened(client, auth, full):
    auth.login("contributor")
    response = client.post("/new", data={"title": "Budget Calendar", "kind": "page", "body": BIG})
    assert response.status_code == 507
    html = response.get_data(as_text=True)
    assert "run out of storage space" in html and "tell your administrator" in html.lower()
    assert "written out at length" in html  # the person's text is still in the form
    full.room()
    assert client.post("/new", data={"title": "Budget Calendar", "kind": "page", "body": BIG}).status_code == 302


def test_a_command_on_a_full_disk_says_so_in_one_line(app, full, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "budget-calendar.md").write_text(f"---\ntitle: Budget Calendar\n---\n{BIG}\n")
    result = app.test_cli_runner().invoke(args=["import", str(tmp_path / "in")])
    assert result.exit_code != 0
    assert "run out of storage space" in result.output and "Traceback" not in result.output


def test_storage_full_is_a_domain_error_with_status_507():
    assert StorageFull().status == 507


def test_every_database_s_way_of_saying_full_is_recognised():
    import errno

    class PostgresDiskFull(Exception):  # what psycopg raises for SQLSTATE 53100
        sqlstate = "53100"

    class PostgresOtherError(Exception):
        sqlstate = "23505"

    assert is_storage_full(PostgresDiskFull("could not extend file"))
    assert is_storage_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_storage_full(Exception("database or disk is full"))
    assert not is_storage_full(PostgresOtherError("duplicate key"))
    assert not is_storage_full(OSError(errno.EACCES, "Permission denied"))
