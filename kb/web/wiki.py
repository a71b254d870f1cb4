"""Pages in the browser: view, create, edit with preview, history, diff, revert, rename, delete and restore."""
from __future__ import annotations

import time

from flask import (Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

from kb import access, kinds, pages, search, viewcache
from kb.db import generation
from kb.errors import EditConflict, InvalidFields, KBError, NotAllowed, NotFound
from kb.web.context import app_lru, db_session, fast_reader, kick_index, now
from kb.web.login import current_viewer, require_reader
from kb.web.forms import before_ending, blank_rows, ending_now, form_values, state_from_form

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
    try:
        page_no = max(1, int(request.args.get("page", 1)))
    except ValueError:
        page_no = 1
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
    """A page. Served from its stored rendering when nothing it shows has changed (kb.viewcache), else rendered."""
    require_reader()
    viewer = current_viewer()
    suffix = viewcache.reader_suffix(viewer, now().date(), _marks()["csrf"])
    head = viewcache.lookup(fast_reader(), slug, suffix)
    if head is None or not access.can_read_page(viewer, head) or "_flashes" in session:
        # An old address, a missing or hidden page, or a message to show: the ordinary way.
        s = db_session()
        try:
            page = _load(slug)
        except NotFound:
            guess = slug.replace("-", " ")
            return render_template("wiki/missing.html", slug=slug,
                                   title=request.args.get("title") or guess[:1].upper() + guess[1:]), 404
        body = _page_body(s, viewer, page, suffix, generation(s))
        return render_template("wiki/view.html", page=page, body=Markup(_with_csrf(body)))
    title, body = head.title, viewcache.decode(head.html)
    if body is None:
        s = db_session()  # rendered from this session's snapshot, so stored under its generation
        page, gen = pages.get_page(s, viewer, slug), generation(s)
        # The lookup found nothing stored; look again only if something changed in between.
        moved = (page.revision, gen) != (head.revision, head.generation)
        title, body = page.title, _page_body(s, viewer, page, suffix, gen, look=moved)
    before_title, before_body, after_body = _chrome(viewer)
    return Response(_with_csrf(before_title + str(escape(title)) + before_body + body + after_body),
                    mimetype="text/html")


def _marks() -> dict[str, str]:
    app = current_app._get_current_object()
    marks = app.extensions.get("kb_view_marks")
    if marks is None:
        key = app.config["SECRET_KEY"]
        marks = app.extensions["kb_view_marks"] = {n: viewcache.mark(key, n) for n in ("csrf", "title", "body")}
    return marks


def _with_csrf(html: str) -> str:
    return html.replace(_marks()["csrf"], _csrf_token())


SIGNED_CSRF_REUSE_SECONDS = 300


def _csrf_token() -> str:
    """The session's CSRF token, signed. Signing costs as much as the rest of a stored page view, so a signature
    is reused for a few minutes (a token stays valid for WTF_CSRF_TIME_LIMIT, an hour by default, after signing)."""
    signed = app_lru("kb_signed_csrf", 1024)
    raw = session.get("csrf_token")
    found = signed.get(raw) if raw else None
    if found is not None and time.monotonic() - found[1] < SIGNED_CSRF_REUSE_SECONDS:
        return found[0]
    token = generate_csrf()
    signed.put(session["csrf_token"], (token, time.monotonic()))
    return token


def _page_body(s, viewer, page, suffix: str, gen: int, look: bool = True) -> str:
    """The page's body for this reader with CSRF marks in its forms: the stored one (unless the caller already
    looked), or rendered now and stored."""
    key = viewcache.view_key(page.id, page.revision, suffix)
    body = viewcache.stored(s, key, gen) if look else None
    if body is not None:
        return body
    html = pages.current_html(s, viewer, page, cache_store=_store_cache)
    linked = pages.backlinks_by_field(s, viewer, page)
    link_titles = pages.readable_titles(s, viewer, [t for _, t in kinds.field_links(page.kind, page.fields or {})])
    body = render_template(
        "wiki/_page.html", page=page, html=html, linked=linked, link_titles=link_titles,
        backlinks=sorted({p.slug: p for ps in linked.values() for p in ps}.values(), key=lambda p: p.title.lower()),
        derived=derived_facts(page, linked), may_edit=access.can_edit_page(viewer, page),
        csrf_token=lambda: _marks()["csrf"])
    viewcache.store_for(current_app).put(key, gen, body)
    return body


def _chrome(viewer) -> tuple[str, str, str]:
    """The site layout around a page view for this reader, cut where the title and the body go.

    Kept per process: it depends only on who is reading (name, role, label) and on the code. Forms carry the CSRF
    mark, replaced per request like the body's.
    """
    chromes = app_lru("kb_view_chrome", 256)
    key = (viewer, current_user.label if viewer.signed_in else "")
    parts = chromes.get(key)
    if parts is None:
        marks = _marks()
        html = render_template("wiki/view.html", page={"title": marks["title"]}, body=Markup(marks["body"]),
                               csrf_token=lambda: marks["csrf"])
        head, rest = html.split(marks["title"], 1)
        middle, tail = rest.split(marks["body"], 1)
        parts = (head, middle, tail)
        chromes.put(key, parts)
    return parts


def derived_facts(page, linked: dict) -> list[tuple[str, list]]:
    """Facts worked out from other pages' fields, never typed in: a leader's initiatives and so on.

    `linked` is pages.backlinks_by_field for the page: the readable pages linking here, by the field they link
    through ("body" for the text), so the facts follow every edit of those pages and respect visibility.
    """
    def via(field: str, kind: str) -> list:
        return [p for p in linked.get(field, []) if p.kind == kind]

    def any_link(*kinds_: str) -> list:
        found = {p.slug: p for ps in linked.values() for p in ps if p.kind in kinds_}
        return sorted(found.values(), key=lambda p: p.title.lower())

    fields = page.fields or {}
    facts = []
    if page.kind == "leader":
        facts.append(("Initiatives started", via("sponsors", "initiative")))
        facts.append(("Handovers", sorted({p.slug: p for p in via("outgoing", "handover") + via("incoming", "handover")}
                                          .values(), key=lambda p: p.title.lower())))
    if page.kind == "community":
        facts.append(("Routines it owns", via("owner", "routine")))
        facts.append(("Initiatives it carries", via("carried_by", "initiative")))
    if page.kind == "routine":
        facts.append(("Initiatives it carries", via("carried_by", "initiative")))
        facts.append(("Named in handovers", via("routines_owned", "handover")))
    if page.kind == "initiative":
        facts.append(("Lessons", any_link("lesson")))
        carried = set(fields.get("carried_by") or [])
        facts.append(("Carried on by", [p for p in any_link("routine", "community") if p.slug not in carried]))
        facts.append(("Followed by", [p for p in via("predecessor", "initiative") if p.slug != fields.get("successor")]))
        facts.append(("Came after", [p for p in via("successor", "initiative") if p.slug != fields.get("predecessor")]))
        facts.append(("In flight in handovers", via("in_flight", "handover")))
    return [(label, items) for label, items in facts if items]


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
    try:
        a = int(request.args.get("from", max(page.revision - 1, 1)))
        b = int(request.args.get("to", page.revision))
    except ValueError:
        raise InvalidFields({"from": "revision numbers must be whole numbers"})
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
    if kind_name == "handover" and "curate.handover_wizard" in current_app.view_functions:
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
    try:
        base = int(request.form.get("base_revision") or 0) or None
    except ValueError:
        base = None
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
    try:
        base = int(request.form.get("base_revision", 0))
    except ValueError:
        base = 0
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
                                   int(request.form.get("base_revision", 0) or 0), request.form.get("slug") or None,
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
