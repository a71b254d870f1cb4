"""The district knowledge base: a Flask wiki for leadership succession.

`create_app(test_config=None)` builds an app from the settings in kb.config and binds the database, the search
index and the web layer to it; it does not touch the database. Bringing an instance up to date (schema, search
index, the admin account and the bundled content) is `kb.instance`'s job, run by `kb init`, `kb serve` and the
test fixtures. Nothing is global: every test builds its own app.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

from kb import config, resources


def _secret_key(data_dir: Path) -> str:
    """A key generated once and kept in the data directory, so that all workers share it."""
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


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(resources.folder("templates")),
                static_folder=str(resources.folder("static")))
    app.config.from_mapping(config.load(test_config))
    data_dir = Path(app.config["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(data_dir)

    from kb import cli, db, search, viewcache, web

    db.init_app(app)
    search.init_app(app)
    viewcache.init_app(app)
    web.init_app(app)
    cli.init_app(app)
    return app
