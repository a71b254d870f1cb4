"""The eight knowledge kinds through the API and the editor: validation per field, forms that keep what the user
typed, derived facts that follow edits, lists with filters, and "before you end this initiative"."""
from __future__ import annotations

from types import SimpleNamespace

import html5lib
import pytest

from kb import kinds
from kb.derived import derived_facts


# --- helpers -------------------------------------------------------------------------------------------------

def parse(response):
    return html5lib.parse(response.get_data(as_text=True), treebuilder="etree", namespaceHTMLElements=False)


def by_id(doc, element_id):
    for el in doc.iter():
        if el.get("id") == element_id:
            return el
    return None


def text_of(el) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def control_values(doc, name) -> list[str]:
    """What the form shows for a control name: input values, the selected option, textarea text, checked boxes."""
    out = []
    for el in doc.iter():
        if el.get("name") != name:
            continue
        if el.tag == "input" and el.get("type") == "checkbox":
            if el.get("checked") is not None:
                out.append(el.get("value"))
        elif el.tag == "input":
            out.append(el.get("value") or "")
        elif el.tag == "textarea":
            out.append(el.text or "")
        elif el.tag == "select":
            out.extend(o.get("value") for o in el.iter("option") if o.get("selected") is not None)
    return out


def derived(doc, label) -> list[str]:
    """Titles listed under a derived fact (e.g. "Initiatives started") in the field panel."""
    for div in doc.iter("div"):
        if "field--derived" in (div.get("class") or ""):
            dt = div.find("dt")
            if dt is not None and text_of(dt).startswith(label):
                return [text_of(a) for a in div.iter("a")]
    return []


# --- the API rejects invalid values, field by field, for every kind --------------------------------------------

INVALID = {
    "page": {"status": "active"},
    "initiative": {"status": "paused", "started": "last spring", "ended": "2004-02-30", "sponsors": "superintendent",
                   "experts": "Ana"},
    "routine": {"formal": "sometimes", "months": [0, 13], "people_who_can_run_it": -1, "last_performed": "soon",
                "steps": "one step"},
    "community": {"formality": "loose", "stage": "thriving", "recognition": "famous", "core_members": 3},
    "lesson": {"occurred": "2020-13", "maturity": "wisdom", "source_type": "blog", "applies_to": {"a": 1}},
    "leader": {"tenures": [{"from": "2001"}], "initiatives_started": ["typed-by-hand"], "handover": ["a", "b"]},
    "partnership": {"type": "friendly", "started": "soon", "status": "paused", "goals": "more"},
    "handover": {"risk": {"attrition": 7, "criticality": 2}, "successor_checked": "yesterday", "in_flight": "x",
                 "decisions_pending": 12},
}


def test_every_kind_is_covered_by_the_invalid_value_test():
    assert set(INVALID) == set(kinds.KINDS)


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_api_rejects_invalid_values_with_422_and_a_message_per_field(client, auth, kind):
    auth.login("contributor")
    r = client.put(f"/api/pages/bad-{kind}", json={"title": f"Bad {kind}", "kind": kind, "fields": INVALID[kind]})
    assert r.status_code == 422
    data = r.get_json()
    assert data["error"]
    details = data["details"]
    for name in INVALID[kind]:
        message = details.get(f"fields.{name}")
        assert isinstance(message, str) and len(message) > 5, (kind, name, details)
    assert client.get(f"/api/pages/bad-{kind}").status_code == 404  # nothing was saved


def test_api_accepts_valid_values_and_normalises_them(client, auth):
    auth.login("contributor")
    r = client.put("/api/pages/scoring-days", json={"title": "Scoring days", "kind": "routine", "fields": {
        "formal": "yes", "months": ["10", 3, 3], "people_who_can_run_it": "1", "owner": "Writing Teachers",
        "steps": ["Pick samples", "Score together"]}})
    assert r.status_code == 201, r.get_json()
    fields = r.get_json()["fields"]
    assert fields == {"formal": True, "months": [3, 10], "owner": "writing-teachers",
                      "steps": ["Pick samples", "Score together"], "people_who_can_run_it": 1}


def test_ending_an_initiative_through_the_api_needs_a_reason(client, auth):
    auth.login("contributor")
    r = client.put("/api/pages/x", json={"title": "X", "kind": "initiative", "fields": {"status": "replaced"}})
    assert r.status_code == 422 and "fields.ended_reason" in r.get_json()["details"]


# --- forms: one control per type, help text, errors next to the field, input kept --------------------------------

def test_every_kind_has_a_form_with_a_control_and_help_for_each_field(client, auth):
    auth.login("contributor")
    for kind in kinds.KINDS.values():
        if kind.name == "handover":
            continue  # handovers have a guided form of their own
        doc = parse(client.get(f"/new?kind={kind.name}"))
        for f in kind.fields:
            row = by_id(doc, f"field-{f.name}")
            assert row is not None, (kind.name, f.name)
            if f.help:
                assert f.help in text_of(row)
            if f.derived:
                assert not [el for el in row.iter() if el.get("name")], "derived fields are never typed in"
                continue
            names = {el.get("name") for el in row.iter() if el.get("name")}
            assert any(n == f"f.{f.name}" or n.startswith(f"f.{f.name}.") for n in names), (kind.name, f.name)
        assert by_id(doc, "body") is not None and by_id(doc, "preview-pane") is not None


def test_link_fields_offer_title_autocomplete(client, auth):
    auth.login("contributor")
    doc = parse(client.get("/new?kind=initiative"))
    sponsor = by_id(doc, "f.sponsors")
    assert sponsor.get("list") == "page-titles" and sponsor.get("data-page-autocomplete") is not None
    assert by_id(doc, "f.predecessor").get("list") == "page-titles"
    assert by_id(doc, "page-titles").tag == "datalist"


def test_a_rejected_form_keeps_every_kind_of_input(client, auth, make_page):
    auth.login("contributor")
    r = client.post("/new", data={
        "kind": "initiative", "title": "Writing assessment", "f.status": "ended", "f.started": "spring 2004",
        "f.ended": "2009", "f.sponsors": ["Superintendent Lee", "", "deputy-ruiz"], "f.evidence": "Teachers loved it.",
        "f.experts": "Grace\nSam", "f.predecessor": "old-assessment", "tags": "writing, assessment",
        "sources": "Interview notes", "body": "My careful notes", "comment": "why"})
    assert r.status_code == 422
    doc = parse(r)
    assert control_values(doc, "title") == ["Writing assessment"]
    assert control_values(doc, "f.status") == ["ended"]
    assert control_values(doc, "f.started") == ["spring 2004"]
    assert control_values(doc, "f.ended") == ["2009"]
    assert control_values(doc, "f.sponsors")[:2] == ["Superintendent Lee", "deputy-ruiz"]
    assert control_values(doc, "f.evidence") == ["Teachers loved it."]
    assert control_values(doc, "f.experts") == ["Grace\nSam"]
    assert control_values(doc, "f.predecessor") == ["old-assessment"]
    assert control_values(doc, "tags") == ["writing, assessment"]
    assert control_values(doc, "body") == ["My careful notes"]
    # Each message sits in its own field's row.
    assert "not a date" in text_of(by_id(doc, "field-started"))
    assert "say why it ended" in text_of(by_id(doc, "field-ended_reason"))
    assert "not a date" not in text_of(by_id(doc, "field-ended"))

    r = client.post("/new", data={
        "kind": "routine", "title": "Scoring days", "f.formal": "true", "f.months": ["3", "10"], "f.cadence": "twice",
        "f.owner": "writing-teachers", "f.steps": "Pick samples\nScore", "f.last_performed": "last March",
        "f.people_who_can_run_it": "one"})
    assert r.status_code == 422
    doc = parse(r)
    assert control_values(doc, "f.formal") == ["true"]
    assert control_values(doc, "f.months") == ["3", "10"]
    assert control_values(doc, "f.owner") == ["writing-teachers"]
    assert control_values(doc, "f.steps") == ["Pick samples\nScore"]
    assert control_values(doc, "f.people_who_can_run_it") == ["one"]
    assert "whole number" in text_of(by_id(doc, "field-people_who_can_run_it"))
    assert "not a date" in text_of(by_id(doc, "field-last_performed"))

    r = client.post("/new", data={
        "kind": "leader", "title": "Ana Ruiz", "f.tenures.0.role": "Superintendent", "f.tenures.0.from": "2009",
        "f.tenures.0.to": "in 2014", "f.tenures.0.hired": "external", "f.tenures.0.left_because": "Moved",
        "f.tenures.1.role": "", "f.priorities": "Writing"})
    assert r.status_code == 422
    doc = parse(r)
    assert control_values(doc, "f.tenures.0.role") == ["Superintendent"]
    assert control_values(doc, "f.tenures.0.to") == ["in 2014"]
    assert control_values(doc, "f.tenures.0.hired") == ["external"]
    assert control_values(doc, "f.tenures.0.left_because") == ["Moved"]
    assert "tenure 1" in text_of(by_id(doc, "field-tenures"))

    slug = make_page("Handover: director", kind="handover", fields={"role": "Director"})
    r = client.post(f"/wiki/{slug}/edit", data={
        "kind": "handover", "title": "Handover: director", "base_revision": "1", "f.role": "Director",
        "f.risk.attrition": "4", "f.risk.criticality": "5", "f.successor_checked": "yesterday"})
    assert r.status_code == 422
    doc = parse(r)
    assert control_values(doc, "f.risk.attrition") == ["4"] and control_values(doc, "f.risk.criticality") == ["5"]
    assert "not a date" in text_of(by_id(doc, "field-successor_checked"))


def test_add_another_row_works_without_javascript_and_saves_nothing(client, auth):
    auth.login("contributor")
    r = client.post("/new", data={"kind": "leader", "title": "Ana Ruiz", "f.tenures.0.role": "Deputy",
                                  "f.tenures.0.from": "2005", "add_row": "tenures"})
    assert r.status_code == 200
    doc = parse(r)
    assert control_values(doc, "f.tenures.0.role") == ["Deputy"]
    assert control_values(doc, "f.tenures.1.role") == [""]
    # Asking again without filling the new row gives yet another one.
    r = client.post("/new", data={"kind": "leader", "title": "Ana Ruiz", "f.tenures.0.role": "Deputy",
                                  "f.tenures.1.role": "", "add_row": "tenures"})
    assert control_values(parse(r), "f.tenures.2.role") == [""]
    r = client.post("/new", data={"kind": "initiative", "title": "X", "f.sponsors": ["ana-ruiz", ""],
                                  "add_row": "sponsors"})
    assert control_values(parse(r), "f.sponsors") == ["ana-ruiz", "", ""]
    assert client.get("/wiki/ana-ruiz").status_code == 404
    r = client.post("/new", data={"kind": "leader", "title": "Ana Ruiz", "f.tenures.0.role": "Deputy",
                                  "f.tenures.0.from": "2005", "f.tenures.1.role": "Superintendent",
                                  "f.tenures.1.from": "2009", "f.tenures.2.role": ""})
    assert r.status_code == 302
    page = client.get("/api/pages/ana-ruiz").get_json()
    assert page["fields"]["tenures"] == [{"role": "Deputy", "from": "2005"}, {"role": "Superintendent", "from": "2009"}]


def test_edit_form_shows_saved_values_of_every_type(client, auth, make_page):
    slug = make_page("Scoring days", kind="routine", fields={
        "formal": False, "months": [3, 10], "owner": "writing-teachers", "steps": ["Pick", "Score"],
        "people_who_can_run_it": 1, "last_performed": "2024-03"})
    auth.login("contributor")
    doc = parse(client.get(f"/wiki/{slug}/edit"))
    assert control_values(doc, "f.formal") == ["false"]
    assert control_values(doc, "f.months") == ["3", "10"]
    assert control_values(doc, "f.steps") == ["Pick\nScore"]
    assert control_values(doc, "f.people_who_can_run_it") == ["1"]
    assert control_values(doc, "f.last_performed") == ["2024-03"]


# --- the page view: field panel and derived facts -------------------------------------------------------------

def test_field_panel_links_marks_wanted_and_shows_status_badge(client, auth, make_page):
    make_page("Ana Ruiz", kind="leader")
    slug = make_page("Writing assessment", kind="initiative",
                     fields={"status": "ended", "ended_reason": "assumed-failed", "sponsors": ["ana-ruiz", "nobody-yet"]})
    auth.login("reader")
    doc = parse(client.get(f"/wiki/{slug}"))
    panel = [el for el in doc.iter("section") if "field-panel" in (el.get("class") or "")][0]
    links = {a.get("href"): a for a in panel.iter("a")}
    assert text_of(links["/wiki/ana-ruiz"]) == "Ana Ruiz" and "wanted" not in (links["/wiki/ana-ruiz"].get("class") or "")
    assert "wanted" in links["/wiki/nobody-yet"].get("class")
    badges = [el for el in panel.iter("span") if "badge--ended" in (el.get("class") or "")]
    assert badges and text_of(badges[0]) == "ended"
    assert "assumed failed" in text_of(panel)


def test_derived_facts_follow_edits(client, auth, make_page):
    make_page("Ana Ruiz", kind="leader")
    make_page("Writing teachers", kind="community")
    init = make_page("Writing assessment", kind="initiative", fields={"status": "active", "sponsors": ["ana-ruiz"]})
    make_page("Scoring days", kind="routine", fields={"owner": "writing-teachers"})
    make_page("Release time mattered", kind="lesson", body="About [[writing-assessment]].")
    make_page("Rubric circle", kind="community", body="We keep [[Writing assessment]] alive.")
    auth.login("reader")
    assert derived(parse(client.get("/wiki/ana-ruiz")), "Initiatives started") == ["Writing assessment"]
    assert derived(parse(client.get("/wiki/writing-teachers")), "Routines it owns") == ["Scoring days"]
    doc = parse(client.get(f"/wiki/{init}"))
    assert derived(doc, "Lessons") == ["Release time mattered"]
    assert derived(doc, "Carried on by") == ["Rubric circle"]

    # Edits elsewhere change them: the sponsor is removed, the routine changes owner, the lesson stops linking.
    make_page("Writing assessment", kind="initiative", fields={"status": "active", "sponsors": []})
    make_page("Scoring days", kind="routine", fields={"owner": "rubric-circle"})
    make_page("Release time mattered", kind="lesson", body="No link now.")
    make_page("New protocol", kind="initiative", fields={"sponsors": ["ana-ruiz"]})
    assert derived(parse(client.get("/wiki/ana-ruiz")), "Initiatives started") == ["New protocol"]
    assert derived(parse(client.get("/wiki/writing-teachers")), "Routines it owns") == []
    assert derived(parse(client.get("/wiki/rubric-circle")), "Routines it owns") == ["Scoring days"]
    assert derived(parse(client.get(f"/wiki/{init}")), "Lessons") == []


def test_derived_facts_leave_out_pages_the_reader_may_not_see(client, auth, make_page):
    make_page("Ana Ruiz", kind="leader")
    make_page("Public start", kind="initiative", fields={"sponsors": ["ana-ruiz"]})
    make_page("Confidential start", kind="initiative", fields={"sponsors": ["ana-ruiz"]}, visibility="restricted",
              as_user="curator")
    auth.login("reader")
    assert derived(parse(client.get("/wiki/ana-ruiz")), "Initiatives started") == ["Public start"]


def test_leader_initiatives_are_never_typed_in(client, auth, make_page):
    auth.login("contributor")
    doc = parse(client.get("/new?kind=leader"))
    assert not [el for el in doc.iter() if el.get("name") == "f.initiatives_started"]
    r = client.put("/api/pages/ana", json={"title": "Ana", "kind": "leader",
                                           "fields": {"initiatives_started": ["x"]}})
    assert r.status_code == 422


# --- lists per kind with filters, in HTML and JSON ---------------------------------------------------------------

def test_lists_filter_by_kind_status_and_tag_in_html_and_api(client, auth, make_page):
    make_page("Ended one", kind="initiative", fields={"status": "ended", "ended_reason": "funding",
                                                      "started": "2001", "ended": "2004"}, tags=["math"])
    make_page("Active one", kind="initiative", fields={"status": "active"}, tags=["math"])
    make_page("Ended elsewhere", kind="initiative", fields={"status": "ended", "ended_reason": "mandate"}, tags=["ela"])
    make_page("Hidden ended", kind="initiative", fields={"status": "ended", "ended_reason": "funding"}, tags=["math"],
              visibility="restricted", as_user="curator")
    make_page("Dispersed group", kind="community", fields={"stage": "dispersed"}, tags=["math"])
    auth.login("reader")
    r = client.get("/wiki?kind=initiative&status=ended&tag=math")
    text = r.get_data(as_text=True)
    assert "Ended one" in text and "2001–2004" in text and "ended: funding" in text
    for absent in ("Active one", "Ended elsewhere", "Hidden ended", "Dispersed group"):
        assert absent not in text
    api = client.get("/api/pages?kind=initiative&status=ended&tag=math").get_json()
    assert [p["slug"] for p in api["pages"]] == ["ended-one"]
    # Without a kind, the status filter offers every kind's statuses.
    doc = parse(client.get("/wiki?status=dispersed"))
    assert "Dispersed group" in text_of(doc.find(".//ul[@class='page-list']"))
    assert {o.get("label") for o in doc.iter("optgroup")} >= {"Initiatives", "Communities of practice"}


def test_lists_page_through_many_results(app, client, auth):
    from kb import pages

    from conftest import viewer_for

    admin = viewer_for(app, "admin")
    with app.extensions["kb_db"].writing() as s:
        for i in range(105):
            pages.save_page(s, admin, None, pages.PageState(title=f"Routine {i:03d}", kind="routine"), None)
    auth.login("reader")
    first = client.get("/wiki?kind=routine").get_data(as_text=True)
    assert "Routine 000" in first and "Routine 099" in first and "Routine 100" not in first
    assert 'rel="next"' in first
    second = client.get("/wiki?kind=routine&page=2").get_data(as_text=True)
    assert "Routine 104" in second and "Routine 000" not in second


# --- before you end this initiative --------------------------------------------------------------------------

def _ending_form(slug, title="District writing assessment", **extra):
    form = {"kind": "initiative", "title": title, "base_revision": "1", "f.status": "ended",
            "f.ended_reason": "assumed-failed", "f.evidence": "Teachers loved it; progress was measured.",
            "f.experts": "Grace Oduya", "f.carried_by": ["scoring-days"], "body": "Notes"}
    form.update(extra)
    return form


def test_ending_an_initiative_shows_what_it_carries_before_saving(client, auth, make_page):
    slug = make_page("District writing assessment", kind="initiative",
                     fields={"status": "active", "started": "2003", "experts": ["Grace Oduya"]},
                     tags=["writing"], body="Notes")
    make_page("Scoring days", kind="routine")
    make_page("Rubric circle", kind="community", body="We carry [[district-writing-assessment]].")
    make_page("Release time mattered", kind="lesson", body="See [[district-writing-assessment]].")
    make_page("Secret lesson", kind="lesson", body="See [[district-writing-assessment]].", visibility="restricted",
              as_user="curator")
    make_page("Earlier writing assessment", kind="initiative",
              fields={"status": "ended", "ended_reason": "leader-change"}, tags=["writing"],
              body="A district writing assessment scored by teachers.")
    auth.login("contributor")

    r = client.post(f"/wiki/{slug}/edit", data=_ending_form(slug))
    assert r.status_code == 200
    doc = parse(r)
    panel = by_id(doc, "before-ending")
    assert panel is not None
    text = text_of(panel)
    assert "Teachers loved it" in text
    assert "Release time mattered" in text and "Secret lesson" not in text
    assert "Scoring days" in text and "Rubric circle" in text
    assert "Grace Oduya" in text
    assert "Earlier writing assessment" in text  # tried before, from search
    assert "assumed failed" in text.lower()
    # Nothing saved yet; the form still holds what was typed, with a confirm button.
    assert client.get(f"/api/pages/{slug}").get_json()["fields"]["status"] == "active"
    assert control_values(doc, "f.ended_reason") == ["assumed-failed"]
    assert any(b.get("name") == "confirm_end" and b.get("value") == "1" for b in doc.iter("button"))

    r = client.post(f"/wiki/{slug}/edit", data=_ending_form(slug, confirm_end="1"))
    assert r.status_code == 302
    saved = client.get(f"/api/pages/{slug}").get_json()
    assert saved["fields"]["status"] == "ended" and saved["fields"]["ended_reason"] == "assumed-failed"
    assert saved["revision"] == 2


def test_ending_without_a_reason_shows_the_error_not_the_review(client, auth, make_page):
    slug = make_page("District writing assessment", kind="initiative", fields={"status": "active"})
    auth.login("contributor")
    r = client.post(f"/wiki/{slug}/edit", data=_ending_form(slug, **{"f.ended_reason": ""}))
    assert r.status_code == 422
    doc = parse(r)
    assert by_id(doc, "before-ending") is None
    assert "say why it ended" in text_of(by_id(doc, "field-ended_reason"))


def test_no_review_when_already_ended_or_when_other_fields_change(client, auth, make_page):
    slug = make_page("Old assessment", kind="initiative", fields={"status": "ended", "ended_reason": "funding"})
    auth.login("contributor")
    r = client.post(f"/wiki/{slug}/edit", data={"kind": "initiative", "title": "Old assessment", "base_revision": "1",
                                                 "f.status": "replaced", "f.ended_reason": "replaced"})
    assert r.status_code == 302 and r.headers["Location"] == f"/wiki/{slug}"  # saved, no review screen
    assert client.get(f"/api/pages/{slug}").get_json()["fields"]["status"] == "replaced"
    slug = make_page("Running", kind="initiative", fields={"status": "active"})
    r = client.post(f"/wiki/{slug}/edit", data={"kind": "initiative", "title": "Running", "base_revision": "1",
                                                 "f.status": "sustained"})
    assert r.status_code == 302 and r.headers["Location"] == f"/wiki/{slug}"
    assert client.get(f"/api/pages/{slug}").get_json()["fields"]["status"] == "sustained"


def test_enter_key_default_button_is_plain_save(client, auth):
    """The first submit button of the form is what Enter presses: it must not add rows or confirm an ending."""
    auth.login("contributor")
    doc = parse(client.get("/new?kind=leader"))
    form = by_id(doc, "page-editor")
    first = next(el for el in form.iter() if el.tag == "button" and el.get("type") == "submit")
    assert first.get("name") is None


# --- what a kind means, declared once ---------------------------------------------------------------------------

def test_running_and_ended_statuses_are_statuses_of_their_kind():
    for kind in kinds.KINDS.values():
        if kind.status_field is None:
            assert kind.running_statuses == kind.ended_statuses == ()
            continue
        choices = set(kind.field(kind.status_field).choices)
        assert set(kind.running_statuses) <= choices and set(kind.ended_statuses) <= choices
        assert not set(kind.running_statuses) & set(kind.ended_statuses)


def test_an_initiative_is_under_way_not_started_yet_or_over():
    assert kinds.is_running("initiative", "active") and kinds.is_open("initiative", "active")
    assert not kinds.is_running("initiative", "proposed") and kinds.is_open("initiative", "proposed")
    assert kinds.is_ended("initiative", "replaced") and not kinds.is_open("initiative", "replaced")
    assert not any(f("initiative", None) for f in (kinds.is_running, kinds.is_ended, kinds.is_open))
    assert not kinds.is_ended("partnership", "replaced") and kinds.is_ended("partnership", "ended")
    assert kinds.is_ended("community", "dispersed") and not kinds.is_ended("page", "ended")
    assert kinds.ENDING_STATUSES == ("ended", "replaced")


def test_derived_facts_are_declared_between_real_kinds_through_link_fields():
    for fact in kinds.DERIVED:
        assert fact.on in kinds.KINDS and set(fact.from_kinds) <= set(kinds.KINDS)
        for name in fact.via:
            assert all(kinds.KINDS[k].field(name).is_link for k in fact.from_kinds), (fact.name, name)
        assert fact.unless is None or kinds.KINDS[fact.on].field(fact.unless).is_link
    for kind in kinds.KINDS.values():
        for f in kind.fields:
            if f.derived:
                assert any(d.on == kind.name and (d.name, d.label) == (f.name, f.label) for d in kinds.DERIVED)


def test_derived_facts_leave_out_what_the_page_already_says():
    page = SimpleNamespace(kind="initiative", fields={"carried_by": ["scoring-days"]})
    rubric = SimpleNamespace(slug="rubric-circle", title="Rubric circle", kind="community")
    days = SimpleNamespace(slug="scoring-days", title="Scoring days", kind="routine")
    lesson = SimpleNamespace(slug="release-time", title="Release time", kind="lesson")
    facts = derived_facts(page, {"body": [days, lesson, rubric]})
    assert facts == [("Lessons", [lesson]), ("Carried on by", [rubric])]


def test_an_ending_review_names_fields_and_derived_facts_of_its_kind():
    reviewed = [kind for kind in kinds.KINDS.values() if kind.ending_review is not None]
    assert [kind.name for kind in reviewed] == ["initiative"]
    for kind in reviewed:
        review = kind.ending_review
        assert kind.ended_statuses
        assert all(kind.field(name) for name in (review.reason, review.evidence, review.experts, review.carried_by))
        assert {review.lessons, review.carriers} <= {d.name for d in kinds.DERIVED if d.on == kind.name}
        assert kind.field(review.reason).needed_when_ended
