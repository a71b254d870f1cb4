"""The database connection: one engine per app, sessions owned by the caller (a request or a CLI command).

SQLite is the embedded default and is set up for several server processes: WAL journal, a busy timeout, and write
transactions that take the write lock up front (BEGIN IMMEDIATE) so two writers queue instead of failing half way.
Any other SQLAlchemy URL (PostgreSQL) works with no code change.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from kb.models import Base, Generation

BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGIN handling."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

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
                   "invitations", "settings", "generation"}
_UNSHOWN_COLUMNS = {("users", "last_visit_at"), ("users", "previous_visit_at"), ("users", "session_version"),
                    ("users", "password_hash"), ("revisions", "html")}


def _shown_change(obj) -> bool:
    table = obj.__table__.name
    if table in _UNSHOWN_TABLES:
        return False
    state = inspect(obj)
    if state.persistent and not state.deleted:
        changed = {a.key for a in state.attrs if a.history.has_changes()}
        return any((table, c) not in _UNSHOWN_COLUMNS for c in changed)
    return True


def _track_changes(factory: sessionmaker) -> None:
    """Bump the generation in the same transaction as any change a page could show."""

    @event.listens_for(factory, "before_flush")
    def _before_flush(session, _ctx, _instances):
        if any(_shown_change(o) for o in (*session.new, *session.dirty, *session.deleted)):
            session.info["kb_changed"] = True

    @event.listens_for(factory, "do_orm_execute")
    def _on_execute(state):
        if (state.is_insert or state.is_update or state.is_delete) and not state.execution_options.get("kb_unshown"):
            table = getattr(state.statement, "table", None)
            if table is None or table.name not in _UNSHOWN_TABLES:
                state.session.info["kb_changed"] = True

    @event.listens_for(factory, "before_commit")
    def _before_commit(session):
        if session.info.pop("kb_changed", False):
            session.flush()
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


class Database:
    """The engine and the two session factories: readers (deferred) and writers (lock taken up front)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(kb_write=True), expire_on_commit=False)
        _track_changes(self._write)

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

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
