"""Accounts: passwords, the account page (own password, API tokens), invitations, roles, deactivation, audit log."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest import PASSWORD, _make_app
from kb import accounts
from kb.errors import InvalidFields, NotAllowed, NotFound
from kb.models import ApiToken, AuditEntry, Invitation, User, utcnow

NEW_PASSWORD = "a brand new passphrase"


def user(app, name: str) -> User | None:
    with app.extensions["kb_db"].reading() as s:
        return s.scalar(select(User).where(User.name == name))


def audit_actions(app) -> list[tuple[str, str]]:
    with app.extensions["kb_db"].reading() as s:
        return [(e.action, e.target) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def token_in(response) -> str:
    return re.search(r"kb_[A-Za-z0-9_-]{20,}", response.get_data(as_text=True)).group(0)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- the password policy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("password, ok", [("", False), ("x" * 11, False), ("x" * 12, True)])
def test_passwords_need_at_least_12_characters(password, ok):
    assert (accounts.password_problem(password) is None) is ok


def test_long_passwords_are_accepted_whole_and_never_truncated(app):
    long_password = "".join(chr(ord("a") + i % 26) for i in range(200))
    assert accounts.password_problem("y" * 1024) is None
    with app.extensions["kb_db"].writing() as s:
        accounts.create_user(s, "longpass", "reader", long_password)
    with app.extensions["kb_db"].reading() as s:
        assert accounts.authenticate(s, "longpass", long_password) is not None
        assert accounts.authenticate(s, "longpass", long_password[:128]) is None  # same first 128 characters
        assert accounts.authenticate(s, "longpass", long_password[:199] + "!") is None


def test_passwords_are_hashed_with_scrypt(app):
    stored = user(app, "reader").password_hash
    assert stored.startswith("scrypt:") and PASSWORD not in stored
    with app.extensions["kb_db"].writing() as s:
        created = accounts.create_user(s, "hashed", "reader", NEW_PASSWORD)
        assert created.password_hash.startswith("scrypt:")


def test_short_password_is_refused_everywhere_a_password_is_set(app, client, auth):
    with app.extensions["kb_db"].writing() as s:
        with pytest.raises(InvalidFields) as e:
            accounts.create_user(s, "shorty", "reader", "too short")
        assert "password" in e.value.errors
    auth.login("admin")
    r = client.post("/admin/users", data={"name": "shorty", "role": "reader", "password": "too short"})
    assert r.status_code == 422 and "at least 12" in r.get_data(as_text=True)
    assert user(app, "shorty") is None
    r = client.post("/account/password", data={"current_password": PASSWORD, "new_password": "too short",
                                               "confirm_password": "too short"})
    assert r.status_code == 422 and "at least 12" in r.get_data(as_text=True)


def test_user_names_are_unique_whatever_their_case(app):
    with app.extensions["kb_db"].writing() as s:
        with pytest.raises(InvalidFields) as e:
            accounts.create_user(s, "READER", "reader", NEW_PASSWORD)
        assert "already" in e.value.errors["name"]


# --- your own account: password and API tokens ------------------------------------------------------------------


def test_account_page_needs_a_signed_in_user(client):
    r = client.get("/account")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/account"


def test_change_own_password_needs_the_current_password(app, client, auth):
    auth.login("reader")
    r = client.post("/account/password", data={"current_password": "not my password", "new_password": NEW_PASSWORD,
                                               "confirm_password": NEW_PASSWORD})
    assert r.status_code == 422 and "not your current password" in r.get_data(as_text=True)
    r = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                               "confirm_password": "something else entirely"})
    assert r.status_code == 422 and "does not match" in r.get_data(as_text=True)
    with app.extensions["kb_db"].reading() as s:
        assert accounts.authenticate(s, "reader", PASSWORD) is not None


def test_changing_password_ends_every_other_session_but_this_one(app, client, auth):
    other_device = app.test_client()
    other_device.post("/login", data={"name": "reader", "password": PASSWORD})
    assert signed_in(other_device)
    auth.login("reader")
    r = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                               "confirm_password": NEW_PASSWORD})
    assert r.status_code == 302
    assert signed_in(client)
    assert not signed_in(other_device)
    fresh = app.test_client()
    assert fresh.post("/login", data={"name": "reader", "password": PASSWORD}).status_code == 401
    assert fresh.post("/login", data={"name": "reader", "password": NEW_PASSWORD}).status_code == 302
    assert ("user.password", "reader") in audit_actions(app)


def test_api_token_is_shown_once_listed_by_name_and_can_be_revoked(app, client, auth):
    auth.login("contributor")
    r = client.post("/account/tokens", data={"name": "nightly sync"})
    assert r.status_code == 201
    token = token_in(r)
    page = client.get("/account").get_data(as_text=True)
    assert "nightly sync" in page and token not in page  # listed, never shown again
    api = app.test_client()
    assert api.get("/api/pages", headers=bearer(token)).status_code == 200
    with app.extensions["kb_db"].reading() as s:
        token_id = s.scalar(select(ApiToken.id).where(ApiToken.name == "nightly sync"))
    r = client.post(f"/account/tokens/{token_id}/revoke")
    assert r.status_code == 302
    assert api.get("/api/pages", headers=bearer(token)).status_code == 401
    assert "nightly sync" not in client.get("/account").get_data(as_text=True)
    assert [a for a, _ in audit_actions(app) if a.startswith("token.")] == ["token.create", "token.revoke"]


def test_token_needs_a_name(client, auth):
    auth.login("reader")
    r = client.post("/account/tokens", data={"name": "  "})
    assert r.status_code == 422 and not re.search(r"kb_[A-Za-z0-9_-]{20,}", r.get_data(as_text=True))


def test_nobody_can_revoke_someone_elses_token(app, client, auth):
    with app.extensions["kb_db"].writing() as s:
        accounts.create_token(s, s.scalar(select(User).where(User.name == "curator")), "curator's script")
    with app.extensions["kb_db"].reading() as s:
        token_id = s.scalar(select(ApiToken.id))
    auth.login("reader")
    assert client.post(f"/account/tokens/{token_id}/revoke").status_code == 404
    with app.extensions["kb_db"].reading() as s:
        assert s.get(ApiToken, token_id).revoked_at is None


def test_an_api_token_cannot_manage_the_account(app):
    with app.extensions["kb_db"].writing() as s:
        token = accounts.create_token(s, s.scalar(select(User).where(User.name == "reader")), "script")
    api = app.test_client()
    assert api.post("/account/tokens", data={"name": "another"}, headers=bearer(token)).status_code == 403
    r = api.post("/account/password", headers=bearer(token),
                 data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert r.status_code == 403
    with app.extensions["kb_db"].reading() as s:
        assert len(list(s.scalars(select(ApiToken)))) == 1


# --- administration ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_matrix(tmp_path_factory):
    """One app for the checks below, which must all change nothing; a signed-in client per role."""
    app = _make_app(tmp_path_factory.mktemp("admin"))
    clients = {None: app.test_client()}
    for who in ("reader", "contributor", "curator"):
        clients[who] = app.test_client()
        clients[who].post("/login", data={"name": who, "password": PASSWORD})
    yield app, clients
    app.extensions["kb_db"].dispose()


@pytest.mark.parametrize("who", [None, "reader", "contributor", "curator"])
@pytest.mark.parametrize("method, path", [("get", "/admin/"), ("get", "/admin/audit"),
                                          ("post", "/admin/users"), ("post", "/admin/invitations"),
                                          ("post", "/admin/users/reader/role"),
                                          ("post", "/admin/users/reader/deactivate"),
                                          ("post", "/admin/users/reader/reactivate"),
                                          ("post", "/admin/invitations/1/cancel")])
def test_administration_looks_missing_to_everyone_but_administrators(admin_matrix, who, method, path):
    app, clients = admin_matrix
    data = {"name": "mallory", "role": "admin", "password": NEW_PASSWORD} if method == "post" else None
    r = getattr(clients[who], method)(path, data=data)
    assert r.status_code == 404
    assert user(app, "mallory") is None and user(app, "reader").role == "reader" and user(app, "reader").active
    with app.extensions["kb_db"].reading() as s:
        assert s.scalar(select(Invitation.id)) is None


def test_admin_creates_an_account_with_a_password(app, client, auth):
    auth.login("admin")
    r = client.post("/admin/users", data={"name": "jlee", "display_name": "Jordan Lee", "role": "contributor",
                                          "password": NEW_PASSWORD})
    assert r.status_code == 302
    created = user(app, "jlee")
    assert created.role == "contributor" and created.display_name == "Jordan Lee"
    r = client.post("/admin/users", data={"name": "JLee", "role": "reader", "password": NEW_PASSWORD})
    assert r.status_code == 422 and "already" in r.get_data(as_text=True)
    assert ("user.create", "jlee") in audit_actions(app)


def test_invitation_link_lets_the_person_choose_a_password_once(app, client, auth):
    auth.login("admin")
    r = client.post("/admin/invitations", data={"name": "pwhite", "role": "contributor", "days": "3"})
    assert r.status_code == 201
    link = re.search(r'value="(http://localhost(/invite/[^"]+))"', r.get_data(as_text=True)).group(2)
    assert "pwhite" in client.get("/admin/").get_data(as_text=True)  # listed as open
    assert link not in client.get("/admin/").get_data(as_text=True)  # but the link is shown only once
    newcomer = app.test_client()
    page = newcomer.get(link)
    assert page.status_code == 200 and "pwhite" in page.get_data(as_text=True)
    r = newcomer.post(link, data={"password": "short", "confirm_password": "short"})
    assert r.status_code == 422 and user(app, "pwhite") is None
    r = newcomer.post(link, data={"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD,
                                  "display_name": "Pat White"})
    assert r.status_code == 302
    assert signed_in(newcomer)
    created = user(app, "pwhite")
    assert created.role == "contributor" and created.display_name == "Pat White"
    assert app.test_client().get(link).status_code == 404  # used up
    assert app.test_client().post(link, data={"password": NEW_PASSWORD,
                                              "confirm_password": NEW_PASSWORD}).status_code == 404
    actions = audit_actions(app)
    assert ("invitation.create", "pwhite") in actions and ("invitation.accept", "pwhite") in actions


def test_invitation_expires(app, client):
    with app.extensions["kb_db"].writing() as s:
        secret = accounts.create_invitation(s, None, "late", "reader", days=2, now=utcnow() - timedelta(days=3))
        fresh = accounts.create_invitation(s, None, "early", "reader", days=2)
    assert client.get(f"/invite/{secret}").status_code == 404
    assert client.get(f"/invite/{fresh}").status_code == 200
    assert client.get("/invite/not-a-real-secret").status_code == 404
    with app.extensions["kb_db"].reading() as s:
        assert secret not in [i.token_hash for i in s.scalars(select(Invitation))]


def test_invitation_limits_and_cancelling(app, client, auth):
    auth.login("admin")
    assert client.post("/admin/invitations", data={"name": "x", "role": "reader", "days": "90"}).status_code == 422
    assert client.post("/admin/invitations", data={"name": "reader", "role": "reader"}).status_code == 422
    assert client.post("/admin/invitations", data={"name": "y", "role": "owner"}).status_code == 422
    r = client.post("/admin/invitations", data={"name": "soon", "role": "reader"})
    link = re.search(r"(/invite/[A-Za-z0-9_-]+)", r.get_data(as_text=True)).group(1)
    with app.extensions["kb_db"].reading() as s:
        inv_id = s.scalar(select(Invitation.id).where(Invitation.name == "soon"))
    assert client.post(f"/admin/invitations/{inv_id}/cancel").status_code == 302
    assert app.test_client().get(link).status_code == 404
    assert ("invitation.cancel", "soon") in audit_actions(app)


def test_role_change_takes_effect_at_once_and_is_audited(app, client, auth):
    reader = app.test_client()
    reader.post("/login", data={"name": "reader", "password": PASSWORD})
    assert reader.get("/new").status_code == 403
    auth.login("admin")
    assert client.post("/admin/users/reader/role", data={"role": "contributor"}).status_code == 302
    assert reader.get("/new").status_code == 200
    with app.extensions["kb_db"].reading() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "user.role"))
        assert entry.actor.name == "admin" and entry.target == "reader"
        assert entry.details == {"from": "reader", "to": "contributor"} and entry.at is not None
    assert client.post("/admin/users/reader/role", data={"role": "emperor"}).status_code == 422


def test_the_last_administrator_stays(app, client, auth):
    auth.login("admin")
    r = client.post("/admin/users/admin/role", data={"role": "reader"})
    assert r.status_code == 422 and user(app, "admin").role == "admin"
    assert client.post("/admin/users/admin/deactivate").status_code == 403
    assert user(app, "admin").active
    with app.extensions["kb_db"].writing() as s:
        admin = s.scalar(select(User).where(User.name == "admin"))
        with pytest.raises(NotAllowed):
            accounts.deactivate_user(s, None, admin)
        curator = s.scalar(select(User).where(User.name == "curator"))
        accounts.change_role(s, admin.id, curator, "admin")
        accounts.change_role(s, curator.id, admin, "reader")  # now there is another administrator
        assert admin.role == "reader"


def test_deactivated_user_cannot_sign_in_or_use_tokens_and_keeps_authorship(app, client, auth, make_page):
    make_page("Writing Assessment", body="Teachers loved it.", as_user="contributor")
    with app.extensions["kb_db"].writing() as s:
        token = accounts.create_token(s, s.scalar(select(User).where(User.name == "contributor")), "script")
    contributor = app.test_client()
    contributor.post("/login", data={"name": "contributor", "password": PASSWORD, "remember": "1"})
    api = app.test_client()
    assert api.get("/api/pages", headers=bearer(token)).status_code == 200

    auth.login("admin")
    assert client.post("/admin/users/contributor/deactivate").status_code == 302

    assert not signed_in(contributor)                                   # the session ended
    assert api.get("/api/pages", headers=bearer(token)).status_code == 401  # the token stopped working
    r = app.test_client().post("/login", data={"name": "contributor", "password": PASSWORD})
    assert r.status_code == 401 and "do not match an active account" in r.get_data(as_text=True)
    # Their work keeps their name.
    assert "Contributor" in client.get("/wiki/writing-assessment/history").get_data(as_text=True)
    revisions = client.get("/api/pages/writing-assessment/revisions").get_json()["revisions"]
    assert revisions[0]["author"] == "contributor"
    assert ("user.deactivate", "contributor") in audit_actions(app)

    assert client.post("/admin/users/contributor/reactivate").status_code == 302
    assert app.test_client().post("/login", data={"name": "contributor", "password": PASSWORD}).status_code == 302
    assert api.get("/api/pages", headers=bearer(token)).status_code == 401  # tokens stay revoked


def test_admin_cannot_deactivate_themselves(app, client, auth):
    with app.extensions["kb_db"].writing() as s:
        s.scalar(select(User).where(User.name == "curator")).role = "admin"
    auth.login("admin")
    assert client.post("/admin/users/admin/deactivate").status_code == 403
    assert user(app, "admin").active


def test_unknown_user_in_admin_actions_is_not_found(client, auth):
    auth.login("admin")
    assert client.post("/admin/users/nobody/role", data={"role": "reader"}).status_code == 404
    assert client.post("/admin/users/nobody/deactivate").status_code == 404


def test_audit_log_shows_who_did_what_and_when_but_no_secret(app, client, auth):
    auth.login("admin")
    client.post("/admin/users", data={"name": "jlee", "role": "reader", "password": NEW_PASSWORD})
    client.post("/admin/users/jlee/role", data={"role": "curator"})
    r = client.post("/admin/invitations", data={"name": "pwhite", "role": "reader"})
    secret = re.search(r"/invite/([A-Za-z0-9_-]+)", r.get_data(as_text=True)).group(1)
    token = token_in(client.post("/account/tokens", data={"name": "export"}))
    client.post("/admin/users/jlee/deactivate")
    page = client.get("/admin/audit").get_data(as_text=True)
    for action in ("user.create", "user.role", "invitation.create", "token.create", "user.deactivate"):
        assert action in page
    assert "curator" in page and "jlee" in page
    for secret_text in (NEW_PASSWORD, secret, token):
        assert secret_text not in page
    with app.extensions["kb_db"].reading() as s:
        for entry in s.scalars(select(AuditEntry)):
            assert NEW_PASSWORD not in str(entry.details) and token not in str(entry.details)


def test_audit_log_pages(app, client, auth):
    with app.extensions["kb_db"].writing() as s:
        for i in range(130):
            accounts.audit(s, None, "test.entry", f"n{i}")
    auth.login("admin")
    first = client.get("/admin/audit").get_data(as_text=True)
    assert "n129" in first and "n0<" not in first and 'rel="next"' in first
    second = client.get("/admin/audit?page=2").get_data(as_text=True)
    assert ">n0<" in second


def test_domain_errors_for_accounts(app):
    with app.extensions["kb_db"].writing() as s:
        reader = s.scalar(select(User).where(User.name == "reader"))
        with pytest.raises(NotFound):
            accounts.revoke_token(s, reader, 999)
        with pytest.raises(NotFound):
            accounts.accept_invitation(s, "nope", NEW_PASSWORD)
        with pytest.raises(InvalidFields):
            accounts.change_own_password(s, reader, "wrong", NEW_PASSWORD)
