"""Shared fixtures: every test builds its own app on a temporary data directory (no global state)."""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid

import pytest

from kb import create_app, instance
from kb.access import Viewer
from sqlalchemy import select

from kb.models import Page, User
from kb.slugs import slugify

PASSWORD = "correct horse battery staple"
ROLES = ("admin", "curator", "contributor", "reader")

# --- Which database: SQLite files on tmp_path, or a PostgreSQL server (KB_TEST_DATABASE_URL) with a database per
# test, copied from a template made once per run with the schema already at the newest migration.

PG_URL = os.environ.get("KB_TEST_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgres")
DATABASE_FIXTURES = {"app", "make_app", "client", "database_url", "new_database_url"}


def pytest_configure(config):
    config.addinivalue_line("markers", "database: uses the database (runs again on PostgreSQL)")


def pytest_collection_modifyitems(config, items):
    """Mark the tests that use a database; on PostgreSQL run only those (the others ran on the SQLite leg)."""
    kept, dropped = [], []
    for item in items:
        if _uses_database(item):
            item.add_marker(pytest.mark.database)
        (kept if not ON_POSTGRES or item.get_closest_marker("database") else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _uses_database(item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if DATABASE_FIXTURES & names:
        return True
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        # A module-wide fixture that builds its own app or database.
        for d in defs:
            code = getattr(getattr(d, "func", None), "__code__", None)
            if code is not None and {"_make_app", "module_database_url"} & set(code.co_names):
                return True
    return False


class PostgresDatabases:
    """Databases on the test server, named after this run; each is dropped when its test (or the run) ends."""

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        from kb.db import make_engine

        self.url = make_url(url)
        self.engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
        self.prefix = f"kbtest_{os.getpid()}_"
        self.template = None
        self.kept: list[str] = []

    def _url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql(sql)

    def create(self, empty: bool = False) -> tuple[str, str]:
        """(name, URL) of a new database: a copy of the migrated template, or empty."""
        if not empty and self.template is None:
            from kb.db import Database

            name, url = self.create(empty=True)
            db = Database(url)
            db.upgrade()
            db.dispose()  # a template must have no connections while it is copied
            self.template = name
        name = self.prefix + uuid.uuid4().hex[:12]
        self._execute(f'CREATE DATABASE "{name}"' + ("" if empty else f' TEMPLATE "{self.template}"'))
        return name, self._url(name)

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in self.kept + ([self.template] if self.template else []):
            self.drop(name)
        self.engine.dispose()


_PG: PostgresDatabases | None = None
_SQLITE_TEMPLATE: list[str] = []


def _sqlite_template() -> str:
    """A SQLite file with the schema at the newest migration, made once per run (and copied for each test)."""
    if not _SQLITE_TEMPLATE:
        from kb.db import Database

        path = os.path.join(tempfile.mkdtemp(prefix="kb-template-"), "kb.sqlite3")
        db = Database(f"sqlite:///{path}")
        db.upgrade()
        db.dispose()  # the last connection to close checkpoints the WAL into the file
        _SQLITE_TEMPLATE.append(path)
    return _SQLITE_TEMPLATE[0]


def _postgres() -> PostgresDatabases:
    global _PG
    if _PG is None:
        _PG = PostgresDatabases(PG_URL)
    return _PG


@pytest.fixture(scope="session", autouse=True)
def _drop_kept_databases():
    yield
    if _PG is not None:
        _PG.close()
    for path in _SQLITE_TEMPLATE:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def module_database_url(data_dir) -> str:
    """A database for a module-wide fixture (SQLite in `data_dir`), kept until the end of the run."""
    if not ON_POSTGRES:
        os.makedirs(data_dir, exist_ok=True)
        path = os.path.join(data_dir, "kb.sqlite3")
        if not os.path.exists(path):
            shutil.copyfile(_sqlite_template(), path)
        return f"sqlite:///{path}"
    name, url = _postgres().create()
    _postgres().kept.append(name)
    return url


@pytest.fixture
def new_database_url(tmp_path):
    """new_database_url(name, empty=False): the URL of another database for this test, dropped after it. On
    PostgreSQL its schema is already at the newest migration unless `empty`; a SQLite file starts empty."""
    made = []

    def factory(name: str = "kb", empty: bool = False) -> str:
        if not ON_POSTGRES:
            path = tmp_path / "data" / "kb.sqlite3" if name == "kb" else tmp_path / f"{name}.sqlite3"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not empty and not path.exists():
                shutil.copyfile(_sqlite_template(), path)
            return f"sqlite:///{path}"
        db_name, url = _postgres().create(empty)
        made.append(db_name)
        return url

    yield factory
    for db_name in made:
        _postgres().drop(db_name)


@pytest.fixture
def database_url(new_database_url):
    """The URL of this test's own database (the one the `app` fixture uses)."""
    return new_database_url("kb")


@functools.lru_cache(maxsize=None)
def _password_hash(password: str) -> str:
    # scrypt is deliberately slow; hash the shared test password once per test run.
    from kb.accounts import hash_password

    return hash_password(password)


def _make_app(tmp_path, database_url: str | None = None, **overrides):
    if database_url is None:  # a module-wide app
        database_url = module_database_url(tmp_path / "data")
    config = {
        "TESTING": True,
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "SEARCH_BACKGROUND": False,
        "DATABASE_URL": database_url,
    }
    config.update(overrides)
    os.makedirs(config["DATA_DIR"], exist_ok=True)
    app = create_app(config)
    instance.prepare(app)
    with app.extensions["kb_db"].writing() as s:
        for role in ROLES:
            s.add(User(name=role, role=role, display_name=role.capitalize(), password_hash=_password_hash(PASSWORD)))
    return app


@pytest.fixture
def app(tmp_path, database_url):
    app = _make_app(tmp_path, database_url)
    yield app
    app.extensions["kb_db"].dispose()


@pytest.fixture
def make_app(tmp_path, database_url):
    """Build an app with extra config (for CSRF or anonymous-reading tests); all share this test's database unless
    given another DATABASE_URL."""
    built = []

    def factory(**overrides):
        a = _make_app(tmp_path, database_url, **overrides)
        built.append(a)
        return a

    yield factory
    for a in built:
        a.extensions["kb_db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, name: str = "admin", password: str = PASSWORD):
        return self._client.post("/login", data={"name": name, "password": password})

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


def viewer_for(app, name: str) -> Viewer:
    with app.extensions["kb_db"].reading() as s:
        user = s.scalar(select(User).where(User.name == name))
        return Viewer(user.id, user.name, user.role)


@pytest.fixture
def make_page(app):
    """Save a page through the domain layer, as a given user; returns its slug."""
    from kb import pages, search

    def factory(title: str, kind: str = "page", fields: dict | None = None, tags: list | None = None,
                visibility: str = "public", readers: list | None = None, body: str = "", sources: list | None = None,
                as_user: str = "admin", slug: str | None = None) -> str:
        viewer = viewer_for(app, as_user)
        with app.extensions["kb_db"].writing() as s:
            existing = s.scalar(select(Page).where(Page.slug == (slug or slugify(title))))
            page, _ = pages.save_page(
                s, viewer, slug,
                pages.PageState(title=title, kind=kind, fields=fields or {}, tags=tags or [], visibility=visibility,
                                readers=readers or [], sources=sources or [], body=body),
                existing.revision if existing else None, "test")
            result = page.slug
        search.kick(app)
        return result

    return factory


# --- Browser tests: the app served on a real port, driven by Debian's Chromium through Playwright. ---

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


class LiveServer:
    """The app on 127.0.0.1 with a free port, in a thread; `url(path)` builds addresses."""

    def __init__(self, app):
        import threading

        from werkzeug.serving import make_server

        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return self.base + path

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture
def live_server(app):
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = os.environ.get("KB_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(executable):
        pytest.fail(f"Chromium is not installed at {executable}; scripts/test installs it")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh browser tab (own cookies) per test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def browser_login(page, live: LiveServer, name: str, password: str = PASSWORD) -> None:
    page.goto(live.url("/login"))
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/login" not in u)


# --- At the end of a run: how many browser tests ran (scripts/test may leave them out, and says why). ---

def pytest_terminal_summary(terminalreporter, exitstatus, config):
    ran, passed, failed, skipped = set(), set(), set(), set()
    for outcome, reports in terminalreporter.stats.items():
        for report in reports:
            if "browser" not in getattr(report, "keywords", {}) or not hasattr(report, "when"):
                continue
            if report.when == "call":
                ran.add(report.nodeid)
            if report.failed:
                failed.add(report.nodeid)
            elif report.skipped:
                skipped.add(report.nodeid)
            elif report.when == "call" and report.passed:
                passed.add(report.nodeid)
    deselected = [item for item in terminalreporter.stats.get("deselected", []) if item.get_closest_marker("browser")]
    line = (f"browser tests: {len(ran)} ran, {len(passed - failed)} passed, {len(failed)} failed"
            + (f", {len(skipped - failed)} skipped" if skipped - failed else "")
            + (f", {len(deselected)} deselected" if deselected else ""))
    terminalreporter.write_sep("-", "browser tests")
    terminalreporter.write_line(line, red=bool(failed), yellow=not ran and not failed, green=bool(ran) and not failed)
    reason = os.environ.get("KB_BROWSER_TESTS_SKIPPED")
    if reason:
        terminalreporter.write_line(f"browser tests were left out: {reason}", yellow=True)
