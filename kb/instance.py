"""Bringing a knowledge base instance up to date: its database schema, its search index, the administrator account
and, on first run, the bundled content.

Each step is named and run explicitly: `kb init` runs them all, `kb serve` runs them before it forks its workers,
commands that write run `prepare_database`, and the test fixtures run `prepare`. The app factory runs none of them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from flask import Flask
from sqlalchemy import func, select

from kb import accounts, search, transfer, viewcache
from kb.models import IndexQueueEntry, Page, Setting, User
from kb.access import Viewer

log = logging.getLogger(__name__)

CONTENT_IMPORTED = "content_imported"
IMPORT_INDEX_PATIENCE = 60.0  # seconds `kb import` waits for a search index another process is writing


def prepare_database(app: Flask) -> list[str]:
    """Create or upgrade the database schema to the newest migration; returns the revisions applied.

    The one place the schema is changed. A database that cannot be used (unreachable, another application's,
    newer than this code) raises kb.config.ConfigError with one line saying what to do."""
    return app.extensions["kb_db"].upgrade()


def prepare_search(app: Flask) -> str:
    """Make the search index usable: a missing or damaged one is rebuilt (a big one by the worker, in the
    background). Returns what was done, for the log."""
    return search.repair_at_start(app)


def prepare(app: Flask) -> None:
    """Schema and search index, as a server needs them before its first request; stored page views are dropped,
    since the code that rendered them may have changed."""
    prepare_database(app)
    viewcache.store_for(app).forget_all()
    prepare_search(app)


def system_viewer(session) -> Viewer:
    """The viewer for commands run by the operator: the first administrator, who may do and see everything."""
    admin = session.scalar(select(User).where(User.role == "admin", User.active.is_(True)).order_by(User.id))
    if admin is None:
        return Viewer(None, "system", "admin")
    return Viewer(admin.id, admin.name, "admin")


def ensure_admin(session, password: str | None = None) -> str | None:
    """Create the `admin` account if there is none. Returns the generated password, if one was generated."""
    if session.scalar(select(User).where(User.name == "admin")) is not None:
        return None
    import secrets

    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(18)
    accounts.create_user(session, "admin", "admin", password, "Administrator")
    return generated


def import_content(app: Flask, path: Path, progress: Callable | None = None,
                   announce: Callable[[str | None], None] = lambda _generated: None) -> transfer.ImportReport:
    """Import a folder of pages and tours (all or nothing), then index what was written."""
    db = app.extensions["kb_db"]
    with db.writing() as s:
        # Imported revisions need an author: on a fresh instance that is the administrator, created now.
        announce(ensure_admin(s, app.config["ADMIN_PASSWORD"]))
    with db.writing() as s:
        report = transfer.import_tree(s, system_viewer(s), path, progress=progress)
    # A command ends right away: index everything it wrote here, waiting a while for a server that holds the index.
    search.backend_for(app).flush(patience=IMPORT_INDEX_PATIENCE)
    with db.reading() as s:
        waiting = s.scalar(select(func.count()).select_from(IndexQueueEntry)) or 0
    if waiting:
        report.warnings.append(
            f"{waiting} page change(s) are not in the search index yet (it is locked by another process, or "
            "damaged): a running server indexes them; without one, run `kb check --repair`")
    return report


def initialise(app: Flask, progress: Callable | None = None,
               announce: Callable[[str | None], None] = lambda _generated: None) -> transfer.ImportReport | None:
    """Idempotent set-up: schema, index, the admin account, and the bundled content on first run. Returns the
    import report when the content was imported now."""
    prepare(app)
    db = app.extensions["kb_db"]
    with db.writing() as s:
        announce(ensure_admin(s, app.config["ADMIN_PASSWORD"]))
    with db.reading() as s:
        imported = s.get(Setting, CONTENT_IMPORTED) is not None
        has_pages = s.scalar(select(func.count(Page.id))) > 0
    report = None
    content = Path(app.config["CONTENT_DIR"])
    if not imported and not has_pages and content.is_dir():
        report = import_content(app, content, progress, announce)
    if not imported:
        with db.writing() as s:
            s.merge(Setting(key=CONTENT_IMPORTED, value="1"))
    return report
