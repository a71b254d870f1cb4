"""The production server: `kb init` then `kb serve` with two worker processes, spoken to over real HTTP."""
from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.bench import free_port, wait_for
from conftest import module_database_url

KB = str(Path(sys.executable).parent / "kb")
ADMIN_PASSWORD = "served-admin-password"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    home = tmp_path_factory.mktemp("home")
    env = dict(os.environ, KB_DATA_DIR=str(data), KB_ADMIN_PASSWORD=ADMIN_PASSWORD, HOME=str(home),
               KB_DATABASE_URL=module_database_url(data))
    env.pop("XDG_RUNTIME_DIR", None)
    init = subprocess.run([KB, "init"], env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    assert "Imported the bundled knowledge base" in init.stdout
    again = subprocess.run([KB, "init"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Imported" not in again.stdout  # idempotent: nothing imported twice
    port = free_port()
    log = open(data / "serve.log", "wb")  # the access log goes to standard output
    proc = subprocess.Popen([KB, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=log, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, "/healthz")
        yield port, env
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def request(port, method, path, body=None, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read().decode("utf-8")


def sign_in(port, name, password):
    status, headers, page = request(port, "GET", "/login")
    assert status == 200 and "Set-Cookie" in headers, "the sign-in form must start a session"
    cookie = headers["Set-Cookie"].split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    status, headers, _ = request(port, "POST", "/login", f"csrf_token={token}&name={name}&password={password}", cookie)
    assert status == 302, status
    return headers["Set-Cookie"].split(";")[0]


def test_health_and_bundled_content_are_served(served):
    port, _ = served
    status, _, body = request(port, "GET", "/healthz")
    assert status == 200 and json.loads(body)["database"] is True
    cookie = sign_in(port, "admin", ADMIN_PASSWORD)
    status, _, page = request(port, "GET", "/wiki/writing-assessment-case", cookie=cookie)
    assert status == 200 and "amalgam" in page


def test_requests_in_the_workers_do_not_share_who_is_signed_in(served):
    port, env = served
    subprocess.run([KB, "user", "add", "second", "--role", "reader"], env=env, input="second-user-password\n",
                   text=True, check=True, capture_output=True)
    admin = sign_in(port, "admin", ADMIN_PASSWORD)
    reader = sign_in(port, "second", "second-user-password")
    for _ in range(6):  # several requests, so both workers answer both users
        assert "+ New page" in request(port, "GET", "/", cookie=admin)[2]
        assert "+ New page" not in request(port, "GET", "/", cookie=reader)[2]
        status, headers, _ = request(port, "GET", "/")
        assert status == 302 and headers["Location"] == "/login?next=/"


def test_stored_page_views_follow_a_change_made_in_another_process(served):
    """Both workers serve stored views; a save (in whichever worker) shows up in every worker's next view."""
    port, env = served
    token = subprocess.run([KB, "token", "create", "admin"], env=env, capture_output=True, text=True,
                           check=True).stdout.strip()

    def put(body, base):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("PUT", "/api/pages/stored-view-check",
                     body=json.dumps({"title": "Stored view check", "body": body, "base_revision": base}),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status in (200, 201), r.status

    put("First text. See [[Writing assessment case]].", None)
    cookie = sign_in(port, "admin", ADMIN_PASSWORD)
    pages = [request(port, "GET", "/wiki/stored-view-check", cookie=cookie)[2] for _ in range(6)]
    assert all("First text." in p for p in pages)
    assert all(re.search(r'name="csrf_token" value="[^"]{20,}"', p) for p in pages)
    assert "kb-csrf-" not in "".join(pages)  # forms carry real tokens, never the stored mark
    backlinks = request(port, "GET", "/wiki/writing-assessment-case", cookie=cookie)[2].split("What links here")[1]
    assert "/wiki/stored-view-check" in backlinks
    put("Second text.", 1)
    for _ in range(6):  # whichever worker answers, it has seen the change
        page = request(port, "GET", "/wiki/stored-view-check", cookie=cookie)[2]
        assert "Second text." in page and "First text." not in page
        backlinks = request(port, "GET", "/wiki/writing-assessment-case", cookie=cookie)[2].split("What links here")[1]
        assert "/wiki/stored-view-check" not in backlinks


def test_the_access_log_has_a_line_per_request_without_secrets(served):
    port, env = served
    request(port, "GET", "/healthz")
    request(port, "GET", "/invite/SeCrEtInViTe123")
    request(port, "GET", "/recent.atom?token=FeEdToKeN999")
    request(port, "GET", "/wiki/a%22b%0Ac%C3%85d")  # a quote, a line break, and "Å" (whose UTF-8 holds \x85)
    log = Path(env["KB_DATA_DIR"], "serve.log")
    for _ in range(50):  # each worker writes its line after answering
        text = log.read_text()
        if "/recent.atom" in text and "/wiki/a" in text:
            break
        time.sleep(0.1)
    lines = text.splitlines()
    assert any(re.fullmatch(r'127\.0\.0\.1 "GET /healthz" 200 \d+ \d+ms', line) for line in lines), lines[-5:]
    assert any(re.fullmatch(r'127\.0\.0\.1 "GET /invite/\[redacted\]" \d{3} \d+ \d+ms', line) for line in lines)
    assert any(re.fullmatch(r'127\.0\.0\.1 "GET /recent\.atom" \d{3} \d+ \d+ms', line) for line in lines)
    assert "SeCrEtInViTe123" not in text and "FeEdToKeN999" not in text
    assert any(line.startswith('127.0.0.1 "GET /wiki/a\\"b\\x0acÅd" 302 ') for line in lines), lines[-5:]


def test_an_access_line_shows_the_request_but_no_query_string_headers_or_cookies():
    import logging
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from kb.server import ACCESS_LOG_FORMAT, AccessLogger

    config = Config()
    config.set("access_log_format", ACCESS_LOG_FORMAT)
    config.set("accesslog", "-")  # to standard output, as kb serve does
    logger = AccessLogger(config)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.access_log.addHandler(handler)
    response = SimpleNamespace(status="404 NOT FOUND", sent=1234, headers=[("Set-Cookie", "session=SeSsIoN")])
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "PATH_INFO": "/wiki/100%",
               "QUERY_STRING": "token=ToKeN", "HTTP_COOKIE": "session=SeSsIoN"}
    logger.access(response, SimpleNamespace(headers=[("COOKIE", "session=SeSsIoN")]), environ,
                  timedelta(seconds=1, microseconds=2500))
    assert lines == ['10.0.0.7 "GET /wiki/100%" 404 1234 1002ms']


def test_serving_writes_nothing_in_the_home_directory(served):
    port, env = served
    assert request(port, "GET", "/healthz")[0] == 200
    assert list(Path(env["HOME"]).iterdir()) == []  # no control socket or anything else outside the data directory
