"""Security around the requests: CSRF, redirects after sign-in, sessions, sign-in throttling, headers and logs."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import PASSWORD, _make_app, viewer_for
from kb import accounts, create_app
from kb.models import ApiToken, Page, SignInFailure, User, utcnow
from kb.web.logs import redact
from kb.web.security import SECURITY_HEADERS, is_safe_next

ROOT = Path(__file__).resolve().parent.parent


def csrf_token_from(response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "the form has no CSRF token"
    return match.group(1)


def login_with_csrf(client, name: str, password: str = PASSWORD):
    token = csrf_token_from(client.get("/login"))
    r = client.post("/login", data={"name": name, "password": password, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return r


def signed_in(client) -> bool:
    return client.get("/account").status_code == 200


# --- CSRF -------------------------------------------------------------------------------------------------


def _count(app, model, *where) -> int:
    with app.extensions["kb_db"].reading() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _page_revision(app, slug: str):
    with app.extensions["kb_db"].reading() as s:
        return s.scalar(select(Page.revision).where(Page.slug == slug, Page.deleted_at.is_(None)))


def _user(app, name: str) -> User | None:
    with app.extensions["kb_db"].reading() as s:
        return s.scalar(select(User).where(User.name == name))


def _password_works(app, name, password) -> bool:
    with app.extensions["kb_db"].reading() as s:
        return accounts.authenticate(s, name, password) is not None


# Each case: (who signs in, method, path, form data, a check that nothing changed).
CSRF_CASES = {
    "create page": ("contributor", "post", "/new?kind=page", {"title": "Forged Page", "body": "x"},
                    lambda app: _page_revision(app, "forged-page") is None),
    "edit page": ("contributor", "post", "/wiki/open-target/edit",
                  {"title": "Open Target", "body": "forged", "base_revision": "1"},
                  lambda app: _page_revision(app, "open-target") == 1),
    "delete page": ("curator", "post", "/wiki/open-target/delete", {},
                    lambda app: _page_revision(app, "open-target") == 1),
    "rename page": ("contributor", "post", "/wiki/open-target/rename", {"title": "Forged", "base_revision": "1"},
                    lambda app: _page_revision(app, "open-target") == 1),
    "revert page": ("contributor", "post", "/wiki/open-target/revert/1", {"base_revision": "1"},
                    lambda app: _page_revision(app, "open-target") == 1),
    "api write with cookie": ("contributor", "put", "/api/pages/forged-page", {"title": "Forged Page"},
                              lambda app: _page_revision(app, "forged-page") is None),
    "sign out": ("reader", "post", "/logout", {}, None),
    "create token": ("reader", "post", "/account/tokens", {"name": "forged"},
                     lambda app: _count(app, ApiToken) == 0),
    "change password": ("reader", "post", "/account/password",
                        {"current_password": PASSWORD, "new_password": "forged password 123",
                         "confirm_password": "forged password 123"},
                        lambda app: _password_works(app, "reader", PASSWORD)),
    "create user": ("admin", "post", "/admin/users", {"name": "mallory", "role": "admin", "password": "x" * 20},
                    lambda app: _user(app, "mallory") is None),
    "invite": ("admin", "post", "/admin/invitations", {"name": "mallory", "role": "admin"},
               lambda app: _count(app, accounts.Invitation) == 0),
    "change role": ("admin", "post", "/admin/users/reader/role", {"role": "admin"},
                    lambda app: _user(app, "reader").role == "reader"),
    "deactivate": ("admin", "post", "/admin/users/reader/deactivate", {},
                   lambda app: _user(app, "reader").active),
    "sign in": (None, "post", "/login", {"name": "reader", "password": PASSWORD}, None),
}


FORGED_TOKEN_CASES = ["edit page", "api write with cookie", "sign out", "change role", "sign in"]


@pytest.fixture(scope="module")
def csrf_app(tmp_path_factory):
    """One app with CSRF on, shared by the cases below: every one of them must change nothing."""
    from kb import pages

    app = _make_app(tmp_path_factory.mktemp("csrf"), WTF_CSRF_ENABLED=True)
    with app.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer_for(app, "admin"), None, pages.PageState(title="Open Target", body="hello"), None)
    app.signed_in_clients = {}
    yield app
    app.extensions["kb_db"].dispose()


def _client_for(app, who):
    if who is None:
        return app.test_client()
    if who not in app.signed_in_clients:
        client = app.test_client()
        login_with_csrf(client, who)
        app.signed_in_clients[who] = client
    return app.signed_in_clients[who]


@pytest.mark.parametrize("case, bad_token", [(c, None) for c in CSRF_CASES]
                         + [(c, "forged-token") for c in FORGED_TOKEN_CASES])
def test_post_without_csrf_token_gets_400_and_changes_nothing(csrf_app, case, bad_token):
    who, method, path, data, unchanged = CSRF_CASES[case]
    client = _client_for(csrf_app, who)
    data = dict(data)
    if bad_token:
        data["csrf_token"] = bad_token
    if method == "put":
        r = client.put(path, json=data, headers={"X-CSRFToken": bad_token} if bad_token else {})
    else:
        r = client.post(path, data=data)
    assert r.status_code == 400, f"{case}: {r.status_code}"
    if unchanged is not None:
        assert unchanged(csrf_app), f"{case}: something changed"
    if who:
        assert signed_in(client), f"{case}: the session should be untouched"
    else:
        assert not signed_in(client), "a forged sign-in must not sign anyone in"


def test_json_errors_for_csrf_failures_on_the_api(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    login_with_csrf(client, "contributor")
    r = client.put("/api/pages/forged", json={"title": "Forged"})
    assert r.status_code == 400
    assert r.is_json and set(r.get_json()) == {"error", "details"}


def test_forms_with_the_token_work_and_bearer_api_calls_need_no_csrf_token(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    login_with_csrf(client, "contributor")
    token_page = client.get("/account")
    r = client.post("/account/tokens", data={"name": "script", "csrf_token": csrf_token_from(token_page)})
    assert r.status_code == 201
    api_token = re.search(r"kb_[A-Za-z0-9_-]+", r.get_data(as_text=True)).group(0)
    fresh = app.test_client()
    r = fresh.put("/api/pages/scripted", json={"title": "Scripted", "body": "from a script"},
                  headers={"Authorization": f"Bearer {api_token}"})
    assert r.status_code == 201
    # A cookie API write with the token from the page's meta tag works too (that is what site.js sends).
    meta = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/account").get_data(as_text=True)).group(1)
    r = client.put("/api/pages/from-browser", json={"title": "From Browser"}, headers={"X-CSRFToken": meta})
    assert r.status_code == 201


# --- where sign-in sends you -------------------------------------------------------------------------------

BAD_NEXT = ["//evil.com", "/\\evil.com", "https:evil.com", "https://evil.com", "javascript:alert(1)",
            "%2F%2Fevil.com", "/%5Cevil.com", "%252F%252Fevil.com", "\\/evil.com",
            # and a few more shapes browsers are known to treat as another host
            "http://evil.com/wiki", "///evil.com", "/\t/evil.com", "/%09/evil.com", "/%2F/evil.com", " //evil.com",
            "HTTPS://evil.com", "data:text/html,hi", "/\\/evil.com", "%5C%5Cevil.com"]


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    """An app for tests that only sign in and read, so they need not each build one."""
    app = _make_app(tmp_path_factory.mktemp("shared"))
    yield app
    app.extensions["kb_db"].dispose()


@pytest.mark.parametrize("target", BAD_NEXT)
def test_bad_next_is_refused_after_sign_in(shared_app, target):
    client = shared_app.test_client()
    r = client.post("/login", data={"name": "reader", "password": PASSWORD, "next": target})
    assert r.status_code == 302
    location = urllib.parse.urlsplit(r.headers["Location"])
    assert location.netloc in ("", "localhost") and location.path == "/", f"{target!r} sent us to {r.headers['Location']}"
    assert "evil" not in r.headers["Location"]


@pytest.mark.parametrize("target", BAD_NEXT)
def test_bad_next_is_not_put_in_the_sign_in_form(shared_app, target):
    r = shared_app.test_client().get("/login", query_string={"next": target})
    assert 'name="next"' not in r.get_data(as_text=True)
    assert not is_safe_next(target)


@pytest.mark.parametrize("target", ["/wiki/open-target", "/wiki/open-target/history?x=1", "/account", "/",
                                    "/search?q=writing%20assessment"])
def test_good_next_is_kept(shared_app, target):
    client = shared_app.test_client()
    assert is_safe_next(target)
    page = client.get("/login", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next"' in page
    r = client.post("/login", data={"name": "reader", "password": PASSWORD, "next": target})
    assert r.headers["Location"] == target


def test_sign_in_from_a_protected_page_comes_back_to_it(client, make_page):
    make_page("Open Target")
    r = client.get("/wiki/open-target")
    assert r.status_code == 302 and urllib.parse.urlsplit(r.headers["Location"]).path == "/login"
    next_value = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["next"][0]
    r = client.post("/login", data={"name": "reader", "password": PASSWORD, "next": next_value})
    assert r.headers["Location"] == "/wiki/open-target"


# --- sessions ------------------------------------------------------------------------------------------------


def _session_cookie(client):
    return client.get_cookie("session")


def test_replaying_the_session_cookie_after_logout_is_refused(app, client, auth):
    auth.login("reader")
    stolen = _session_cookie(client).value
    assert signed_in(client)
    auth.logout()
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    assert not signed_in(replay)
    assert replay.get("/api/pages").status_code == 401


def test_replaying_the_remember_me_cookie_after_logout_is_refused(app, client):
    client.post("/login", data={"name": "reader", "password": PASSWORD, "remember": "1"})
    remember = client.get_cookie("remember_token")
    assert remember is not None and remember.http_only
    client.post("/logout")
    replay = app.test_client()
    replay.set_cookie("remember_token", remember.value)
    assert not signed_in(replay)


def test_sign_in_starts_a_fresh_session(client):
    client.get("/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    before = _session_cookie(client).value
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    with client.session_transaction() as sess:
        assert "planted" not in sess
    assert _session_cookie(client).value != before


def test_session_and_remember_cookies_are_httponly_and_samesite_lax(client):
    r = client.post("/login", data={"name": "reader", "password": PASSWORD, "remember": "1"})
    cookies = r.headers.getlist("Set-Cookie")
    assert cookies
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie, cookie
        assert "Secure" not in cookie  # plain HTTP on a laptop must keep working


def test_cookies_are_secure_over_https(client):
    r = client.post("/login", data={"name": "reader", "password": PASSWORD, "remember": "1"},
                    base_url="https://localhost")
    cookies = r.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c for c in cookies), cookies
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


def test_cookies_are_secure_behind_a_trusted_https_proxy(make_app):
    app = make_app(PROXY_FIX=1)
    r = app.test_client().post("/login", data={"name": "reader", "password": PASSWORD},
                               headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert all("Secure" in c for c in r.headers.getlist("Set-Cookie"))


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(client):
    r = client.post("/login", data={"name": "reader", "password": PASSWORD}, headers={"X-Forwarded-Proto": "https"})
    assert not any("Secure" in c for c in r.headers.getlist("Set-Cookie"))


def test_secure_cookies_can_be_required(make_app):
    app = make_app(SECURE_COOKIES=True)
    r = app.test_client().post("/login", data={"name": "reader", "password": PASSWORD})
    assert all("Secure" in c for c in r.headers.getlist("Set-Cookie"))


# --- sign-in throttling ---------------------------------------------------------------------------------------


@pytest.fixture
def quick_throttle(monkeypatch):
    """Fewer free failures, so the tests hash fewer wrong passwords (scrypt is slow on purpose)."""
    monkeypatch.setitem(accounts.FREE_FAILURES, "account", 2)
    monkeypatch.setitem(accounts.FREE_FAILURES, "address", 3)


def attempt(client, name: str, password: str, address: str = "198.51.100.7"):
    return client.post("/login", data={"name": name, "password": password}, environ_base={"REMOTE_ADDR": address})


def test_repeated_failures_make_you_wait_even_with_the_right_password(client, quick_throttle):
    for _ in range(accounts.FREE_FAILURES["account"]):
        assert attempt(client, "reader", "wrong password!!").status_code == 401
    r = attempt(client, "reader", PASSWORD)
    assert r.status_code == 429
    assert "wait" in r.get_data(as_text=True)
    assert int(r.headers["Retry-After"]) >= 1
    assert not signed_in(client)


def test_waits_grow_and_then_pass_with_no_permanent_lock(app, quick_throttle):
    keys = accounts.throttle_keys("reader", "198.51.100.7")
    start = utcnow()
    free = accounts.FREE_FAILURES["account"]
    with app.extensions["kb_db"].writing() as s:
        for i in range(free + 3):
            accounts.record_sign_in_failure(s, keys, start)
        waits = [accounts.sign_in_wait(s, keys, start)]
        accounts.record_sign_in_failure(s, keys, start)
        waits.append(accounts.sign_in_wait(s, keys, start))
        assert waits[1] > waits[0] > 0
        assert accounts.sign_in_wait(s, keys, start + accounts.MAX_WAIT) == 0
        # However many failures, the wait never exceeds MAX_WAIT.
        for _ in range(40):
            accounts.record_sign_in_failure(s, keys, start)
        assert accounts.sign_in_wait(s, keys, start) <= accounts.MAX_WAIT.total_seconds()
        later = start + accounts.MAX_WAIT + timedelta(seconds=1)
        result = accounts.sign_in(s, "reader", PASSWORD, "198.51.100.7", later)
        assert result.user is not None and result.user.name == "reader"
        # Success clears the account's counter; the address counter only fades with time.
        assert s.get(SignInFailure, keys[0]) is None
        assert s.get(SignInFailure, keys[1]) is not None


def test_one_address_trying_many_accounts_is_throttled(client, quick_throttle):
    for i in range(3):
        assert attempt(client, f"nobody{i}", "wrong password!!").status_code == 401
    assert attempt(client, "reader", PASSWORD).status_code == 429
    # Another address is not held up by it.
    assert attempt(client, "reader", PASSWORD, address="192.0.2.50").status_code == 302


def test_one_account_attacked_from_many_addresses_is_throttled(client, quick_throttle):
    for i in range(accounts.FREE_FAILURES["account"]):
        attempt(client, "reader", "wrong password!!", address=f"192.0.2.{i + 1}")
    assert attempt(client, "reader", PASSWORD, address="192.0.2.200").status_code == 429


def test_unknown_and_real_accounts_are_throttled_alike(client, quick_throttle):
    """Throttling must not reveal which names exist."""
    statuses = {}
    for name in ("reader", "no-such-person"):
        seen = [attempt(client, name, "wrong password!!", address=f"203.0.113.{len(name)}").status_code
                for _ in range(accounts.FREE_FAILURES["account"] + 1)]
        statuses[name] = seen
    assert statuses["reader"] == statuses["no-such-person"]
    assert statuses["reader"][-1] == 429


def test_parallel_guesses_cannot_get_past_the_limit(app, monkeypatch):
    """Each attempt is counted before its password is checked, so guesses sent all at once still queue up."""
    import threading

    monkeypatch.setattr(accounts, "_wait_after",
                        lambda kind, failures: accounts.MAX_WAIT if failures >= 2 else timedelta(0))
    statuses: list[int] = []

    def guess(i: int) -> None:
        r = attempt(app.test_client(), "reader", f"guess number {i:04d}")
        statuses.append(r.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [401, 401] + [429] * 6


def _second_app(app):
    """Another app (as another server process would build) on the same database."""
    return create_app({"TESTING": True, "DATA_DIR": app.config["DATA_DIR"], "SECRET_KEY": "test-secret",
                       "WTF_CSRF_ENABLED": False, "SEARCH_BACKGROUND": False,
                       "DATABASE_URL": app.config["DATABASE_URL"]})


def test_throttling_holds_across_two_apps_on_one_database(app, tmp_path, quick_throttle):
    other = _second_app(app)
    try:
        clients = [app.test_client(), other.test_client()]
        for i in range(accounts.FREE_FAILURES["account"]):
            assert attempt(clients[i % 2], "reader", "wrong password!!").status_code == 401
        assert attempt(clients[1], "reader", PASSWORD).status_code == 429
        assert attempt(clients[0], "reader", PASSWORD).status_code == 429
    finally:
        other.extensions["kb_db"].dispose()


SERVER_SCRIPT = """
import sys
from werkzeug.serving import make_server
from kb import create_app, instance
data, url = sys.argv[1], sys.argv[2]
app = create_app({"DATA_DIR": data, "SECRET_KEY": "test-secret", "WTF_CSRF_ENABLED": False,
                  "SEARCH_BACKGROUND": False, "DATABASE_URL": url})
instance.prepare(app)
server = make_server("127.0.0.1", 0, app)
print(server.server_port, flush=True)
server.serve_forever()
"""


def _start_server(data_dir: str, url: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), KB_ANONYMOUS_READ="")
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, data_dir, url], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout


def _post_login(base: str, name: str, password: str) -> int:
    data = urllib.parse.urlencode({"name": name, "password": password}).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(base + "/login", data=data), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def test_throttling_holds_when_two_server_processes_are_attacked_in_turn(app):
    data_dir = app.config["DATA_DIR"]
    procs = [_start_server(data_dir, app.config["DATABASE_URL"]) for _ in range(2)]
    try:
        bases = []
        for proc, out in procs:
            line = out.readline().strip()
            assert line.isdigit(), "a server process did not start"
            bases.append(f"http://127.0.0.1:{line}")
        for i in range(accounts.FREE_FAILURES["account"]):
            assert _post_login(bases[i % 2], "reader", "wrong password!!") == 401
        assert _post_login(bases[1], "reader", PASSWORD) == 429
        assert _post_login(bases[0], "reader", PASSWORD) == 429
        with app.extensions["kb_db"].reading() as s:
            row = s.get(SignInFailure, "account:reader")
            assert row is not None and row.failures == accounts.FREE_FAILURES["account"]
    finally:
        for proc, out in procs:
            proc.terminate()
            proc.wait(timeout=10)
            out.close()


# --- headers on every response -----------------------------------------------------------------------------


def assert_security_headers(response, what: str) -> None:
    h = response.headers
    csp = h.get("Content-Security-Policy", "")
    assert csp, f"{what}: no Content-Security-Policy"
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    script = directives.get("script-src", directives.get("default-src"))
    assert script and "'unsafe-inline'" not in script and "'unsafe-eval'" not in script, f"{what}: {csp}"
    assert directives.get("frame-ancestors") == ["'none'"], f"{what}: {csp}"
    assert directives.get("object-src") == ["'none'"]
    assert h.get("X-Content-Type-Options") == "nosniff", what
    assert h.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin-when-cross-origin"), what
    assert h.get("X-Frame-Options") == "DENY", what


@pytest.fixture
def crashing_app(make_app):
    app = make_app()

    @app.route("/crash")
    def crash():
        raise RuntimeError("boom")

    @app.route("/api/crash")
    def api_crash():
        raise RuntimeError("boom")

    return app


@pytest.mark.parametrize("method, path, status, signed_in_as", [
    ("get", "/login", 200, None),                       # HTML
    ("get", "/", 302, None),                            # redirect
    ("get", "/api/pages", 200, "reader"),               # JSON
    ("get", "/api/pages", 401, None),                   # JSON error
    ("get", "/api/pages/nothing-here", 404, "reader"),  # JSON 404
    ("get", "/wiki/nothing-here/raw", 404, "reader"),   # HTML 404
    ("get", "/no/such/address", 404, None),             # routing 404
    ("post", "/wiki", 405, "reader"),                   # 405
    ("get", "/crash", 500, "reader"),                   # HTML 500
    ("get", "/api/crash", 500, "reader"),               # JSON 500
    ("get", "/static/css/site.css", 200, None),         # static
    ("get", "/static/js/site.js", 200, None),
    ("get", "/static/no-such-file.css", 404, None),
    ("get", "/account", 200, "reader"),
    ("get", "/admin/", 404, "reader"),
])
def test_security_headers_on_every_kind_of_response(crashing_app, method, path, status, signed_in_as):
    client = crashing_app.test_client()
    if signed_in_as:
        client.post("/login", data={"name": signed_in_as, "password": PASSWORD})
    r = getattr(client, method)(path)
    r.close()
    assert r.status_code == status
    assert_security_headers(r, f"{method.upper()} {path}")
    if path.startswith("/static/"):
        assert r.headers.get("Cache-Control") != "no-store"
    else:
        assert r.headers.get("Cache-Control") == "no-store"


def test_security_headers_on_throttled_sign_in(client, quick_throttle):
    for _ in range(accounts.FREE_FAILURES["account"] + 1):
        r = attempt(client, "reader", "wrong password!!")
    assert r.status_code == 429
    assert_security_headers(r, "429")


def test_security_headers_on_csrf_refusal(make_app):
    csrf_app = make_app(WTF_CSRF_ENABLED=True)
    r = csrf_app.test_client().post("/login", data={"name": "reader", "password": PASSWORD})
    assert r.status_code == 400
    assert_security_headers(r, "CSRF 400")


def test_crash_page_reveals_nothing_about_the_error(crashing_app):
    client = crashing_app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    r = client.get("/api/crash")
    assert r.get_json()["error"] and "boom" not in r.get_data(as_text=True)


TEMPLATES = ROOT / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.I)


@pytest.mark.parametrize("template", sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html")))
def test_templates_need_no_inline_script_or_style(template):
    """The CSP forbids inline script and style; a template that used them would break in the browser."""
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    assert not INLINE_SCRIPT.search(text), f"{template}: inline <script>"
    assert not EVENT_HANDLER.search(text), f"{template}: an on...= event handler attribute"
    assert not STYLE_ATTRIBUTE.search(text), f"{template}: a style= attribute (blocked by style-src 'self')"
    assert "javascript:" not in text.lower(), f"{template}: a javascript: URL"


def test_csp_names_only_this_site():
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "http" not in csp and "*" not in csp  # no CDN, no third-party origin


# --- logs ---------------------------------------------------------------------------------------------------


def test_redaction_removes_passwords_and_tokens():
    line = ('127.0.0.1 "GET /invite/AbC-123_xyz HTTP/1.1" 200; GET /recent.atom?token=s3cr3t&x=1; '
            'Authorization: Bearer kb_abcdefghijklmnopqrstuvwxyz; password=hunter2hunter2; '
            'kb_ZYXWVUTSRQPONMLKJIHGFEDCBA0123')
    out = redact(line)
    for secret in ("AbC-123_xyz", "s3cr3t", "kb_abcdefghijklmnopqrstuvwxyz", "hunter2hunter2",
                   "kb_ZYXWVUTSRQPONMLKJIHGFEDCBA0123"):
        assert secret not in out
    assert "/invite/[redacted]" in out and "x=1" in out


def test_each_kind_of_secret_is_redacted_in_any_case():
    """redact() lets through, after one quick search, lines holding none of its patterns' words; no kind of secret,
    in any case, may slip past that search."""
    samples = {"GET /invite/AbC-123": "AbC-123", "Authorization: BEARER Xy7zQ": "Xy7zQ",
               "x?Feed_Token=Fe3dT&y=1": "Fe3dT", "PassWord=Hu2nt": "Hu2nt", "passwd=Pw9dQ": "Pw9dQ",
               "SECRET=Se4cR": "Se4cR", "api_key=Ak5eY": "Ak5eY", "CSRF_TOKEN=Cs6rF": "Cs6rF",
               "kb_ABCDEFGHIJKLMNOPQRST": "ABCDEFGHIJKLMNOPQRST", "my_secret_token=Mt8kN": "Mt8kN"}
    for sample, secret in samples.items():
        assert secret not in redact(sample), sample


@pytest.mark.parametrize("logger_name", ["werkzeug", "gunicorn.access", "gunicorn.error", "kb"])
def test_server_loggers_redact_secrets(app, caplog, logger_name):
    caplog.set_level(logging.INFO, logger=logger_name)
    logger = logging.getLogger(logger_name)
    logger.info('"%s %s" %s', "GET", "/invite/SeCrEtInViTe123", 200)
    logger.info("%(U)s?%(q)s", {"U": "/recent.atom", "q": "token=FeEdToKeN999"})
    assert "SeCrEtInViTe123" not in caplog.text and "FeEdToKeN999" not in caplog.text


def test_no_password_or_token_reaches_any_log(app, client, auth, caplog, quick_throttle):
    caplog.set_level(logging.DEBUG)
    secret_password = "hunter2 is my password"
    attempt(client, "reader", secret_password)
    for _ in range(accounts.FREE_FAILURES["account"] + 1):  # the last one is throttled, and logged
        attempt(client, secret_password, secret_password)
    auth.login("admin")
    r = client.post("/admin/invitations", data={"name": "newcomer", "role": "reader"})
    invite = re.search(r"/invite/([A-Za-z0-9_-]+)", r.get_data(as_text=True)).group(1)
    r = client.post("/account/tokens", data={"name": "script"})
    token = re.search(r"kb_[A-Za-z0-9_-]+", r.get_data(as_text=True)).group(0)
    app.test_client().get("/api/pages", headers={"Authorization": f"Bearer {token}"})
    app.test_client().post(f"/invite/{invite}", data={"password": "short", "confirm_password": "short"})
    app.logger.error("request to /invite/%s failed with Bearer %s", invite, token)
    for secret in (secret_password, invite, token):
        assert secret not in caplog.text


def test_invitation_and_token_secrets_are_not_stored_in_clear(app, client, auth):
    auth.login("admin")
    r = client.post("/admin/invitations", data={"name": "newcomer", "role": "reader"})
    invite = re.search(r"/invite/([A-Za-z0-9_-]+)", r.get_data(as_text=True)).group(1)
    token = re.search(r"kb_[A-Za-z0-9_-]+", client.post("/account/tokens", data={"name": "x"})
                      .get_data(as_text=True)).group(0)
    db = app.extensions["kb_db"]
    if db.engine.dialect.name == "sqlite":
        db_file = Path(db.engine.url.database)
        db.dispose()
        raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    else:  # every row of every table, as text
        from kb.models import Base

        with db.engine.connect() as conn:
            raw = "".join(str(conn.exec_driver_sql(f'SELECT t::text FROM "{name}" t').all())
                          for name in Base.metadata.tables).encode()
    assert invite.encode() not in raw and token.encode() not in raw


def test_throttle_log_line_names_no_account(client, caplog, quick_throttle):
    caplog.set_level(logging.DEBUG)
    typed_in_name_field = "my password typed here"
    for _ in range(accounts.FREE_FAILURES["account"] + 1):
        attempt(client, typed_in_name_field, "x")
    assert "throttled" in caplog.text
    assert typed_in_name_field not in caplog.text


def test_static_files_are_served_with_their_own_type(client):
    """nosniff needs the right Content-Type on CSS and JS, or browsers refuse them."""
    with client.get("/static/css/site.css") as css, client.get("/static/js/site.js") as js:
        assert css.mimetype == "text/css"
        assert js.mimetype in ("text/javascript", "application/javascript")

