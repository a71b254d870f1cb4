"""Session cookies: Flask's signed cookies; a tampered or stale one never signs anyone in."""
from __future__ import annotations


from conftest import PASSWORD


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_remembered_cookie_still_signs_in_and_a_tampered_one_does_not(app, make_page):
    make_page("Staff Only", visibility="staff", body="For staff.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    client.get("/wiki/staff-only")  # the first page adds the form token to the session
    cookie = session_cookie(client)
    for _ in range(3):  # the first check verifies, the next ones are remembered
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
        assert response.status_code == 302 and "/login" in response.headers["Location"]


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


def test_a_new_secret_key_forgets_remembered_cookies(app, make_page):
    make_page("Staff Only", visibility="staff", body="For staff.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    assert client.get("/wiki/staff-only").status_code == 200
    app.config["SECRET_KEY"] = app.secret_key = "another-secret"
    assert client.get("/wiki/staff-only").status_code == 302  # signed with the old key: signed out


def test_a_remembered_session_with_a_list_is_copied_whole_for_each_request(app):
    """Flask's flash() appends to the list already in the session; that must not reach the remembered copy."""
    from flask import session

    with app.test_request_context("/"):
        session["_flashes"] = [("info", "Saved.")]
        session["_user_id"] = "1:1"
        response = app.response_class()
        app.session_interface.save_session(app, session, response)
        cookie = response.headers["Set-Cookie"].split(";")[0]
    opened = []
    for _ in range(3):  # verified once, then remembered
        with app.test_request_context("/", headers={"Cookie": cookie}) as ctx:
            opened.append(app.session_interface.open_session(app, ctx.request))
    opened[1]["_flashes"].append(("info", "Another."))
    assert opened[2]["_flashes"] == [("info", "Saved.")]
    assert opened[0]["_user_id"] == opened[2]["_user_id"] == "1:1"


def test_another_cookie_beside_the_session_is_checked_afresh(app, make_page):
    make_page("Staff Only", visibility="staff", body="For staff.")
    client = app.test_client()
    client.post("/login", data={"name": "reader", "password": PASSWORD})
    assert client.get("/wiki/staff-only").status_code == 200
    client.set_cookie("theme", "dark")  # the Cookie header changes; the session inside it is the same
    assert client.get("/wiki/staff-only").status_code == 200
    stranger = app.test_client()
    stranger.set_cookie("session", session_cookie(client)[:-3] + "AAA")
    stranger.set_cookie("theme", "dark")
    assert stranger.get("/wiki/staff-only").status_code == 302
