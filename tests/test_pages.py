"""The page domain without HTTP: revisions, conflicts, links, rename, delete and restore."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from kb import pages
from kb.errors import EditConflict, InvalidFields, NotAllowed, TooLarge
from kb.models import Link, Page, Revision
from kb.pages import PageState

from conftest import viewer_for


@pytest.fixture
def db(app):
    return app.extensions["kb_db"]


@pytest.fixture
def admin(app):
    return viewer_for(app, "admin")


@pytest.fixture
def contributor(app):
    return viewer_for(app, "contributor")


def save(db, viewer, title, body="", base=None, **kw):
    with db.writing() as s:
        page, created = pages.save_page(s, viewer, kw.pop("slug", None), PageState(title=title, body=body, **kw),
                                        base, kw.pop("comment", ""))
        return page.slug, page.revision, created


def test_every_save_is_kept_as_a_revision_with_its_whole_state(db, contributor):
    save(db, contributor, "Writing assessment", "first", tags=["literacy"])
    save(db, contributor, "Writing assessment", "second", base=1, tags=["literacy", "assessment"])
    with db.reading() as s:
        revs = list(s.scalars(select(Revision).order_by(Revision.number)))
    assert [r.number for r in revs] == [1, 2]
    assert [r.body for r in revs] == ["first", "second"]
    assert revs[0].tags == ["literacy"] and revs[1].tags == ["literacy", "assessment"]
    assert revs[1].author_id == contributor.user_id


def test_second_save_from_same_base_gets_conflict_with_diff(db, contributor, admin):
    save(db, contributor, "Summer institutes", "original text")
    save(db, admin, "Summer institutes", "admin's text", base=1)
    with pytest.raises(EditConflict) as e:
        save(db, contributor, "Summer institutes", "contributor's text", base=1)
    assert e.value.current == 2
    assert "contributor's text" in e.value.diff and "admin's text" in e.value.diff
    with db.reading() as s:
        assert s.scalar(select(Page.body)) == "admin's text"
        assert s.scalar(select(func.count(Revision.id))) == 2


def test_creating_over_an_existing_page_without_base_is_a_conflict(db, contributor):
    save(db, contributor, "Data teams", "one")
    with pytest.raises(EditConflict):
        save(db, contributor, "Data teams", "two")


def test_slug_is_derived_from_title_in_any_script(db, contributor):
    slug, _, _ = save(db, contributor, "東京の学校 — École Ōsaka 🙂", "body ✓")
    assert slug == "東京の学校-école-ōsaka"


def test_title_without_letters_gets_a_clear_message(db, contributor):
    with pytest.raises(InvalidFields) as e:
        save(db, contributor, "!!! 🙂 ???")
    assert "letter or digit" in e.value.errors["title"]


def test_body_over_one_mebibyte_is_refused(db, contributor):
    with pytest.raises(TooLarge):
        save(db, contributor, "Big", "x" * (1024 * 1024 + 1))


def test_unknown_kind_and_field_are_named(db, contributor):
    with pytest.raises(InvalidFields) as e:
        save(db, contributor, "Thing", kind="memo")
    assert "kind" in e.value.errors
    with pytest.raises(InvalidFields) as e:
        save(db, contributor, "Thing", kind="routine", fields={"cadense": "weekly", "months": ["June"]})
    assert set(e.value.errors) == {"fields.cadense", "fields.months"}


def test_links_and_backlinks_include_link_fields(db, admin):
    save(db, admin, "Carol Johnson", "Superintendent.", kind="leader")
    save(db, admin, "The Learning Partnership", "Led by [[Carol Johnson]]; see [[Summer institutes]].",
         kind="initiative", fields={"status": "ended", "ended_reason": "leader-change", "sponsors": ["carol-johnson"]})
    with db.reading() as s:
        leader = s.scalar(select(Page).where(Page.slug == "carol-johnson"))
        by_field = pages.backlinks_by_field(s, admin, leader)
        assert [p.slug for p in by_field["sponsors"]] == ["the-learning-partnership"]
        assert [p.slug for p in by_field["body"]] == ["the-learning-partnership"]
        assert pages.wanted_pages(s, admin) == [("summer-institutes", 1)]


def test_creating_a_wanted_page_turns_its_links_into_plain_links(app, db, admin):
    save(db, admin, "Overview", "See [[Summer institutes]].")
    with db.reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "overview"))
        assert 'class="wikilink wanted"' in pages.current_html(s, admin, page)
    save(db, admin, "Summer institutes", "Held each summer.")
    with db.reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "overview"))
        html = pages.current_html(s, admin, page)
    assert "wanted" not in html and 'href="/wiki/summer-institutes"' in html


def test_a_link_to_a_page_the_reader_may_not_read_looks_wanted_to_them_only(app, db, admin):
    save(db, admin, "Personnel notes", "private", visibility="restricted")
    save(db, admin, "Overview", "See [[Personnel notes]].")
    reader = viewer_for(app, "reader")
    with db.reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "overview"))
        assert 'class="wikilink wanted"' in pages.current_html(s, reader, page)
        assert "wanted" not in pages.current_html(s, admin, page)
        assert pages.wanted_pages(s, reader) == [("personnel-notes", 1)]
        assert pages.wanted_pages(s, admin) == []


def test_revert_makes_an_old_revision_current_as_a_new_revision(db, admin):
    save(db, admin, "Routine", "v1")
    save(db, admin, "Routine", "v2", base=1)
    with db.writing() as s:
        page = s.scalar(select(Page))
        pages.revert(s, admin, page, 1, 2)
    with db.reading() as s:
        page = s.scalar(select(Page))
        assert (page.revision, page.body) == (3, "v1")


def test_rename_keeps_old_links_working(db, admin):
    save(db, admin, "Data team", "text")
    save(db, admin, "Index", "See [[Data team]].")
    with db.writing() as s:
        page = s.scalar(select(Page).where(Page.slug == "data-team"))
        pages.rename(s, admin, page, "Data teams in schools", 1)
    with db.reading() as s:
        from kb.access import get_readable_page

        moved = get_readable_page(s, admin, "data-team")
        assert moved is not None and moved.slug == "data-teams-in-schools"
        assert [p.slug for p in pages.backlinks(s, admin, moved)] == ["index"]
        index = s.scalar(select(Page).where(Page.slug == "index"))
        assert "wanted" not in pages.current_html(s, admin, index)
        assert pages.wanted_pages(s, admin) == []


def test_delete_hides_and_only_an_admin_restores(db, admin, app):
    curator = viewer_for(app, "curator")
    save(db, admin, "Old memo", "text")
    with db.writing() as s:
        page = s.scalar(select(Page))
        pages.delete_page(s, curator, page)
    with db.reading() as s:
        assert pages.list_pages(s, admin) == []
        page_id = s.scalar(select(Page.id))
    with db.writing() as s, pytest.raises(NotAllowed):
        pages.restore_page(s, curator, page_id)
    with db.writing() as s:
        pages.restore_page(s, admin, page_id)
    with db.reading() as s:
        assert [p.slug for p in pages.list_pages(s, admin)] == ["old-memo"]
        assert s.scalar(select(func.count(Revision.id))) == 1


def test_readers_cannot_save(db, app):
    with pytest.raises(NotAllowed):
        save(db, viewer_for(app, "reader"), "Anything")


def test_only_curators_make_pages_restricted(db, contributor, app):
    with pytest.raises(InvalidFields) as e:
        save(db, contributor, "Personnel note", visibility="restricted")
    assert "visibility" in e.value.errors
    save(db, viewer_for(app, "curator"), "Personnel note", visibility="restricted", readers=["contributor"])


def test_self_links_are_not_backlinks(db, admin):
    save(db, admin, "Loop", "See [[Loop]].")
    with db.reading() as s:
        assert s.scalar(select(func.count(Link.id))) == 0


def test_lookups_by_address_use_the_address_index(app, db, admin):
    """"slug IN (...) AND deleted_at IS NULL" must not walk every live page (it did with a full deleted_at index)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's query planner")  # PostgreSQL plans with statistics
    from kb.access import page_clause

    save(db, admin, "Routine", "v1")
    # Five or more addresses (a page with several links) were enough for SQLite to prefer a deleted_at index.
    statement = select(Page.slug).where(Page.slug.in_(["routine"] + [f"other-{i}" for i in range(7)]),
                                        page_clause(admin))
    sql = str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        plan = " ".join(str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "sqlite_autoindex_pages_1" in plan and "deleted" not in plan


def test_a_diff_of_texts_without_a_last_newline_keeps_each_line_apart():
    """Both texts one line, no newline at the end: the deleted and the added line are two lines of the diff."""
    diff = pages.line_diff("Second editor's words", "First editor").splitlines()
    assert "-Second editor's words" in diff and "+First editor" in diff
