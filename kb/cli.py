"""The `kb` command line (also `flask --app kb ...`): set up, import/export, users and tokens, index, serve."""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import func, select

from kb import accounts, search, transfer
from kb.access import Viewer
from kb.errors import KBError
from kb.models import Page, Setting, User

CONTENT_IMPORTED = "content_imported"


def _db():
    return current_app.extensions["kb_db"]


def system_viewer(session) -> Viewer:
    """The viewer for commands run by the operator: the first administrator, who may do and see everything."""
    admin = session.scalar(select(User).where(User.role == "admin", User.active.is_(True)).order_by(User.id))
    if admin is None:
        return Viewer(None, "system", "admin")
    return Viewer(admin.id, admin.name, "admin")


class Progress:
    """A one-line progress display on stderr for long runs."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet or not sys.stderr.isatty() and os.environ.get("KB_PROGRESS") != "1"
        self.last = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet or total == 0:
            return
        width = 30
        filled = int(width * done / total)
        line = f"\r{stage:>8} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if line != self.last:
            sys.stderr.write(line + ("\n" if done == total else ""))
            sys.stderr.flush()
            self.last = line


def ensure_admin(session, password: str | None = None) -> str | None:
    """Create the `admin` account if there is none. Returns the generated password, if one was generated."""
    if session.scalar(select(User).where(User.name == "admin")) is not None:
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(18)
    accounts.create_user(session, "admin", "admin", password, "Administrator")
    return generated


def _announce_admin(generated: str | None) -> None:
    if generated:
        click.echo(f"Created the administrator account 'admin' with password: {generated}")
        click.echo("Write it down now: it is shown only this once. Set KB_ADMIN_PASSWORD to choose your own.")


def import_content(app: Flask, path: Path, quiet: bool = False) -> transfer.ImportReport:
    db = app.extensions["kb_db"]
    with db.writing() as s:
        # Imported revisions need an author: on a fresh instance that is the administrator, created now.
        _announce_admin(ensure_admin(s, os.environ.get("KB_ADMIN_PASSWORD")))
    with db.writing() as s:
        report = transfer.import_tree(s, system_viewer(s), path, progress=Progress(quiet))
    search.kick(app, background=False)  # a command ends right away: index here, not in a worker thread
    return report


def init_instance(app: Flask, quiet: bool = False) -> None:
    """Idempotent set-up: tables, the admin account, and the bundled content on first run."""
    db = app.extensions["kb_db"]
    with db.writing() as s:
        _announce_admin(ensure_admin(s, os.environ.get("KB_ADMIN_PASSWORD")))
    with db.reading() as s:
        imported = s.get(Setting, CONTENT_IMPORTED) is not None
        has_pages = s.scalar(select(func.count(Page.id))) > 0
    content = Path(app.config["CONTENT_DIR"])
    if not imported and not has_pages and content.is_dir():
        report = import_content(app, content, quiet)
        click.echo(f"Imported the bundled knowledge base: {report.created} pages, {report.tours} tours.")
    if not imported:
        with db.writing() as s:
            s.merge(Setting(key=CONTENT_IMPORTED, value="1"))


def register(app: Flask) -> None:
    @app.cli.command("init")
    def init_command():
        """Create the database, the admin account and import content/ on first run (idempotent)."""
        init_instance(current_app._get_current_object())
        click.echo(f"Ready: data in {current_app.config['DATA_DIR']}")

    @app.cli.command("import")
    @click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
    def import_command(path: Path):
        """Import Markdown pages (and tours/) from PATH. All or nothing."""
        try:
            report = import_content(current_app._get_current_object(), path)
        except KBError as e:
            raise click.ClickException(f"Import failed, nothing was written. {e.message}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"Imported {report.created} new pages, updated {report.updated}, "
                   f"{report.unchanged} unchanged; {report.tours} tours.")

    @app.cli.command("export")
    @click.argument("path", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--as", "as_user", metavar="NAME", help="Export only what this user may read.")
    def export_command(path: Path, as_user: str | None):
        """Write every page and tour to PATH in the import format."""
        with _db().reading() as s:
            viewer = system_viewer(s)
            if as_user:
                try:
                    user = accounts.get_user(s, as_user)
                except KBError as e:
                    raise click.ClickException(e.message)
                viewer = Viewer(user.id, user.name, user.role) if user.active else Viewer()
            n_pages, n_tours = transfer.export_tree(s, viewer, path, progress=Progress())
        click.echo(f"Exported {n_pages} pages and {n_tours} tours to {path}")

    user_group = click.Group("user", help="Manage accounts.")
    app.cli.add_command(user_group)

    @user_group.command("add")
    @click.argument("name")
    @click.option("--role", type=click.Choice(["reader", "contributor", "curator", "admin"]), default="reader")
    @with_appcontext
    def user_add(name: str, role: str):
        """Create an account; the password is read from standard input."""
        password = sys.stdin.readline().rstrip("\n")
        try:
            with _db().writing() as s:
                accounts.create_user(s, name, role, password)
        except KBError as e:
            raise click.ClickException(e.message)
        click.echo(f"Created {role} {name!r}.")

    token_group = click.Group("token", help="Manage API tokens.")
    app.cli.add_command(token_group)

    @token_group.command("create")
    @click.argument("name")
    @click.option("--label", default="command line", help="What the token is for.")
    @with_appcontext
    def token_create(name: str, label: str):
        """Create an API token for user NAME and print it (shown only once)."""
        try:
            with _db().writing() as s:
                token = accounts.create_token(s, accounts.get_user(s, name), label)
        except KBError as e:
            raise click.ClickException(e.message)
        click.echo(token)

    @app.cli.command("reindex")
    def reindex_command():
        """Rebuild the search index from the database into a new directory, then swap it in."""
        app_ = current_app._get_current_object()
        count = search.rebuild_app_index(app_, progress=Progress())
        click.echo(f"Reindexed {count} pages.")

    @app.cli.command("check")
    @click.option("--repair", is_flag=True, help="Fix what is found.")
    def check_command(repair: bool):
        """Compare the database and the search index; report drift (and repair it with --repair)."""
        app_ = current_app._get_current_object()
        report = search.check_app_index(app_, repair=repair)
        click.echo(report.describe())
        if report.drift and not repair:
            sys.exit(1)

    @app.cli.command("serve", with_appcontext=False)
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=int, default=None, help="Default: KB_PORT or 5000.")
    @click.option("--workers", type=int, default=2, show_default=True)
    @click.option("--threads", type=int, default=1, show_default=True)
    def serve_command(host: str, port: int | None, workers: int, threads: int):
        """Serve with gunicorn (several worker processes)."""
        # Built here, outside any app context: an app context left pushed in the master would be inherited by
        # every request in the workers, sharing `g` (the signed-in user, the CSRF token) between requests.
        from kb import create_app
        from kb.server import serve

        port = port or int(os.environ.get("KB_PORT", "5000"))
        serve(create_app(), host, port, workers, threads)


def _create_app(*_args, **_kwargs):
    from kb import create_app

    return create_app()


cli = FlaskGroup(create_app=_create_app, add_default_commands=False,
                 help="The district knowledge base. Commands: init, import, export, reindex, check, user, token, serve.")


def main() -> None:
    cli(prog_name="kb")
