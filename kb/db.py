"""The database connection: one engine per app, sessions owned by the caller (a request or a CLI command).

SQLite is the embedded default and is set up for several server processes: WAL journal, a busy timeout, and write
transactions that take the write lock up front (BEGIN IMMEDIATE) so two writers queue instead of failing half way.
Any other SQLAlchemy URL (PostgreSQL) works with no code change.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event, inspect, select, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from kb.config import ConfigError
from kb.models import Generation

BUSY_TIMEOUT_MS = 30_000


def engine_url(url: str) -> URL:
    """`url` as SQLAlchemy reads it; a PostgreSQL URL without a driver (postgresql://, postgres://) uses psycopg 3,
    the driver the `postgres` extra installs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGIN handling; other
    databases check a pooled connection before use, so a restarted server is reconnected to by itself.

    A URL that is not one, or names a driver that is not installed, raises ConfigError saying what to do."""
    try:
        parsed = engine_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
    except (NoSuchModuleError, ImportError) as e:  # NoSuchModuleError is an ArgumentError: look at it first
        raise ConfigError(f"KB_DATABASE_URL names a database driver that is not installed or not known ({e}). Use "
                          "sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/DATABASE with kb installed with "
                          "its postgres extra (pip install 'district-kb[postgres]').") from None
    except ArgumentError as e:
        raise ConfigError(f"KB_DATABASE_URL is not a database URL kb can use ({e}). Use sqlite:///PATH or "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE.") from None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's begin event issue BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("kb_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# Changes that no page shows: sign-in bookkeeping, queues, drafts, progress, logs, and the HTML cache itself.
_UNSHOWN_TABLES = {"sign_in_failures", "index_queue", "drafts", "tour_reads", "audit_log", "api_tokens",
                   "invitations", "settings", "generation", "rendered_views"}
_UNSHOWN_COLUMNS = {("users", "last_visit_at"), ("users", "previous_visit_at"), ("users", "session_version"),
                    ("users", "password_hash"), ("revisions", "html")}


def _shown_change(obj, updated: bool) -> bool:
    """Does adding, deleting (updated=False) or updating (updated=True) this object change what a page shows?"""
    table = obj.__table__.name
    if table in _UNSHOWN_TABLES:
        return False
    if updated:
        changed = {a.key for a in inspect(obj).attrs if a.history.has_changes()}
        return any((table, c) not in _UNSHOWN_COLUMNS for c in changed)
    return True


def _track_changes(factory: sessionmaker) -> None:
    """Bump the generation in the same transaction as any change a page could show."""

    @event.listens_for(factory, "before_flush")
    def _before_flush(session, _ctx, _instances):
        if (any(_shown_change(o, False) for o in (*session.new, *session.deleted))
                or any(_shown_change(o, True) for o in session.dirty if o not in session.deleted)):
            session.info["kb_changed"] = True

    @event.listens_for(factory, "do_orm_execute")
    def _on_execute(state):
        if (state.is_insert or state.is_update or state.is_delete) and not state.execution_options.get("kb_unshown"):
            table = getattr(state.statement, "table", None)
            if table is None or table.name not in _UNSHOWN_TABLES:
                state.session.info["kb_changed"] = True

    @event.listens_for(factory, "before_commit")
    def _before_commit(session):
        session.flush()  # before_commit runs before the last flush: flush now so before_flush sees every change
        if session.info.pop("kb_changed", False):
            if session.execute(update(Generation).where(Generation.id == 1)
                               .values(value=Generation.value + 1)).rowcount == 0:
                session.add(Generation(id=1, value=1))
                session.flush()

    @event.listens_for(factory, "after_rollback")
    def _after_rollback(session):
        session.info.pop("kb_changed", None)


def generation(session: Session) -> int:
    """The current generation: equal numbers mean nothing a page shows has changed in between."""
    return session.scalar(select(Generation.value).where(Generation.id == 1)) or 0


class FastReader:
    """Reads for the hottest paths (who is signed in, a page view) on a plain driver connection.

    A statement is still written with SQLAlchemy Core and compiled once for the database in use, so it stays
    portable; only the per-call work of sessions and result objects (most of the cost of a one-row read) is skipped.
    Rows come back as the driver gives them: JSON and date columns are not converted. Reads only: each statement
    sees one consistent snapshot; there is no transaction around several.
    """

    _compiled: dict = {}

    def __init__(self, db: "Database"):
        self._db = db
        self._conn = None

    def _prepare(self, statement):
        key = (id(statement), self._db.engine.dialect.name)
        found = self._compiled.get(key)
        if found is None:
            compiled = statement.compile(dialect=self._db.engine.dialect)
            order = compiled.positiontup if compiled.positional else None
            defaults = {name: bind.value for name, bind in compiled.binds.items()}
            found = self._compiled[key] = (str(compiled), order, defaults, statement)
        return found

    def one(self, statement, params: dict) -> tuple | None:
        sql, order, defaults, _ = self._prepare(statement)
        values = {**defaults, **params}
        if self._conn is None:
            self._conn = self._db.read_connection()
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, tuple(values[name] for name in order) if order is not None else values)
            return cursor.fetchone()
        finally:
            cursor.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._db.release_read_connection(conn)


class Database:
    """The engine and the two session factories: readers (deferred) and writers (lock taken up front)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(kb_write=True)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)
        _track_changes(self._write)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._readers = threading.local()

    def read_connection(self):
        """A driver connection for FastReader's plain reads.

        SQLite: one per thread, kept open (a read outside a transaction sees the latest commit, and taking a
        connection from the pool and giving it back cost more than the read itself); never one opened before a fork.
        Other databases: one from the pool, for release_read_connection to give back.
        """
        if not self._sqlite:
            return self.engine.raw_connection()
        local = self._readers
        if getattr(local, "pid", None) != os.getpid():
            local.conn = self.engine.raw_connection()
            local.conn.detach()  # this thread's own, outside the pool's count; closed with the thread or dispose()
            local.pid = os.getpid()
        return local.conn

    def release_read_connection(self, conn) -> None:
        if self._sqlite:
            return  # kept for the thread's next read; SQLite runs these reads in autocommit
        try:
            conn.rollback()  # end the read transaction
        finally:
            conn.close()  # back to the pool

    def fast_reader(self) -> "FastReader":
        return FastReader(self)

    def upgrade(self) -> list[str]:
        """Create or upgrade the schema by its migrations (kb.schema); returns the revisions applied."""
        from kb import schema

        return schema.upgrade(self._write_engine)

    create_all = upgrade  # the name callers used before there were migrations

    def session(self, write: bool = False) -> Session:
        return (self._write if write else self._read)()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write session that commits on success and rolls back on error."""
        session = self.session(write=True)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def write_connection(self):
        """A Core connection in a write transaction (lock taken up front), committed on success: for derived data
        written outside the ORM, which never counts as a change pages show."""
        return self._write_engine.begin()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        session = self.session()
        try:
            yield session
        finally:
            session.close()  # ends the transaction; loaded objects stay readable

    def dispose(self) -> None:
        self._readers = threading.local()  # drops the kept read connections (a thread's own closes with it)
        self.engine.dispose()


def init_app(app) -> None:
    """Bind a Database for the app's DATABASE_URL (no connection is made until one is needed)."""
    app.extensions["kb_db"] = Database(app.config["DATABASE_URL"])


# --- Writes that race: what every write path uses so that concurrent requests get 409, never 500 -----------------


def for_update(statement):
    """`statement` (a select of ORM rows) locking the rows it finds until the transaction ends, and reloading them
    (another writer may have changed them since this session last looked). PostgreSQL takes a row lock; SQLite
    needs none (a write transaction holds the database's write lock from its start) and renders no FOR UPDATE."""
    return statement.with_for_update().execution_options(populate_existing=True)


def add_unless_taken(session: Session, obj) -> bool:
    """Insert `obj` in a savepoint; False (and nothing written) if a unique key it has is already taken, for
    example by a concurrent request that committed first. The transaction stays usable either way."""
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.add(obj)
            session.flush()
    except IntegrityError as e:
        if not is_unique_violation(e):
            raise
        return False
    return True


def is_unique_violation(error) -> bool:
    """Is this IntegrityError a unique key already taken (rather than, say, a missing foreign row)?"""
    orig = getattr(error, "orig", error)
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL's unique_violation
        return True
    text = str(orig)
    return "UNIQUE constraint failed" in text or "PRIMARY KEY" in text or "duplicate key" in text
