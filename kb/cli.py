"""The `kb` command line (also `flask --app kb ...`): set up, import/export, users and tokens, index, serve.

Each command is defined here at module level and added to the app by `init_app`. Commands that change the database
bring its schema up to date first (kb.instance.prepare_database). Only `kb init`, `kb serve` (at start-up, and its
workers in the background), `kb check --repair` and `kb reindex` (a rebuild by definition) repair the search index;
`kb import` indexes what it wrote (building the index if there is none) but leaves damage alone and says so; `kb
check` only reads, and exits 1 on any damage or drift.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

from kb import accounts, instance, search, transfer
from kb.access import Viewer
from kb.errors import KBError
from kb.instance import system_viewer  # noqa: F401  (tests and benchmarks drive imports as the operator)


def _db():
    return current_app.extensions["kb_db"]


class Progress:
    """A one-line progress display on stderr for long runs."""

    def __init__(self, quiet: bool = False):
        shown = sys.stderr.isatty() or current_app.config.get("PROGRESS")
        self.quiet = quiet or not shown
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


def _announce_admin(generated: str | None) -> None:
    if generated:
        click.echo(f"Created the administrator account 'admin' with password: {generated}")
        click.echo("Write it down now: it is shown only this once. Set KB_ADMIN_PASSWORD to choose your own.")


@click.command("init")
@with_appcontext
def init_command():
    """Create or upgrade the database, the admin account and the index; import content/ on first run."""
    report = instance.initialise(current_app._get_current_object(), Progress(), _announce_admin)
    if report is not None:
        click.echo(f"Imported the bundled knowledge base: {report.created} pages, {report.tours} tours.")
    click.echo(f"Ready: data in {current_app.config['DATA_DIR']}")


@click.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@with_appcontext
def import_command(path: Path):
    """Import Markdown pages (and tours/) from PATH. All or nothing."""
    app = current_app._get_current_object()
    instance.prepare_database(app)
    try:
        report = instance.import_content(app, path, Progress(), _announce_admin)
    except KBError as e:
        raise click.ClickException(f"Import failed, nothing was written. {e.message}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"Imported {report.created} new pages, updated {report.updated}, "
               f"{report.unchanged} unchanged; {report.tours} tours.")


@click.command("export")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--as", "as_user", metavar="NAME", help="Export only what this user may read.")
@with_appcontext
def export_command(path: Path, as_user: str | None):
    """Write every page and tour to PATH in the import format."""
    instance.prepare_database(current_app._get_current_object())
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


@click.group("user")
def user_group():
    """Manage accounts."""


@user_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "contributor", "curator", "admin"]), default="reader")
@with_appcontext
def user_add(name: str, role: str):
    """Create an account; the password is read from standard input."""
    instance.prepare_database(current_app._get_current_object())
    password = sys.stdin.readline().rstrip("\n")
    try:
        with _db().writing() as s:
            accounts.create_user(s, name, role, password)
    except KBError as e:
        raise click.ClickException(e.message)
    click.echo(f"Created {role} {name!r}.")


@click.group("token")
def token_group():
    """Manage API tokens."""


@token_group.command("create")
@click.argument("name")
@click.option("--label", default="command line", help="What the token is for.")
@with_appcontext
def token_create(name: str, label: str):
    """Create an API token for user NAME and print it (shown only once)."""
    instance.prepare_database(current_app._get_current_object())
    try:
        with _db().writing() as s:
            token = accounts.create_token(s, accounts.get_user(s, name), label)
    except KBError as e:
        raise click.ClickException(e.message)
    click.echo(token)


@click.command("reindex")
@with_appcontext
def reindex_command():
    """Rebuild the search index from the database into a new directory, then swap it in."""
    app = current_app._get_current_object()
    instance.prepare_database(app)
    count = search.backend_for(app).rebuild(progress=Progress())
    click.echo(f"Reindexed {count} pages.")


@click.command("check")
@click.option("--repair", is_flag=True, help="Fix what is found.")
@with_appcontext
def check_command(repair: bool):
    """Compare the database and the search index: report missing or damaged index files and pages missing, stale or
    extra in the index, with counts, and exit 1 if there are any; --repair fixes them."""
    app = current_app._get_current_object()
    instance.prepare_database(app)
    backend = search.backend_for(app)
    report = backend.check()  # only reads: damage is reported here, and repaired only with --repair
    if repair and not report.ok:
        report = backend.repair(report)
    click.echo(report.describe())
    if not report.ok:
        sys.exit(1)


@click.group("db")
def db_group():
    """The database schema."""


@db_group.command("upgrade")
@with_appcontext
def db_upgrade():
    """Bring the database schema up to date (kb init and kb serve do this too); safe to run again."""
    from kb import schema

    applied = instance.prepare_database(current_app._get_current_object())
    where = schema.where(_db().engine)
    if applied:
        click.echo(f"Upgraded the database {where} to revision {applied[-1]} ({len(applied)} applied).")
    else:
        click.echo(f"The database {where} is up to date (revision {schema.head()}).")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default: KB_PORT or 5000.")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
def serve_command(host: str, port: int | None, workers: int, threads: int):
    """Serve with gunicorn (several worker processes)."""
    # A new app, outside any app context: an app context left pushed in the master would be inherited by
    # every request in the workers, sharing `g` (the signed-in user, the CSRF token) between requests.
    from kb.server import serve

    app = _new_app()
    instance.prepare(app)
    serve(app, host, port or app.config["PORT"], workers, threads)


COMMANDS = (init_command, import_command, export_command, user_group, token_group, reindex_command, check_command,
            db_group, serve_command)


def init_app(app) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


def _new_app():
    """Another app built the way the running command's was: by the factory `main` was given, or (under
    `flask --app kb`) from the same import path."""
    info = click.get_current_context().ensure_object(ScriptInfo)
    if info.create_app is not None:
        return info.create_app()
    return ScriptInfo(app_import_path=info.app_import_path, set_debug_flag=False).load_app()


def main(create_app) -> None:
    """The `kb` command, with apps made by `create_app` (kb.__main__ passes kb.create_app, so that this module,
    which the factory uses to add the commands, does not import the factory)."""
    from kb.config import ConfigError

    cli = FlaskGroup(create_app=lambda *_args, **_kwargs: create_app(), add_default_commands=False,
                     help="The district knowledge base. Commands: init, import, export, reindex, check, user, token, "
                          "db, serve.")
    try:
        cli(prog_name="kb")
    except ConfigError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
