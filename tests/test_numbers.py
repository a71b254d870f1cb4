"""Numbers from outside (paths, query strings, forms, JSON) are checked in one place: too big for the database is a
404 for an address and a 400 or 422 naming the parameter otherwise, never a 500."""
from __future__ import annotations

import pytest

HUGE = str(2**63)  # one more than the database can store
NEGATIVE_HUGE = "-" + "9" * 25


@pytest.fixture
def signed_in(client, auth, make_page):
    make_page("Budget Calendar", body="Dates.")
    auth.login("admin")
    return client


@pytest.mark.parametrize("path", [
    f"/wiki/budget-calendar/revisions/{HUGE}",
    f"/api/pages/budget-calendar/revisions/{HUGE}",
    f"/tours/some-tour/stops/{HUGE}",
    f"/tours/some-tour/revisions/{HUGE}",
])
def test_a_huge_number_in_an_address_leads_nowhere(signed_in, path):
    assert signed_in.get(path).status_code == 404


@pytest.mark.parametrize("path", [
    f"/wiki/budget-calendar/revert/{HUGE}",
    f"/account/tokens/{HUGE}/revoke",
    f"/admin/deleted/{HUGE}/restore",
    f"/admin/invitations/{HUGE}/cancel",
    f"/tours/some-tour/revisions/{HUGE}/restore",
])
def test_a_huge_number_in_a_form_address_leads_nowhere(signed_in, path):
    assert signed_in.post(path).status_code == 404


@pytest.mark.parametrize("path, name", [
    (f"/wiki?page={HUGE}", "page"),
    (f"/api/pages?offset={HUGE}", "offset"),
    (f"/api/pages?limit={NEGATIVE_HUGE}", "limit"),
    (f"/wiki/budget-calendar/diff?from={HUGE}&to=1", "from"),
    (f"/recent?limit={HUGE}", "limit"),
    (f"/admin/audit?page={HUGE}", "page"),
    (f"/api/search?q=budget&offset={HUGE}", "offset"),
    ("/wiki?page=two", "page"),
])
def test_a_bad_number_in_a_query_names_the_parameter(signed_in, path, name):
    response = signed_in.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert name in response.get_json()["details"]


def test_a_huge_base_revision_in_a_form_is_refused_and_changes_nothing(signed_in, app):
    response = signed_in.post("/wiki/budget-calendar/edit", data={
        "title": "Budget Calendar", "kind": "page", "body": "Changed.", "base_revision": HUGE},
        headers={"Accept": "application/json"})
    assert response.status_code == 400 and "base_revision" in response.get_json()["details"]
    assert "Changed." not in signed_in.get("/wiki/budget-calendar/raw").get_data(as_text=True)


def test_a_huge_base_revision_in_json_is_refused(signed_in):
    response = signed_in.put("/api/pages/budget-calendar", json={"body": "Changed.", "base_revision": 2**63})
    assert response.status_code == 422 and "base_revision" in response.get_json()["details"]


def test_huge_reading_minutes_for_a_tour_are_refused_by_name(signed_in):
    response = signed_in.post("/tours/new", data={"title": "Long Tour", "minutes": HUGE, "action": "save"})
    assert response.status_code in (200, 422)
    assert "minutes must be a whole number" in response.get_data(as_text=True)
