"""Import and export of the content format: round trip, and clean all-or-nothing failures."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from kb.models import Page, Revision, Tour

GOOD = """---
title: The Learning Partnership
kind: initiative
tags: [minneapolis, partnership]
sources:
  - "The Learning Partnership Documentation (2008), Overview"
fields:
  status: ended
  started: 2002
  ended: 2007-06
  ended_reason: leader-change
  sponsors: [carol-johnson]
---
Co-designed with [[Carol Johnson]] and the [[summer-institutes|summer institutes]].
"""

LEADER = """---
title: Carol Johnson
kind: leader
fields:
  tenures:
    - role: superintendent
      from: "2003"
      to: "2004"
      hired: external
---
Superintendent when the partnership began.
"""

TOUR = """slug: first-weeks
title: First weeks
audience: [superintendent]
minutes: 30
stops:
  - page: the-learning-partnership
    note: Start **here**.
    question: What would you keep?
  - page: carol-johnson
    note: Who led it.
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def counts(app):
    with app.extensions["kb_db"].reading() as s:
        return (s.scalar(select(func.count(Page.id))), s.scalar(select(func.count(Revision.id))),
                s.scalar(select(func.count(Tour.id))))


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    write(root, "tlp/the-learning-partnership.md", GOOD)
    write(root, "people/carol-johnson.md", LEADER)
    write(root, "東京.md", "---\ntitle: 東京の学校 🏫\ntags: [世界]\n---\nこんにちは [[The Learning Partnership]]\n")
    write(root, "README.md", "# Not a page\n")
    write(root, "tours/first-weeks.yaml", TOUR)
    return root


def test_import_reads_pages_fields_links_and_tours(app, runner, corpus):
    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code == 0, result.output
    assert "3 new pages" in result.output and "1 tours" in result.output
    with app.extensions["kb_db"].reading() as s:
        tlp = s.scalar(select(Page).where(Page.slug == "the-learning-partnership"))
        assert tlp.fields == {"status": "ended", "started": "2002", "ended": "2007-06", "ended_reason": "leader-change",
                              "sponsors": ["carol-johnson"]}
        assert tlp.status == "ended" and tlp.tags == ["minneapolis", "partnership"]
        tour = s.scalar(select(Tour))
        assert [st.page.slug for st in tour.stops] == ["the-learning-partnership", "carol-johnson"]
    # Importing the same tree again changes nothing.
    before = counts(app)
    result = runner.invoke(args=["import", str(corpus)])
    assert "3 unchanged" in result.output and counts(app) == before


def test_export_then_import_into_an_empty_instance_round_trips(app, runner, corpus, tmp_path, make_app,
                                                              new_database_url):
    runner.invoke(args=["import", str(corpus)])
    out = tmp_path / "export"
    result = runner.invoke(args=["export", str(out)])
    assert result.exit_code == 0, result.output
    other = make_app(DATA_DIR=str(tmp_path / "other"), DATABASE_URL=new_database_url("other"))
    result = other.test_cli_runner().invoke(args=["import", str(out)])
    assert result.exit_code == 0, result.output

    def snapshot(a):
        with a.extensions["kb_db"].reading() as s:
            from kb.models import Link

            pages = {p.slug: (p.title, p.kind, p.fields, p.tags, p.visibility, p.sources, p.body)
                     for p in s.scalars(select(Page))}
            links = sorted((s.get(Page, link.source_id).slug, link.target_slug, link.via)
                           for link in s.scalars(select(Link)))
            tours = {t.slug: (t.title, t.audience, t.minutes, [(st.page.slug, st.note, st.question) for st in t.stops])
                     for t in s.scalars(select(Tour))}
            return pages, links, tours

    assert snapshot(other) == snapshot(app)


BAD_FILES = {
    "malformed yaml": ("---\ntitle: Broken\ntags: [unclosed\nkind: page\n---\nbody\n", "starts on line 3"),
    "unknown kind": ("---\ntitle: Memo\nkind: memo\n---\n", "bad.md:3"),
    "invalid field": ("---\ntitle: Routine\nkind: routine\nfields:\n  cadence: weekly\n  months: [14]\n---\n",
                      "bad.md:6"),
    "unknown field": ("---\ntitle: Routine\nkind: routine\nfields:\n  cadense: weekly\n---\n", "bad.md:5"),
    "bad date": ("---\ntitle: I\nkind: initiative\nfields:\n  started: 2003-02-30\n---\n", "bad.md:5"),
    "unknown key": ("---\ntitle: Page\nauthor: me\n---\n", "bad.md:3"),
    "no front matter": ("Just text\n", "bad.md:1"),
    "unclosed front matter": ("---\ntitle: x\n", "bad.md:1"),
    "no title": ("---\nkind: page\n---\nbody\n", "bad.md"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_aborts_the_whole_import_naming_file_and_line(app, runner, corpus, case):
    text, where = BAD_FILES[case]
    write(corpus, "zz/bad.md", text)
    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code != 0
    assert "nothing was written" in result.output
    assert where in result.output, result.output
    assert counts(app) == (0, 0, 0)


def test_duplicate_slug_and_bad_encoding_abort(app, runner, corpus):
    write(corpus, "again.md", GOOD)
    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code != 0 and "already used by" in result.output
    (corpus / "again.md").unlink()
    (corpus / "latin1.md").write_bytes("---\ntitle: Caf\xe9\n---\n".encode("latin-1"))
    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code != 0 and "latin1.md:2" in result.output and "UTF-8" in result.output
    assert counts(app) == (0, 0, 0)


def test_a_tour_stop_naming_a_missing_page_aborts_naming_file_and_stop(app, runner, corpus):
    write(corpus, "tours/broken.yaml", "title: Broken\nstops:\n  - page: carol-johnson\n  - page: nobody-wrote-this\n")
    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code != 0
    assert "broken.yaml" in result.output and "stop 2" in result.output and "nobody-wrote-this" in result.output
    assert counts(app) == (0, 0, 0)


def test_large_import_renders_in_parallel_and_matches_serial(app, tmp_path):
    from kb import transfer
    from kb.cli import system_viewer

    root = tmp_path / "many"
    for i in range(260):
        write(root, f"p{i}.md", f"---\ntitle: Page {i}\n---\nLinks to [[Page {i + 1}]] and [[Page {i + 500}]].\n")
    db = app.extensions["kb_db"]
    with db.writing() as s:
        report = transfer.import_tree(s, system_viewer(s), root, workers=2)
    assert report.created == 260
    from kb import pages

    with db.reading() as s:
        viewer = system_viewer(s)
        last = pages.current_html(s, viewer, s.scalar(select(Page).where(Page.slug == "page-259")))
        first_rev = s.scalar(select(Revision).join(Page).where(Page.slug == "page-0"))
        first = pages.current_html(s, viewer, s.get(Page, first_rev.page_id))
    assert first_rev.html is not None  # rendered during the import, in the worker processes
    assert 'class="wikilink wanted"' in last  # page-260 does not exist
    assert '<a class="wikilink" href="/wiki/page-1">' in first
    assert 'href="/wiki/page-500" title="Page not written yet"' in first


def test_an_export_run_as_a_user_holds_only_what_they_may_read(app, runner, make_page, tmp_path):
    make_page("Open notes", body="See [[Personnel file]].")
    make_page("Personnel file", body="quokkaplume", visibility="restricted", as_user="curator")
    out = tmp_path / "as-reader"
    result = runner.invoke(args=["export", str(out), "--as", "reader"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.md"))
    assert names == ["open-notes.md"]
    assert "quokkaplume" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    full = tmp_path / "full"
    runner.invoke(args=["export", str(full)])
    assert sorted(p.name for p in full.glob("*.md")) == ["open-notes.md", "personnel-file.md"]


def test_reimporting_a_changed_folder_updates_changed_pages_as_import_revisions(app, runner, corpus, make_page):
    from kb import search

    from tests.conftest import viewer_for

    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code == 0, result.output
    before = counts(app)
    with (corpus / "people/carol-johnson.md").open("a", encoding="utf-8") as f:
        f.write("She later led Boston Public Schools; zephyrquill.\n")
    result = runner.invoke(args=["import", str(corpus)])
    assert result.exit_code == 0, result.output
    assert "Imported 0 new pages, updated 1, 2 unchanged;" in result.output
    pages_n, revisions_n, tours_n = counts(app)
    assert (pages_n, revisions_n, tours_n) == (before[0], before[1] + 1, before[2])
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "carol-johnson"))
        assert page.revision == 2 and "zephyrquill" in page.body
        latest = s.scalar(select(Revision).where(Revision.page_id == page.id, Revision.number == 2))
        assert latest.comment == "Imported from corpus/people/carol-johnson.md"
        assert latest.author.name == "admin"
        unchanged = s.scalar(select(Page).where(Page.slug == "the-learning-partnership"))
        assert unchanged.revision == 1
    hits = search.backend_for(app).query(viewer_for(app, "admin"), "zephyrquill")
    assert [h.slug for h in hits.hits] == ["carol-johnson"]


def test_an_export_restores_onto_an_instance_that_already_has_pages(app, runner, corpus, tmp_path, make_page):
    runner.invoke(args=["import", str(corpus)])
    out = tmp_path / "export"
    assert runner.invoke(args=["export", str(out)]).exit_code == 0
    # Since the backup: one page edited, one page added that the backup does not know.
    make_page("Carol Johnson", body="Edited after the backup.", kind="leader")
    make_page("Written later", body="Not in the backup.")
    result = runner.invoke(args=["import", str(out)])
    assert result.exit_code == 0, result.output
    assert "Imported 0 new pages, updated 1, 2 unchanged" in result.output
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "carol-johnson"))
        assert page.body.startswith("Superintendent when the partnership began.")
        assert s.scalar(select(Page).where(Page.slug == "written-later")) is not None


def test_after_a_big_import_everything_written_is_findable_and_check_agrees(app, runner, tmp_path):
    from kb import search

    from tests.conftest import viewer_for

    root = tmp_path / "big"
    for i in range(2000):
        write(root, f"p{i:04d}.md", f"---\ntitle: Big page {i}\n---\nword{i} and [[Big page {i + 1}]].\n")
    result = runner.invoke(args=["import", str(root)])
    assert result.exit_code == 0, result.output
    assert "Imported 2000 new pages" in result.output and "warning" not in result.output
    viewer = viewer_for(app, "admin")
    for i in (0, 999, 1000, 1500, 1999):
        assert [h.slug for h in search.backend_for(app).query(viewer, f"word{i}").hits] == [f"big-page-{i}"]
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "matches the database (2000 pages, 0 queued)" in result.output


def test_an_import_that_cannot_index_says_so(app, runner, corpus, monkeypatch):
    from kb import instance

    monkeypatch.setattr(instance, "IMPORT_INDEX_PATIENCE", 0.5)
    writer = app.extensions["kb_search"].index.open().writer()  # another process holds the index
    try:
        result = runner.invoke(args=["import", str(corpus)])
    finally:
        writer.cancel()
    assert result.exit_code == 0, result.output
    assert "warning: 3 page change(s) are not in the search index yet" in result.output
    assert "kb check --repair" in result.output
