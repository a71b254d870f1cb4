"""Pages in the browser: view, create, edit with preview, history, diff, revert, rename, delete and restore."""
from __future__ import annotations

from flask import (Blueprint, Response, abort, current_app, flash, get_template_attribute, jsonify, redirect,
                   render_template, request, url_for)
from sqlalchemy import select

from kb import access, kinds, pages, search, viewcache
from kb.derived import derived_facts
from kb.ending import before_ending, ending_now
from kb.errors import EditConflict, InvalidFields, KBError, NotAllowed, NotFound
from kb.models import User
from kb.render import trusted
from kb.web.context import MAX_PAGE_NUMBER, db_session, kick_index, now, whole_number
from kb.web.forms import blank_rows, form_values, state_from_form
from kb.web.login import current_viewer, require_reader

bp = Blueprint("wiki", __name__)


def _store_cache(revision_id: int, html: str) -> None:
    # A view runs in a read transaction; the cache is written in its own short write, and may simply fail.
    try:
        with current_app.extensions["kb_db"].writing() as s:
            pages.store_html(s, revision_id, html)
    except Exception:  # a busy database only costs a re-render next time
        current_app.logger.warning("could not cache HTML for revision %s", revision_id)


@bp.route("/")
def home():
    require_reader()
    viewer = current_viewer()
    s = db_session()
    recent = pages.recent_revisions(s, viewer, limit=8)
    counts = pages.count_by_kind(s, viewer)
    return render_template("wiki/home.html", recent=recent, counts=counts)


@bp.route("/wiki")
def index():
    """Pages of one kind (or of every kind), filtered by status and tag, by title, a hundred at a time."""
    require_reader()
    viewer = current_viewer()
    kind = request.args.get("kind") or None
    if kind and kind not in kinds.KINDS:
        kind = None
    status = (request.args.get("status") or "").strip() or None
    tag = (request.args.get("tag") or "").strip() or None
    page_no = whole_number(request.args, "page", 1, low=1, high=MAX_PAGE_NUMBER)
    per_page = 100
    s = db_session()
    found = pages.list_pages(s, viewer, kind=kind, tag=tag, status=status, limit=per_page + 1,
                             offset=(page_no - 1) * per_page)
    # The status choices of the chosen kind, or of every kind that has a status, grouped by kind.
    status_groups = [(k, list(k.field(k.status_field).choices)) for k in kinds.KINDS.values()
                     if k.status_field and (kind is None or k.name == kind)]
    args = {k: v for k, v in (("kind", kind), ("status", status), ("tag", tag)) if v}
    return render_template("wiki/index.html", pages=found[:per_page], kind=kind, status=status, tag=tag,
                           status_groups=status_groups, statuses=[c for _, cs in status_groups for c in cs],
                           tags=pages.all_tags(s, viewer)[:60], page_no=page_no, has_next=len(found) > per_page,
                           args=args)


def _load(slug: str):
    """The readable page at slug; an old slug redirects to the new address."""
    require_reader()
    page = pages.get_page(db_session(), current_viewer(), slug)
    if page.slug != slug:
        target = request.path.replace(f"/wiki/{slug}", f"/wiki/{page.slug}", 1)
        if request.query_string:
            target += "?" + request.query_string.decode("utf-8", "replace")
        abort(redirect(target, 301))
    return page


@bp.route("/wiki/<slug>")
def view(slug: str):
    """A page: its layout and buttons rendered now, the rest from its stored view (kb.viewcache) when there is one."""
    try:
        page = _load(slug)
    except NotFound:
        guess = slug.replace("-", " ")
        return render_template("wiki/missing.html", slug=slug,
                               title=request.args.get("title") or guess[:1].upper() + guess[1:]), 404
    viewer, s = current_viewer(), db_session()
    # The people the page names (owner, verifier, last editor), in one query rather than one each in the template.
    s.scalars(select(User).where(User.id.in_({page.owner_id, page.verifier_id, page.updated_by_id} - {None}))).all()
    stored = viewcache.store_for(current_app).fragments(s, viewer, page, lambda: _stored_fragments(s, viewer, page))
    return render_template("wiki/view.html", page=page, content=trusted(stored["content"]),
                           backlinks=trusted(stored["backlinks"]), may_edit=access.can_edit_page(viewer, page))


def _stored_fragments(s, viewer, page) -> dict[str, str]:
    """The parts of a page view worth storing, for this reader (templates/wiki/_stored.html)."""
    html = pages.current_html(s, viewer, page, cache_store=_store_cache)
    linked = pages.backlinks_by_field(s, viewer, page)
    link_titles = pages.readable_titles(s, viewer, [t for _, t in kinds.field_links(page.kind, page.fields or {})])
    backlinks = sorted({p.slug: p for ps in linked.values() for p in ps}.values(), key=lambda p: p.title.lower())
    return {
        "content": str(get_template_attribute("wiki/_stored.html", "content")(
            page, html, link_titles, derived_facts(page, linked))),
        "backlinks": str(get_template_attribute("wiki/_stored.html", "backlinks")(backlinks)),
    }


@bp.route("/wiki/<slug>/raw")
def raw(slug: str):
    page = _load(slug)
    return Response(page.body, mimetype="text/plain; charset=utf-8")


@bp.route("/wiki/<slug>/history")
def history(slug: str):
    page = _load(slug)
    return render_template("wiki/history.html", page=page, revisions=pages.revisions(db_session(), page))


@bp.route("/wiki/<slug>/revisions/<int:number>")
def revision(slug: str, number: int):
    page = _load(slug)
    s = db_session()
    rev = pages.get_revision(s, page, number)
    html = pages.revision_html(s, current_viewer(), rev)
    return render_template("wiki/revision.html", page=page, rev=rev, html=html,
                           may_edit=access.can_edit_page(current_viewer(), page))


@bp.route("/wiki/<slug>/diff")
def diff(slug: str):
    page = _load(slug)
    s = db_session()
    a = whole_number(request.args, "from", max(page.revision - 1, 1))
    b = whole_number(request.args, "to", page.revision)
    rev_a, rev_b = pages.get_revision(s, page, a), pages.get_revision(s, page, b)
    return render_template("wiki/diff.html", page=page, a=rev_a, b=rev_b, lines=pages.diff_revisions(rev_a, rev_b),
                           revisions=pages.revisions(s, page))


def _editor(kind_name: str, page=None, state=None, errors=None, base_revision=None, comment="", conflict=None,
            status=200, blanks=None, focus=None, ending=None):
    kind = kinds.KINDS[kind_name]
    fields = state.fields if state is not None else (page.fields if page else {})
    return render_template(
        "wiki/edit.html", kind=kind, page=page, state=state, errors=errors or {},
        values=form_values(kind_name, fields or {}, blanks), base_revision=base_revision, comment=comment,
        conflict=conflict, focus=focus, ending=ending), status


@bp.route("/new", methods=["GET", "POST"])
def new():
    require_reader()
    viewer = current_viewer()
    if not viewer.may_edit:
        raise NotAllowed("You need a contributor account to create pages.")
    kind_name = request.values.get("kind", "page")
    if kind_name not in kinds.KINDS:
        raise InvalidFields({"kind": f"unknown kind {kind_name!r}; choose one of {', '.join(kinds.KINDS)}"})
    if kind_name == "handover":
        # Handovers are written with a guided, step-by-step form.
        return redirect(url_for("curate.handover_wizard", **request.args))
    if request.method == "GET":
        title = request.args.get("title", "")
        state = pages.PageState(title=title, kind=kind_name, fields={}, body=kinds.KINDS[kind_name].template)
        return _editor(kind_name, state=state)
    return _save(None, kind_name)


@bp.route("/wiki/<slug>/edit", methods=["GET", "POST"])
def edit(slug: str):
    page = _load(slug)
    viewer = current_viewer()
    if not access.can_edit_page(viewer, page):
        raise NotAllowed("You need a contributor account to edit pages.")
    kind_name = request.values.get("kind", page.kind)
    if kind_name not in kinds.KINDS:
        kind_name = page.kind
    if request.method == "GET":
        return _editor(kind_name, page=page, state=pages.PageState.of(page), base_revision=page.revision)
    return _save(page, kind_name)


def _save(page, kind_name: str):
    """Save the editor's post, or show the form again: with one more row ("add another"), with the errors next to
    their fields, or with the "before you end this initiative" review that must be confirmed first."""
    viewer = current_viewer()
    s = db_session()
    state = state_from_form(request.form, kind_name)
    comment = request.form.get("comment", "")
    base = whole_number(request.form, "base_revision", 0) or None
    add_row = request.form.get("add_row")
    if add_row:
        return _editor(kind_name, page=page, state=state, base_revision=base, comment=comment,
                       blanks=blank_rows(kind_name, request.form, add_row), focus=add_row)
    blanks = blank_rows(kind_name, request.form)
    if ending_now(page, state) and request.form.get("confirm_end") != "1":
        try:
            clean = pages.clean_state(state)
        except InvalidFields as e:
            return _editor(kind_name, page=page, state=state, errors=e.errors, base_revision=base, comment=comment,
                           status=422, blanks=blanks)
        neighbours = None
        try:
            neighbours = search.backend_for(current_app).tried_before(viewer, clean.title, exclude=page.slug)
        except Exception:  # the review is still useful without its search part
            current_app.logger.warning("tried-before lookup failed for %s", page.slug, exc_info=True)
        ending = before_ending(s, viewer, page, clean, neighbours)
        return _editor(kind_name, page=page, state=state, base_revision=base, comment=comment, blanks=blanks,
                       ending=ending)
    try:
        saved, created = pages.save_page(s, viewer, page.slug if page else None, state, base, comment)
        s.commit()
    except EditConflict as e:
        s.rollback()
        current = pages.get_page(s, viewer, page.slug if page else pages.slugify(state.title))
        return _editor(kind_name, page=current, state=state, base_revision=current.revision, comment=comment,
                       conflict=e, status=409, blanks=blanks)
    except InvalidFields as e:
        s.rollback()
        return _editor(kind_name, page=page, state=state, errors=e.errors, base_revision=base, comment=comment,
                       status=422, blanks=blanks)
    except KBError as e:
        s.rollback()
        return _editor(kind_name, page=page, state=state, errors={"_": e.message}, base_revision=base,
                       comment=comment, status=e.status, blanks=blanks)
    kick_index()
    flash("Page created." if created else "Saved.")
    return redirect(url_for("wiki.view", slug=saved.slug))


@bp.route("/preview", methods=["POST"])
def preview():
    """Live preview: the body rendered through the one sanitising function, wanted links marked."""
    require_reader()
    if not current_viewer().may_edit:
        raise NotAllowed()
    body = request.form.get("body")
    if body is None and request.is_json:
        body = (request.get_json(silent=True) or {}).get("body", "")
    html, _ = pages.render_body(db_session(), current_viewer(), body or "")
    return jsonify({"html": html})


@bp.route("/wiki/<slug>/revert/<int:number>", methods=["POST"])
def revert(slug: str, number: int):
    page = _load(slug)
    s = db_session()
    base = whole_number(request.form, "base_revision", 0)
    pages.revert(s, current_viewer(), page, number, base)
    s.commit()
    kick_index()
    flash(f"Revision {number} is current again (saved as a new revision).")
    return redirect(url_for("wiki.view", slug=page.slug))


@bp.route("/wiki/<slug>/rename", methods=["GET", "POST"])
def rename(slug: str):
    page = _load(slug)
    viewer = current_viewer()
    if not access.can_edit_page(viewer, page):
        raise NotAllowed()
    error = None
    if request.method == "POST":
        s = db_session()
        try:
            renamed = pages.rename(s, viewer, page, request.form.get("title", ""),
                                   whole_number(request.form, "base_revision", 0), request.form.get("slug") or None,
                                   request.form.get("comment", ""))
            s.commit()
            kick_index()
            flash("Renamed. Links to the old name keep working.")
            return redirect(url_for("wiki.view", slug=renamed.slug))
        except (InvalidFields, EditConflict) as e:
            s.rollback()
            error = e.message
    return render_template("wiki/rename.html", page=page, error=error), (422 if error else 200)


@bp.route("/wiki/<slug>/delete", methods=["POST"])
def delete(slug: str):
    page = _load(slug)
    s = db_session()
    pages.delete_page(s, current_viewer(), page, request.form.get("comment", ""))
    s.commit()
    kick_index()
    flash(f"“{page.title}” was deleted. An administrator can restore it.")
    return redirect(url_for("wiki.home"))


@bp.route("/admin/deleted")
def deleted():
    require_reader()
    viewer = current_viewer()
    if not viewer.is_admin:
        raise NotFound()
    return render_template("wiki/deleted.html", pages=pages.deleted_pages(db_session(), viewer))


@bp.route("/admin/deleted/<int:page_id>/restore", methods=["POST"])
def restore(page_id: int):
    require_reader()
    s = db_session()
    page = pages.restore_page(s, current_viewer(), page_id)
    s.commit()
    kick_index()
    flash(f"“{page.title}” is restored.")
    return redirect(url_for("wiki.view", slug=page.slug))


@bp.route("/healthz")
def healthz():
    """For monitoring: the database answers and the search index is present. Says nothing about content."""
    from sqlalchemy import text

    try:
        db_session().execute(text("SELECT 1"))
        db_ok = True
    except Exception:
        db_ok = False
    index_ok = search.backend_for(current_app).ready()
    status = 200 if db_ok else 503
    return jsonify({"status": "ok" if db_ok else "error", "database": db_ok, "search_index": index_ok}), status
