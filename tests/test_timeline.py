"""The reform timeline and the routine calendar: the data, the SVG drawing, the pages and the JSON."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

import pytest
from flask import render_template

from conftest import viewer_for
from kb import timeline
from kb.errors import InvalidFields

SVG = "{http://www.w3.org/2000/svg}"
TODAY = date(2026, 7, 1)


@pytest.fixture
def history(make_page):
    """A district's recent history: two superintendents, an assessment director, initiatives and a partnership."""
    make_page("Ana Ruiz", kind="leader", fields={"tenures": [
        {"role": "Superintendent", "from": "2009-07", "to": "2014-06", "hired": "external",
         "left_because": "Took a larger district"},
        {"role": "Deputy superintendent", "from": "2005", "to": "2009-06", "hired": "internal"}]}, tags=["writing"])
    make_page("Marcus Lee", kind="leader", fields={"tenures": [
        {"role": "superintendent", "from": "2014-07", "hired": "external"}]})
    make_page("Unknown dates", kind="leader", fields={"tenures": [{"role": "Superintendent"}]})
    make_page("Writing assessment", kind="initiative", fields={
        "status": "ended", "started": "2008", "ended": "2014-06", "ended_reason": "assumed-failed",
        "sponsors": ["ana-ruiz"]}, tags=["writing"])
    make_page("New writing protocol", kind="initiative", fields={"status": "piloting", "started": "2015-01"},
              tags=["writing"])
    make_page("Balanced literacy", kind="initiative", fields={"status": "replaced", "started": "2010",
                                                             "ended_reason": "leader-change"})
    make_page("Undated initiative", kind="initiative", fields={"status": "active"})
    make_page("University partnership", kind="partnership", fields={"status": "active", "started": "2011"})
    make_page("Personnel plan", kind="initiative", fields={"status": "active", "started": "2012"},
              visibility="restricted", as_user="curator")


def build(app, user="contributor", **filters):
    with app.extensions["kb_db"].reading() as s:
        return timeline.build_timeline(s, viewer_for(app, user), today=TODAY, **filters)


def draw(app, tl):
    """The picture as /timeline.svg serves it: laid out by kb.timeline, drawn by its template."""
    with app.test_request_context():
        return render_template("timeline/_picture.svg", picture=timeline.picture(tl))


def bars_by_title(tl):
    return {b.title: b for b in tl.bars}


# --- dates on the axis ---------------------------------------------------------------------------------------

def test_dates_become_positions_on_the_year_axis():
    assert timeline.year_position("2002") == 2002.0
    assert timeline.year_position("2002", end=True) == 2003.0
    assert timeline.year_position("2002-07") == pytest.approx(2002.5)
    assert timeline.year_position("2002-06", end=True) == pytest.approx(2002.5)
    assert timeline.year_position("2004-01-01") == 2004.0
    assert timeline.year_position("2004-12-31", end=True) == pytest.approx(2005.0)
    assert timeline.year_position("soon") is None and timeline.year_position(None) is None


# --- the data ------------------------------------------------------------------------------------------------

def test_lanes_per_role_then_initiatives_then_partnerships(app, history):
    tl = build(app)
    labels = [(lane.kind, lane.label) for lane in tl.lanes]
    assert labels == [("role", "Deputy superintendent"), ("role", "Superintendent"),
                      ("initiative", "Initiatives"), ("partnership", "Partnerships")]
    superintendents = [b.title for b in tl.lanes[1].bars]
    assert superintendents == ["Ana Ruiz", "Marcus Lee"]  # "superintendent" and "Superintendent" are one role
    assert tl.roles == ["Deputy superintendent", "Superintendent"]


def test_bars_carry_dates_status_and_why_they_ended(app, history):
    bars = bars_by_title(build(app))
    ended = bars["Writing assessment"]
    assert (ended.x0, ended.x1) == (2008.0, pytest.approx(2014.5))
    assert ended.status == "ended" and ended.ended_reason == "assumed-failed" and ended.ended
    assert not ended.open_ended
    assert "Ended because: assumed failed" in ended.detail


def test_open_ended_items_run_to_today(app, history):
    tl = build(app)
    bars = bars_by_title(tl)
    today = timeline.year_position(TODAY.isoformat(), end=True)
    for title in ("New writing protocol", "University partnership"):
        assert bars[title].open_ended and bars[title].x1 == pytest.approx(today)
    lee = [b for b in tl.bars if b.title == "Marcus Lee"][0]
    assert lee.open_ended and lee.x1 == pytest.approx(today) and lee.role == "superintendent"
    # Ended without an end date: not drawn to today, and marked as not recorded.
    literacy = bars["Balanced literacy"]
    assert not literacy.open_ended and literacy.end_unknown and literacy.x1 == 2011.0
    assert tl.last_year == 2027


def test_pages_without_dates_are_listed_not_drawn(app, history):
    tl = build(app)
    undated = {u.title: u.missing for u in tl.undated}
    assert undated == {"Unknown dates": "no dates on its tenures", "Undated initiative": "no start date"}
    assert "Unknown dates" not in {b.title for b in tl.bars}


def test_pages_the_viewer_may_not_read_are_not_drawn(app, history):
    assert "Personnel plan" not in bars_by_title(build(app, "contributor"))
    assert "Personnel plan" in bars_by_title(build(app, "curator"))


def test_filters_by_role_kind_and_tag(app, history):
    by_role = build(app, role="SUPERINTENDENT")
    assert [lane.label for lane in by_role.lanes if lane.kind == "role"] == ["Superintendent"]
    assert {b.title for b in by_role.lanes[0].bars} == {"Ana Ruiz", "Marcus Lee"}
    by_kind = build(app, kind="partnership")
    assert [lane.kind for lane in by_kind.lanes] == ["partnership"]
    by_tag = build(app, tag="writing")
    assert {b.title for b in by_tag.bars} == {"Ana Ruiz", "Writing assessment", "New writing protocol"}
    with pytest.raises(InvalidFields):
        build(app, kind="routine")


def test_json_has_lanes_bars_and_page_addresses(client, auth, history):
    auth.login("reader")
    data = client.get("/api/timeline").get_json()
    assert data["today"] == date.today().isoformat()
    lanes = {lane["label"]: lane for lane in data["lanes"]}
    assert set(lanes) == {"Deputy superintendent", "Superintendent", "Initiatives", "Partnerships"}
    ended = [b for b in lanes["Initiatives"]["bars"] if b["slug"] == "writing-assessment"][0]
    assert ended == {"slug": "writing-assessment", "title": "Writing assessment", "kind": "initiative",
                     "from": "2008", "to": "2014-06", "open_ended": False, "end_unknown": False,
                     "x0": 2008.0, "x1": 2014.5, "status": "ended", "ended_reason": "assumed-failed",
                     "url": "/wiki/writing-assessment"}
    assert all(b["slug"] != "personnel-plan" for lane in data["lanes"] for b in lane["bars"])
    assert client.get("/api/timeline?kind=partnership").get_json()["filters"]["kind"] == "partnership"
    assert client.get("/api/timeline?kind=lesson").status_code == 422


def test_json_needs_a_signed_in_reader(client):
    assert client.get("/api/timeline").status_code == 401


# --- the picture ---------------------------------------------------------------------------------------------

def test_svg_is_well_formed_and_has_a_linked_bar_per_item(app, history):
    tl = build(app)
    svg = ET.fromstring(draw(app, tl))
    assert svg.tag == f"{SVG}svg"
    links = svg.findall(f".//{SVG}a")
    assert len(links) == len(tl.bars) == 7
    by_href = {a.get("href"): a for a in links}
    assert set(by_href) >= {"/wiki/writing-assessment", "/wiki/marcus-lee", "/wiki/university-partnership"}
    ended = by_href["/wiki/writing-assessment"]
    assert "Ended because: assumed failed" in ended.find(f"{SVG}title").text
    assert ended.get("aria-label") == ended.find(f"{SVG}title").text
    assert ended.find(f"{SVG}rect").get("fill") == timeline.STATUS_COLOURS["ended"]
    assert ended.find(f".//{SVG}path[@class='timeline-end-marker']") is not None
    assert "ended: assumed failed" in "".join(ended.itertext())
    piloting = by_href["/wiki/new-writing-protocol"]
    assert piloting.find(f"{SVG}rect").get("fill") == timeline.STATUS_COLOURS["piloting"]
    assert piloting.find(f".//{SVG}path[@class='timeline-bar__open']") is not None
    # Bars are placed by date: the ended initiative's bar stops where its successor's starts (mid-2014 vs 2015).
    x_end = float(ended.find(f"{SVG}rect").get("x")) + float(ended.find(f"{SVG}rect").get("width"))
    assert x_end < float(piloting.find(f"{SVG}rect").get("x"))
    assert svg.find(f".//{SVG}g[@class='timeline-today']") is not None
    years = [t.text for t in svg.iter(f"{SVG}text") if "timeline-year" in (t.get("class") or "")]
    assert "2006" in years and "2026" in years


def test_svg_escapes_whatever_users_typed(app, make_page):
    make_page('Pilot <script>alert(1)</script> & "friends"', kind="initiative",
              fields={"status": "active", "started": "2010"}, body="x")
    make_page("Role test", kind="leader",
              fields={"tenures": [{"role": "<b>Chief</b> \x01 officer", "from": "2001", "to": "2003"}]})
    text = draw(app, build(app))
    assert "<script" not in text and "<b>" not in text
    svg = ET.fromstring(text)  # well-formed, even with a control character in the input
    assert svg.find(f".//{SVG}script") is None
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    assert any('Pilot <script>alert(1)</script> & "friends"' in (t or "") for t in titles)
    assert any("Role: <b>Chief</b>  officer" == t.text for t in svg.iter(f"{SVG}text"))


def test_an_empty_timeline_still_draws(app):
    svg = ET.fromstring(draw(app, build(app)))
    assert svg.findall(f".//{SVG}a") == []
    assert "Nothing to draw" in "".join(svg.itertext())


def test_timeline_page_has_the_picture_the_table_and_the_filters(client, auth, history):
    auth.login("contributor")
    r = client.get("/timeline?tag=writing")
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert text.count('data-slug="writing-assessment"') == 1  # its bar in the picture
    assert '<th scope="row"><a href="/wiki/writing-assessment">Writing assessment</a></th>' in text  # its table row
    assert 'id="timeline-table"' in text and "Ended because: assumed failed" in text
    assert "Balanced literacy" not in text  # filtered out by tag
    assert "Personnel plan" not in client.get("/timeline").get_data(as_text=True)
    assert "<style" not in text and not re.search(r"\sstyle=", text)  # the CSP forbids inline styles
    assert "timeline.js" in text and "timeline.css" in text


def test_timeline_svg_download(client, auth, history):
    auth.login("reader")
    r = client.get("/timeline.svg?kind=initiative")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    svg = ET.fromstring(r.data)
    assert len(svg.findall(f".//{SVG}a")) == 3


def test_timeline_needs_sign_in(client):
    r = client.get("/timeline")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/timeline"


# --- the routine calendar ------------------------------------------------------------------------------------

@pytest.fixture
def routines(make_page):
    make_page("Writing teachers", kind="community")
    make_page("Scoring days", kind="routine", fields={"months": [3, 10], "owner": "writing-teachers",
                                                      "people_who_can_run_it": 1, "cadence": "twice a year"})
    make_page("Budget calendar", kind="routine", fields={"months": [1, 2, 3], "owner": "finance-office",
                                                         "people_who_can_run_it": 4})
    make_page("Data review", kind="routine", fields={"owner": "writing-teachers"})
    make_page("Secret routine", kind="routine", fields={"months": [3], "people_who_can_run_it": 1},
              visibility="restricted", as_user="curator")


def test_calendar_places_routines_by_month_and_flags_a_single_runner(app, routines):
    with app.extensions["kb_db"].reading() as s:
        cal = timeline.routine_calendar(s, viewer_for(app, "reader"))
    assert [r.title for r in cal.months[3]] == ["Scoring days", "Budget calendar"]  # at risk first
    assert [r.title for r in cal.months[10]] == ["Scoring days"]
    assert cal.months[7] == []
    assert [r.title for r in cal.unscheduled] == ["Data review"]
    assert [r.title for r in cal.at_risk] == ["Scoring days"]
    assert cal.owner_titles == {"writing-teachers": "Writing teachers"}  # finance-office is not written yet


def test_calendar_page_shows_owners_and_flags(client, auth, routines):
    auth.login("reader")
    r = client.get("/calendar")
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert "only one person can run it" in text
    assert text.count("routine--at-risk") == 2  # Scoring days, in March and in October
    assert '<a href="/wiki/writing-teachers">Writing teachers</a>' in text
    assert 'class="wanted"' in text  # finance-office has no page yet
    assert "Secret routine" not in text
    data = client.get("/api/calendar").get_json()
    assert [r["slug"] for r in data["at_risk"]] == ["scoring-days"]
    assert [r["slug"] for r in data["months"]["3"]] == ["scoring-days", "budget-calendar"]
    assert data["months"]["3"][0]["owner_title"] == "Writing teachers"


def test_calendar_filters_by_tag_and_owner(client, auth, make_page, routines):
    make_page("Tagged routine", kind="routine", fields={"months": [5]}, tags=["writing"])
    auth.login("reader")
    data = client.get("/api/calendar?tag=writing").get_json()
    assert [r["slug"] for rs in data["months"].values() for r in rs] == ["tagged-routine"]
    data = client.get("/api/calendar?owner=writing-teachers").get_json()
    assert {r["slug"] for rs in data["months"].values() for r in rs} | {r["slug"] for r in data["unscheduled"]} == {
        "scoring-days", "data-review"}


def test_bars_go_on_the_first_row_with_room():
    """The log-time packing places bars exactly as a plain first-fit scan over the rows would."""
    import random

    from kb.timeline import _FirstFree

    rng = random.Random(5)
    free, ends = _FirstFree(), []
    for _ in range(3000):
        x0, right = rng.uniform(0, 1000), rng.uniform(0, 1200)
        expected = next((i for i, end in enumerate(ends) if x0 - 6 >= end), None)
        got = free.first_at_most(x0 - 6)
        assert got == expected
        if got is None:
            ends.append(right)
            got = free.append()
        ends[got] = right
        free.set(got, right)
