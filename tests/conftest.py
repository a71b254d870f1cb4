"""Shared fixtures: every test builds its own app on a temporary data directory (no global state)."""
from __future__ import annotations

import functools
import os

import pytest

from kb import create_app, instance
from kb.access import Viewer
from sqlalchemy import select

from kb.models import Page, User
from kb.slugs import slugify

PASSWORD = "correct horse battery staple"
ROLES = ("admin", "curator", "contributor", "reader")


@functools.lru_cache(maxsize=None)
def _password_hash(password: str) -> str:
    # scrypt is deliberately slow; hash the shared test password once per test run.
    from kb.accounts import hash_password

    return hash_password(password)


def _make_app(tmp_path, **overrides):
    config = {
        "TESTING": True,
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "SEARCH_BACKGROUND": False,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'kb.sqlite3'}",
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
def app(tmp_path):
    app = _make_app(tmp_path)
    yield app
    app.extensions["kb_db"].dispose()


@pytest.fixture
def make_app(tmp_path):
    """Build an app with extra config (for CSRF or anonymous-reading tests)."""
    built = []

    def factory(**overrides):
        a = _make_app(tmp_path, **overrides)
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
