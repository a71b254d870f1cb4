"""The district knowledge base: a Flask wiki for leadership succession.

`create_app(test_config=None)` builds an app on a data directory (KB_DATA_DIR, default `instance/`) holding the
SQLite database and the search index. Nothing is global: every test builds its own app.
"""
from __future__ import annotations

import os
import secrets
import weakref
from pathlib import Path

from flask import Flask

from kb import resources

ROOT = Path(__file__).resolve().parent.parent


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _secret_key(data_dir: Path) -> str:
    """KB_SECRET_KEY, or a key generated once and kept in the data directory so all workers share it."""
    if os.environ.get("KB_SECRET_KEY"):
        return os.environ["KB_SECRET_KEY"]
    path = data_dir / "secret_key"
    if not path.exists():
        tmp = data_dir / f".secret_key.{os.getpid()}"
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic: the first process to get here wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


class KnowledgeBase(Flask):
    """Flask, remembering which views and hooks are plain functions.

    Flask asks whether each one is a coroutine function every time it calls it, seven times for a page view; the
    answer for a given function never changes.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plain_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def ensure_sync(self, func):
        try:
            if self._plain_functions.get(func):
                return func
        except TypeError:  # not weakly referenceable: ask every time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if wrapped is func:
            self._plain_functions[func] = True
        return wrapped


def create_app(test_config: dict | None = None) -> Flask:
    app = KnowledgeBase(__name__, template_folder=str(resources.folder("templates")),
                        static_folder=str(resources.folder("static")))
    data_dir = Path((test_config or {}).get("DATA_DIR") or os.environ.get("KB_DATA_DIR") or ROOT / "instance")
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(
        DATA_DIR=str(data_dir),
        DATABASE_URL=os.environ.get("KB_DATABASE_URL") or f"sqlite:///{data_dir / 'kb.sqlite3'}",
        ANONYMOUS_READ=_env_flag("KB_ANONYMOUS_READ"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        # The API answers 413 itself for bodies over 1 MiB; this stops anything absurd before it is read.
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        SEARCH_BACKGROUND=True,
        CONTENT_DIR=str(resources.folder("content")),
    )
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(data_dir)

    from kb.db import Database

    db = Database(app.config["DATABASE_URL"])
    db.create_all()
    app.extensions["kb_db"] = db

    from kb import search, views

    views.init_app(app)
    search.init_app(app)

    from kb.cli import register

    register(app)
    return app
