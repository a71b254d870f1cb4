"""Session cookies: signed, so a forged or tampered one signs nobody in, and one request's changes stay its own."""
from __future__ import annotations

from conftest import PASSWORD


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_session_cookie_signs_in_again_and_a_tampered_one_does_not(app, make_page):
    make_page("Staff Only", visibility="staff", body="For staff.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    client.get("/wiki/staff-only")  # the first page adds the form token to the session
    cookie = session_cookie(client)
    for _ in range(3):  # the same cookie, request after request
        assert client.get("/wiki/staff-only").status_code == 200
    assert session_cookie(client) == cookie
    stranger = app.test_client()
    payload, stamp, signature = cookie.rsplit(".", 2)
    flip = {"A": "B"}
    def changed(text: str, at: int) -> str:
        return text[:at] + flip.get(text[at], "A") + text[at + 1:]

    forgeries = [f"{payload}.{stamp}.{changed(signature, 5)}",  # another signature
                 f"{changed(payload, 10)}.{stamp}.{signature}",  # another payload, same signature
                 f"{payload}.{changed(stamp, 2)}.{signature}"]  # another time
    for forged in forgeries:
        assert forged != cookie
        stranger.set_cookie("session", forged)
        response = stranger.get("/wiki/staff-only")
        assert response.status_code == 302 and response.headers["Location"] == "/login?next=/wiki/staff-only"


def test_what_one_request_changes_in_its_session_does_not_leak_into_the_next(app, make_page):
    make_page("Drill", body="Fire drill.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    client.get("/wiki/drill")
    cookie = session_cookie(client)
    client.post("/curate/watch", data={"page": "drill", "on": "1"})  # adds a message to its session
    # Replaying the earlier cookie (as a second tab would) brings the earlier session, without the message.
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    html = replay.get("/wiki/drill").get_data(as_text=True)
    assert 'class="flashes"' not in html and "Stop watching" in html
    assert 'class="flashes"' in client.get("/wiki/drill").get_data(as_text=True)


def test_a_new_secret_key_signs_everyone_out(app, make_page):
    make_page("Staff Only", visibility="staff", body="For staff.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    assert client.get("/wiki/staff-only").status_code == 200
    app.config["SECRET_KEY"] = app.secret_key = "another-secret"
    r = client.get("/wiki/staff-only")  # signed with the old key: signed out
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/wiki/staff-only"


def test_a_tampered_session_beside_another_cookie_is_refused(app, make_page):
    make_page("Staff Only", visibility="staff", body="For staff.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    assert client.get("/wiki/staff-only").status_code == 200
    client.set_cookie("theme", "dark")  # the Cookie header changes; the session inside it is the same
    assert client.get("/wiki/staff-only").status_code == 200
    stranger = app.test_client()
    stranger.set_cookie("session", session_cookie(client)[:-3] + "AAA")
    stranger.set_cookie("theme", "dark")
    r = stranger.get("/wiki/staff-only")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/wiki/staff-only"
