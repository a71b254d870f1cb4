"""The JSON API for pages and revisions (PRODUCT §7), with tokens."""
from __future__ import annotations

import pytest


@pytest.fixture
def token(runner):
    result = runner.invoke(args=["token", "create", "contributor"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def put(client, slug, token, **data):
    return client.put(f"/api/pages/{slug}", json=data, headers={"Authorization": f"Bearer {token}"})


def test_token_create_prints_a_token_stored_only_as_a_hash(app, token):
    from sqlalchemy import select

    from kb.models import ApiToken

    assert token.startswith("kb_") and len(token) > 30
    with app.extensions["kb_db"].reading() as s:
        stored = s.scalar(select(ApiToken.token_hash))
    assert token not in stored


def test_put_creates_then_updates_then_conflicts(client, token):
    r = put(client, "writing-assessment", token, title="Writing assessment", kind="initiative",
            fields={"status": "ended", "ended_reason": "assumed-failed", "started": "1998", "ended": 2003},
            tags=["literacy"], body="Teachers scored together. See [[Teacher leaders]].", comment="from notes")
    assert r.status_code == 201, r.get_json()
    data = r.get_json()
    assert data["revision"] == 1 and data["fields"]["ended"] == "2003"
    assert data["links"] == ["teacher-leaders"]
    assert "wanted" in data["html"]
    r = put(client, "writing-assessment", token, body="Updated.", base_revision=1)
    assert r.status_code == 200 and r.get_json()["revision"] == 2
    r = put(client, "writing-assessment", token, body="Stale edit.", base_revision=1)
    assert r.status_code == 409
    err = r.get_json()
    assert err["details"]["current_revision"] == 2 and "Stale edit." in err["details"]["diff"]


def test_get_page_has_the_documented_shape(client, token):
    put(client, "carol-johnson", token, title="Carol Johnson", kind="leader",
        fields={"tenures": [{"role": "superintendent", "from": "2003", "to": "2004", "hired": "external"}]})
    put(client, "tlp", token, title="TLP", kind="initiative", fields={"status": "active", "sponsors": ["carol-johnson"]})
    r = client.get("/api/pages/carol-johnson", headers={"Authorization": f"Bearer {token}"})
    data = r.get_json()
    for key in ("slug", "title", "kind", "fields", "tags", "visibility", "body", "html", "revision", "updated", "links",
                "backlinks"):
        assert key in data
    assert data["backlinks"] == ["tlp"]


def test_revisions_list_and_one_revision(client, token):
    put(client, "x", token, title="X", body="one")
    put(client, "x", token, body="two", base_revision=1, comment="second")
    h = {"Authorization": f"Bearer {token}"}
    revs = client.get("/api/pages/x/revisions", headers=h).get_json()["revisions"]
    assert [r["number"] for r in revs] == [2, 1] and revs[0]["comment"] == "second"
    assert revs[0]["author"] == "contributor"
    one = client.get("/api/pages/x/revisions/1", headers=h).get_json()
    assert one["body"] == "one"
    assert client.get("/api/pages/x/revisions/7", headers=h).status_code == 404


@pytest.mark.parametrize("payload, field", [
    ({"title": "R", "kind": "routine", "fields": {"months": [0]}}, "fields.months"),
    ({"title": "R", "kind": "routine", "fields": {"formal": "maybe"}}, "fields.formal"),
    ({"title": "R", "kind": "routine", "fields": {"people_who_can_run_it": -1}}, "fields.people_who_can_run_it"),
    ({"title": "C", "kind": "community", "fields": {"stage": "thriving"}}, "fields.stage"),
    ({"title": "L", "kind": "lesson", "fields": {"occurred": "last year"}}, "fields.occurred"),
    ({"title": "P", "kind": "partnership", "fields": {"type": "friendly"}}, "fields.type"),
    ({"title": "H", "kind": "handover", "fields": {"risk": {"attrition": 9, "criticality": 1}}}, "fields.risk"),
    ({"title": "Le", "kind": "leader", "fields": {"tenures": [{"role": "x", "hired": "maybe"}]}}, "fields.tenures"),
    ({"title": "Le", "kind": "leader", "fields": {"initiatives_started": ["a"]}}, "fields.initiatives_started"),
    ({"title": "I", "kind": "initiative", "fields": {"status": "ended"}}, "fields.ended_reason"),
    ({"title": "I", "kind": "memo"}, "kind"),
    ({"title": "I", "kind": "page", "fields": {"status": "x"}}, "fields.status"),
    ({"title": "???"}, "title"),
    ({"title": "T", "tags": "not-a-list-of-text-" * 0 + "ok", "visibility": "secret"}, "visibility"),
    ({"title": "T", "surprise": 1}, "surprise"),
])
def test_invalid_input_gets_422_naming_the_field(client, token, payload, field):
    r = put(client, "api-bad", token, **payload)
    assert r.status_code == 422
    body = r.get_json()
    assert field in body["details"] and body["error"]
    assert client.get("/api/pages/api-bad", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_malformed_json_gets_400_and_too_large_gets_413(client, token):
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert client.put("/api/pages/x", data="{not json", headers=h).status_code == 400
    r = put(client, "x", token, title="X", body="x" * (1024 * 1024 + 10))
    assert r.status_code == 413 and r.get_json()["error"]


def test_readers_get_403_and_strangers_401(client, runner):
    reader_token = runner.invoke(args=["token", "create", "reader"]).output.strip()
    assert put(client, "x", reader_token, title="X").status_code == 403
    assert client.put("/api/pages/x", json={"title": "X"}).status_code == 401
    assert put(client, "x", "kb_wrong", title="X").status_code == 401
    assert client.get("/api/pages").status_code == 401


def test_list_filters(client, token):
    put(client, "a", token, title="A", kind="initiative", fields={"status": "ended", "ended_reason": "funding"},
        tags=["math"])
    put(client, "b", token, title="B", kind="initiative", fields={"status": "active"}, tags=["math"])
    put(client, "c", token, title="C", kind="routine", tags=["science"])
    h = {"Authorization": f"Bearer {token}"}
    slugs = lambda q: [p["slug"] for p in client.get(f"/api/pages?{q}", headers=h).get_json()["pages"]]  # noqa: E731
    assert slugs("kind=initiative") == ["a", "b"]
    assert slugs("kind=initiative&status=ended") == ["a"]
    assert slugs("tag=math") == ["a", "b"]
    assert slugs("tag=science&kind=routine") == ["c"]


def test_errors_are_json_with_error_and_details(client, token):
    r = client.get("/api/nothing-here", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and set(r.get_json()) == {"error", "details"}
