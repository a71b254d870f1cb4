"""The database schema, brought up to date by the Alembic migrations in kb/migrations (run from here, no alembic.ini).

`upgrade(engine)` is the one schema step (kb.instance.prepare_database calls it): an empty database gets every
revision, one made by `create_all()` before migrations existed (kb's tables, no `alembic_version`) is recognised and
upgraded, and one the code cannot use stops start-up with a `ConfigError` of one line saying what and what to do:
a server that cannot be reached, a database of another application, a schema newer than the code.

A change to kb/models.py is one more revision in kb/migrations/versions/, written by Alembic from the difference
between the models and a database at the newest revision, then read and tidied by hand:

    python -c "from kb import schema; schema.new_revision('sqlite:///scratch.sqlite3', 'What changed')"
"""
from __future__ import annotations

import logging
import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from kb.config import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
# Tables every kb database has had since the first release: a database with these and no alembic_version is ours.
KB_TABLES = {"users", "pages", "revisions", "links", "settings"}
# Two hosts starting at once on one PostgreSQL database: one upgrades, the other waits and finds nothing to do.
_PG_LOCK = 0x6B62_0001


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def unreachable(engine: Engine, error: BaseException) -> ConfigError:
    first = str(getattr(error, "orig", None) or error).strip().splitlines()
    reason = first[0] if first else type(error).__name__
    if engine.dialect.name == "sqlite":
        advice = "Check KB_DATABASE_URL (or KB_DATA_DIR): its folder must exist and be writable."
    else:
        advice = "Check KB_DATABASE_URL and that the database server is running and accepts this user."
    return ConfigError(f"Cannot open the database {where(engine)} ({reason}). {advice}")


def current(engine: Engine) -> tuple[str | None, set[str]]:
    """The database's schema revision (None if it has none) and its table names."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), set(inspect(conn).get_table_names())


def upgrade(engine: Engine) -> list[str]:
    """Bring the schema of `engine`'s database to the newest revision; returns the revisions applied (oldest first)."""
    config = _config()
    script = ScriptDirectory.from_config(config)
    try:
        with engine.begin() as conn:  # on SQLite the caller's engine takes the write lock up front
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
            context = MigrationContext.configure(conn)
            revision = context.get_current_revision()
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
            if revision is None and tables and not KB_TABLES <= tables:
                shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
                raise ConfigError(f"The database {where(engine)} holds tables of another application ({shown}), not "
                                  "a knowledge base: set KB_DATABASE_URL to an empty database or to one kb made.")
            if revision is not None:
                try:
                    script.get_revision(revision)
                except Exception:
                    known = False
                else:
                    known = True
                if not known:
                    raise ConfigError(
                        f"The database {where(engine)} has schema revision {revision!r}, which this version of kb "
                        f"does not know (its newest is {script.get_current_head()!r}): it was upgraded by a newer kb "
                        "or belongs to another application. Run the newer kb, or restore a backup made before.")
            pending = [r.revision for r in reversed(list(script.iterate_revisions(script.get_current_head(),
                                                                                  revision)))]
            if not pending:
                return []
            if revision is None and tables:
                log.warning("database %s was made before schema migrations: upgrading it", where(engine))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            log.info("database schema upgraded: %s", ", ".join(pending))
            return pending
    except (OperationalError, DBAPIError) as e:
        if isinstance(e, OperationalError) or getattr(e, "connection_invalidated", False):
            raise unreachable(engine, e) from None
        raise


def new_revision(url: str, message: str) -> None:
    """Write a new revision file for what kb/models.py has and the database at `url` (brought to the newest
    revision first) does not. For developers; kb never calls it."""
    from sqlalchemy import create_engine

    engine = create_engine(url)  # a plain engine is enough to compare schemas (and keeps kb.db -> kb.schema one way)
    try:
        upgrade(engine)
        config = _config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            number = len(list(ScriptDirectory.from_config(config).walk_revisions())) + 1
            command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
    finally:
        engine.dispose()
