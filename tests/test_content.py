"""The bundled corpus in content/: it imports cleanly, every page is sourced, kinds are covered, links resolve."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from kb import kinds, pages, transfer
from kb.cli import system_viewer
from kb.models import Link, Page, Tour

CONTENT = Path(__file__).resolve().parent.parent / "content"
MIN_PER_KIND = {"initiative": 5, "routine": 5, "community": 5, "lesson": 5, "leader": 5, "partnership": 5}


@pytest.fixture(scope="module")
def parsed():
    return transfer.parse_tree(CONTENT)


@pytest.fixture
def imported(app):
    db = app.extensions["kb_db"]
    with db.writing() as s:
        report = transfer.import_tree(s, system_viewer(s), CONTENT)
    return app, report


def test_the_corpus_imports_cleanly(imported):
    app, report = imported
    assert report.created >= 60 and not report.warnings
    assert report.tours >= 4


def test_every_page_cites_its_sources(parsed):
    page_list, _ = parsed
    unsourced = [p.path for p in page_list if not p.state.sources]
    assert unsourced == []
    seeds = ("Learning Partnership", "Learning Systems", "Partners at Every Level", "Fresno", "SCALE", "Partnership")
    for p in page_list:
        assert any(any(word in s for word in seeds) for s in p.state.sources), p.path


def test_each_kind_has_enough_pages(parsed):
    page_list, _ = parsed
    counts = {k: 0 for k in kinds.KINDS}
    for p in page_list:
        counts[p.state.kind] += 1
    for kind, minimum in MIN_PER_KIND.items():
        assert counts[kind] >= minimum, f"{kind}: {counts[kind]} pages, need {minimum}"
    assert counts["page"] >= 5
    assert 1 <= counts["handover"]
    assert len(page_list) >= 60


def test_handover_examples_are_labelled_as_worked_examples(parsed):
    page_list, _ = parsed
    for p in page_list:
        if p.state.kind == "handover":
            assert "example" in p.state.title.lower() and "example" in p.state.body.lower()


def test_tour_stops_point_to_pages_in_the_corpus(parsed):
    page_list, tour_specs = parsed
    slugs = {p.slug for p in page_list}
    assert len(tour_specs) >= 4
    for tour in tour_specs:
        assert tour.stops, tour.where
        for i, stop in enumerate(tour.stops, 1):
            assert stop.page in slugs, f"{tour.where}: stop {i} names missing page {stop.page}"
            assert stop.note.strip(), f"{tour.where}: stop {i} has no curator's note"


def test_at_most_five_percent_of_links_are_wanted(imported):
    app, _ = imported
    with app.extensions["kb_db"].reading() as s:
        total = s.scalar(select(func.count(Link.id)))
        viewer = system_viewer(s)
        wanted = sum(n for _, n in pages.wanted_pages(s, viewer, limit=10_000))
    assert total > 200
    assert wanted / total <= 0.05, f"{wanted} of {total} links point to missing pages"


def test_front_matter_dates_parse(parsed):
    page_list, _ = parsed
    for p in page_list:
        kind = kinds.KINDS[p.state.kind]
        for f in kind.fields:
            value = (p.state.fields or {}).get(f.name)
            if f.type == "date" and value:
                kinds.normalize_date(value)
            if f.type == "tenures":
                for t in value or []:
                    for key in ("from", "to"):
                        if t.get(key):
                            kinds.normalize_date(t[key])


def test_the_writing_assessment_case_says_it_is_an_amalgam(imported):
    app, _ = imported
    with app.extensions["kb_db"].reading() as s:
        case = s.scalar(select(Page).where(Page.slug == "writing-assessment-case"))
        assert case is not None and "amalgam" in case.body.lower()
        assert s.scalar(select(func.count(Tour.id))) >= 4
