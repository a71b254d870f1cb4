"""The database connection: one engine per app, sessions owned by the caller (a request or a CLI command).

SQLite is the embedded default and is set up for several server processes: WAL journal, a busy timeout, and write
transactions that take the write lock up front (BEGIN IMMEDIATE) so two writers queue instead of failing half way.
Any other SQLAlchemy URL (PostgreSQL) works with no code change.
"""
from __future__ import annotations

import errno
import logging
import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from kb.config import ConfigError
from kb.errors import StorageFull

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
DISK_FULL_SQLSTATE = "53100"  # PostgreSQL's disk_full


def is_storage_full(error: BaseException) -> bool:
    """Does this driver error say the database or its disk is full (SQLite's SQLITE_FULL, PostgreSQL's disk_full,
    or the operating system's "no space left on device")?"""
    if getattr(error, "sqlstate", None) == DISK_FULL_SQLSTATE or getattr(error, "pgcode", None) == DISK_FULL_SQLSTATE:
        return True
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error).lower()
    return "database or disk is full" in text or "no space left on device" in text


def _storage_full_as_domain_error(engine: Engine) -> Engine:
    """A full database or disk reaches the caller as kb.errors.StorageFull (a 507 with a message for people), and
    the log says which database could not be written."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context):
        if is_storage_full(context.original_exception):
            log.error("storage full: could not write to the database at %s (%s)",
                      engine.url.render_as_string(hide_password=True), context.original_exception)
            return StorageFull()
        return None

    return engine


def engine_url(url: str) -> URL:
    """`url` as SQLAlchemy reads it; a PostgreSQL URL without a driver (postgresql://, postgres://) uses psycopg 3,
    the driver the `postgres` extra installs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _use_wal(cursor, attempts: int = 100) -> None:
    """Switch a new SQLite database to WAL. Several processes opening a brand-new database at once (hosts starting
    together) can find it locked while another converts it, and SQLite answers that without waiting for the busy
    timeout: try again for a few seconds."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGIN handling; other
    databases check a pooled connection before use, so a restarted server is reconnected to by itself.

    A URL that is not one, or names a driver that is not installed, raises ConfigError saying what to do."""
    try:
        parsed = engine_url(url)
        if parsed.get_backend_name() != "sqlite":
            return _storage_full_as_domain_error(create_engine(parsed, pool_pre_ping=True))
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
    except (NoSuchModuleError, ImportError) as e:  # NoSuchModuleError is an ArgumentError: look at it first
        raise ConfigError(f"KB_DATABASE_URL names a database driver that is not installed or not known ({e}). Use "
                          "sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/DATABASE with kb installed with "
                          "its postgres extra (pip install 'district-kb[postgres]').") from None
    except ArgumentError as e:
        raise ConfigError(f"KB_DATABASE_URL is not a database URL kb can use ({e}). Use sqlite:///PATH or "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE.") from None

    _storage_full_as_domain_error(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's begin event issue BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _use_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("kb_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """The engine and the two session factories: readers (deferred) and writers (lock taken up front)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.search = None  # the search backend told of every change (kb.search.init_app binds it)
        self._read = sessionmaker(self.engine, expire_on_commit=False, info={"kb_database": self})
        self._write_engine = self.engine.execution_options(kb_write=True)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False, info={"kb_database": self})

    def upgrade(self) -> list[str]:
        """Create or upgrade the schema by its migrations (kb.schema); returns the revisions applied."""
        from kb import schema

        return schema.upgrade(self._write_engine)


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

    @contextmanager
    def reading(self) -> Iterator[Session]:
        session = self.session()
        try:
            yield session
        finally:
            session.close()  # ends the transaction; loaded objects stay readable

    def dispose(self) -> None:
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
