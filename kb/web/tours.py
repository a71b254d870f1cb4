"""Onboarding tours in the browser and the API: reading with progress, the curators' editor, the binder.

Stops are numbered from 1 among the stops the viewer may read (see kb.tours); `/tours/<slug>/stops/<n>` and the API's
`{"stop": n}` use that number. The API's progress call also accepts the page's slug: `{"stop": "page-slug"}`.
"""
from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import Markup
from werkzeug.exceptions import BadRequest

from kb import kinds, pages, tours
from kb.derived import derived_facts
from kb.errors import EditConflict, InvalidFields, NotAllowed, NotSignedIn
from kb.models import utcnow
from kb.web.context import db_session, iso, whole_number
from kb.web.login import current_viewer, require_api_reader, require_reader

bp = Blueprint("tours", __name__)

RESERVED_SLUGS = {"new"}


def require_curator() -> None:
    require_reader()
    if not current_viewer().may_curate:
        raise NotAllowed("Only curators can edit tours.")


def job_title() -> str:
    """What the product knows of the person's job: the display name, where districts write it ("Ana Ruiz, principal")."""
    return getattr(current_user, "display_name", "") or ""


def _html(text: str) -> Markup:
    """Markdown through the one rendering and sanitising function, wanted links marked (empty text: empty Markup)."""
    return pages.render_body(db_session(), current_viewer(), text or "")[0]


def _stop_url(tour, number: int) -> str:
    return url_for("tours.stop", slug=tour.slug, number=number)


@bp.app_context_processor
def _tour_helpers():
    def continue_tour():
        """For the home page: the tour to continue (or start), as kb.tours.TourProgress, or None."""
        viewer = current_viewer()
        if not viewer.signed_in:
            return None
        return tours.continue_tour(db_session(), viewer, job_title())

    return {"continue_tour": continue_tour}


# ---------------------------------------------------------------------------------------------------------------
# Reading

@bp.route("/tours")
def index():
    require_reader()
    viewer = current_viewer()
    s = db_session()
    chosen = (request.args.get("for") or "").strip().lower() or None
    mine, others = tours.tours_for(s, viewer, job_title(), chosen)
    progress = {t.id: tours.progress(s, viewer, t) for t in mine + others}
    started = {t.id: tours.started_count(s, t) for t in mine + others} if viewer.may_curate else {}
    return render_template("tours/index.html", mine=mine, others=others, progress=progress, chosen=chosen,
                           audiences=tours.audiences(mine + others), started=started,
                           descriptions={t.id: _html(t.description) for t in mine + others})


def _load(slug: str):
    require_reader()
    return tours.get_tour(db_session(), slug)


@bp.route("/tours/<slug>")
def overview(slug: str):
    tour = _load(slug)
    viewer = current_viewer()
    s = db_session()
    progress = tours.progress(s, viewer, tour)
    return render_template("tours/overview.html", tour=tour, progress=progress, description=_html(tour.description),
                           started=tours.started_count(s, tour) if viewer.may_curate else None,
                           for_you=tours.is_for(tour, viewer.role, job_title()))


def _page_parts(page) -> dict:
    """What the wiki's page view shows for a page: body HTML, field link titles and derived facts."""
    s = db_session()
    viewer = current_viewer()
    linked = pages.backlinks_by_field(s, viewer, page)
    return {
        "html": pages.current_html(s, viewer, page),
        "link_titles": pages.readable_titles(s, viewer, [t for _, t in kinds.field_links(page.kind, page.fields or {})]),
        "derived": derived_facts(page, linked),
    }


@bp.route("/tours/<slug>/stops/<int:number>")
def stop(slug: str, number: int):
    tour = _load(slug)
    progress = tours.progress(db_session(), current_viewer(), tour)
    state = progress.stop(number)
    return render_template("tours/stop.html", tour=tour, progress=progress, state=state, note=_html(state.stop.note),
                           prev=progress.stops[number - 2] if number > 1 else None,
                           next=progress.stops[number] if number < progress.total else None,
                           **_page_parts(state.page))


@bp.route("/tours/<slug>/stops/<int:number>/read", methods=["POST"])
def mark_read(slug: str, number: int):
    tour = _load(slug)
    viewer = current_viewer()
    if not viewer.signed_in:
        raise NotSignedIn("Sign in to keep your place in a tour.")
    s = db_session()
    progress = tours.progress(s, viewer, tour)
    state = progress.stop(number)
    tours.mark_read(s, viewer, tour, state)
    s.commit()
    if request.form.get("then") == "next":
        if number < progress.total:
            return redirect(_stop_url(tour, number + 1))
        if progress.finished:
            flash(f"You have read every stop of “{tour.title}”. Well done.")
        else:
            flash("That was the last stop. Some earlier stops are still unread; they are marked below.")
        return redirect(url_for("tours.overview", slug=tour.slug))
    flash("Marked as read.")
    return redirect(_stop_url(tour, number))


@bp.route("/tours/<slug>/restart", methods=["POST"])
def restart(slug: str):
    tour = _load(slug)
    s = db_session()
    tours.forget_progress(s, current_viewer(), tour)
    s.commit()
    flash("Your progress in this tour was cleared.")
    return redirect(url_for("tours.overview", slug=tour.slug))


@bp.route("/tours/<slug>/print")
def binder(slug: str):
    tour = _load(slug)
    viewer = current_viewer()
    progress = tours.progress(db_session(), viewer, tour)
    stops = [{"state": st, "note": _html(st.stop.note), **_page_parts(st.page)} for st in progress.stops]
    return render_template("tours/binder.html", tour=tour, progress=progress, stops=stops,
                           description=_html(tour.description), sources=tours.binder_sources(progress.stops),
                           now_date=utcnow().strftime("%Y-%m-%d"))


# ---------------------------------------------------------------------------------------------------------------
# Curators: who is taking the tour, history, and the editor

@bp.route("/tours/<slug>/readers")
def readers(slug: str):
    tour = _load(slug)
    viewer = current_viewer()
    return render_template("tours/readers.html", tour=tour, readers=tours.readers(db_session(), viewer, tour))


@bp.route("/tours/<slug>/history")
def history(slug: str):
    tour = _load(slug)
    require_curator()
    return render_template("tours/history.html", tour=tour, revisions=tours.revisions(db_session(), tour))


@bp.route("/tours/<slug>/revisions/<int:number>")
def revision(slug: str, number: int):
    tour = _load(slug)
    require_curator()
    s = db_session()
    rev = tours.get_revision(s, tour, number)
    prev = tours.get_revision(s, tour, number - 1) if number > 1 else None
    diff = pages.line_diff(tours.snapshot_text(prev.snapshot) if prev else "", tours.snapshot_text(rev.snapshot),
                           f"revision {number - 1}" if prev else "nothing", f"revision {number}")
    stop_slugs = [st["page"] for st in rev.snapshot.get("stops", [])]
    return render_template("tours/revision.html", tour=tour, rev=rev, diff=diff,
                           titles=pages.readable_titles(s, current_viewer(), stop_slugs))


@bp.route("/tours/<slug>/revisions/<int:number>/restore", methods=["POST"])
def restore(slug: str, number: int):
    tour = _load(slug)
    require_curator()
    s = db_session()
    base = whole_number(request.form, "base_revision", 0)
    try:
        tours.restore_revision(s, current_viewer(), tour, number, base)
    except InvalidFields as e:
        s.rollback()
        flash(f"Revision {number} cannot be restored: {'; '.join(e.errors.values())}.")
        return redirect(url_for("tours.history", slug=tour.slug))
    s.commit()
    flash(f"Revision {number} is current again (saved as a new revision).")
    return redirect(url_for("tours.overview", slug=tour.slug))


def _draft_from_form(form) -> tuple[tours.TourSpec, dict]:
    """The editor's form as an unchecked spec plus the raw values to show again. Checking happens on save."""
    stops = [tours.StopSpec(p.strip(), n.replace("\r\n", "\n"), q)
             for p, n, q in zip(form.getlist("stop_page"), form.getlist("stop_note"), form.getlist("stop_question"))]
    values = {k: form.get(k, "") for k in ("title", "description", "audience", "minutes", "comment", "add_page")}
    values["description"] = values["description"].replace("\r\n", "\n")
    spec = tours.TourSpec("", "", values["title"].strip(), values["description"],
                          [a.strip() for a in values["audience"].split(",") if a.strip()], None, stops)
    return spec, values


def _spec_data(spec: tours.TourSpec, values: dict) -> dict:
    minutes = values["minutes"].strip()
    if minutes:
        minutes = int(minutes) if minutes.isdigit() else minutes  # clean_spec refuses what is not a whole number
    return {"title": spec.title, "description": spec.description, "audience": spec.audience,
            "minutes": minutes or None,
            "stops": [{"page": st.page, "note": st.note, "question": st.question} for st in spec.stops]}


def _editor(tour, spec: tours.TourSpec, values: dict, base_revision, errors=None, notice=None, focus=None,
            status=200):
    s = db_session()
    viewer = current_viewer()
    rows = []
    for i, st in enumerate(spec.stops):
        rows.append({"index": i, "spec": st, "page": tours.readable_page(s, viewer, st.page),
                     "preview": _html(st.note)})
    saved = tours.tour_spec(tour).snapshot() if tour is not None else None
    draft = dict(_spec_data(spec, values), slug=tour.slug if tour else "")
    unsaved = tour is None or saved is None or {k: v for k, v in draft.items() if k != "slug"} != {
        k: v for k, v in saved.items() if k != "slug"}
    all_audiences = tours.audiences(tours.all_tours(s))
    return render_template("tours/edit.html", tour=tour, values=values, rows=rows, base_revision=base_revision,
                           errors=errors or {}, notice=notice, focus=focus, description_preview=_html(values["description"]),
                           unsaved=unsaved and request.method == "POST", audiences=all_audiences,
                           status=status), status


def _initial_values(tour) -> dict:
    return {"title": tour.title if tour else "", "description": tour.description if tour else "",
            "audience": ", ".join(tour.audience or []) if tour else "",
            "minutes": str(tour.minutes) if tour and tour.minutes is not None else "", "comment": "", "add_page": ""}


@bp.route("/tours/new", methods=["GET", "POST"])
def new():
    require_curator()
    if request.method == "GET":
        return _editor(None, tours.TourSpec("", "", ""), _initial_values(None), None)
    return _edit_post(None)


@bp.route("/tours/<slug>/edit", methods=["GET", "POST"])
def edit(slug: str):
    tour = _load(slug)
    require_curator()
    if request.method == "GET":
        return _editor(tour, tours.tour_spec(tour), _initial_values(tour), tour.revision)
    return _edit_post(tour)


def _edit_post(tour):
    """One form, many buttons: move/remove/add change the draft and show it again; save checks and stores it.

    The buttons are plain submit buttons, so the editor works without JavaScript; tours.js does moves and removals
    in the page instead of a round trip."""
    s = db_session()
    viewer = current_viewer()
    spec, values = _draft_from_form(request.form)
    base = whole_number(request.form, "base_revision", 0) or None
    action = request.form.get("action", "save")
    if action == "enter":  # Enter pressed in a text box: add the typed page if there is one, else save
        action = "add" if values["add_page"].strip() else "save"
    op, _, arg = action.partition(":")
    index = int(arg) if arg.isdigit() else -1
    if op in ("up", "down"):
        tours.move_stop(spec, index, -1 if op == "up" else 1)
        j = index + (-1 if op == "up" else 1)
        focus = f"{op}-{j}" if 0 <= j < len(spec.stops) else None
        return _editor(tour, spec, values, base, focus=focus)
    if op == "remove":
        removed = spec.stops[index].page if 0 <= index < len(spec.stops) else None
        tours.remove_stop(spec, index)
        page = tours.readable_page(s, viewer, removed) if removed else None
        notice = f"Removed the stop “{page.title if page else removed}”. Save the tour to keep the change."
        return _editor(tour, spec, values, base, notice=notice if removed else None, focus="add_page")
    if op == "add":
        try:
            added = tours.add_stop(s, viewer, spec, values["add_page"])
        except InvalidFields as e:
            return _editor(tour, spec, values, base, errors=e.errors, focus="add_page", status=422)
        values["add_page"] = ""
        return _editor(tour, spec, values, base, focus=f"note-{len(spec.stops) - 1}",
                       notice=f"Added a stop: “{added.title}”. Write why it matters, then save the tour.")
    if op == "preview":
        return _editor(tour, spec, values, base)
    # save
    try:
        checked = tours.clean_spec(_spec_data(spec, values), "")
        if tour is None and checked.slug in RESERVED_SLUGS:
            raise InvalidFields({"title": "that title would make the address /tours/new; choose another title"})
        saved = tours.save_tour(s, viewer, checked, values["comment"], base, slug=tour.slug if tour else None,
                                creating=tour is None)
        s.commit()
    except EditConflict as e:
        s.rollback()
        notice = (f"Someone else saved this tour (now revision {e.current}) while you were editing. Your version is "
                  "below and nothing was overwritten. Saving again replaces theirs; check the history first.")
        return _editor(tour, spec, values, e.current, notice=notice, status=409)
    except InvalidFields as e:
        s.rollback()
        return _editor(tour, spec, values, base, errors=e.errors, status=422)
    flash("Tour created." if tour is None else "Tour saved.")
    return redirect(url_for("tours.overview", slug=saved.slug))


# ---------------------------------------------------------------------------------------------------------------
# JSON API (PRODUCT §7)


def _progress_json(p: tours.TourProgress, signed_in: bool) -> dict | None:
    if not signed_in:
        return None
    nxt = p.next_stop
    return {"read": p.read, "total": p.total, "changed": p.changed, "finished": p.finished,
            "next_stop": nxt.number if nxt else None, "last_read": iso(p.last_read_at)}


def _tour_summary(tour, p: tours.TourProgress, for_you: bool, signed_in: bool) -> dict:
    return {"slug": tour.slug, "title": tour.title, "description": tour.description,
            "audience": list(tour.audience or []), "minutes": tour.minutes, "stops": p.total, "for_you": for_you,
            "revision": tour.revision, "updated": iso(tour.updated_at),
            "url": url_for("tours.overview", slug=tour.slug), "progress": _progress_json(p, signed_in)}


def _stop_json(tour, st: tours.StopState) -> dict:
    return {"number": st.number,
            "page": {"slug": st.page.slug, "title": st.page.title, "kind": st.page.kind, "revision": st.page.revision,
                     "url": url_for("wiki.view", slug=st.page.slug)},
            "note": st.stop.note, "note_html": _html(st.stop.note), "question": st.stop.question,
            "read": st.read, "read_at": iso(st.read_at), "read_revision": st.read_revision, "changed": st.changed,
            "url": _stop_url(tour, st.number)}


@bp.route("/api/tours")
def api_list():
    viewer = require_api_reader()
    s = db_session()
    mine, others = tours.tours_for(s, viewer, job_title())
    out = [_tour_summary(t, tours.progress(s, viewer, t), t in mine, viewer.signed_in) for t in mine + others]
    return jsonify({"tours": out, "count": len(out)})


@bp.route("/api/tours/<slug>")
def api_get(slug: str):
    viewer = require_api_reader()
    s = db_session()
    tour = tours.get_tour(s, slug)
    p = tours.progress(s, viewer, tour)
    data = _tour_summary(tour, p, tours.is_for(tour, viewer.role, job_title()), viewer.signed_in)
    data.update({"description_html": _html(tour.description), "stops": [_stop_json(tour, st) for st in p.stops],
                 "print_url": url_for("tours.binder", slug=tour.slug)})
    return jsonify(data)


@bp.route("/api/tours/<slug>/progress", methods=["POST"])
def api_progress(slug: str):
    """Mark a stop read: `{"stop": 3}` (its number among the stops you can read, from 1) or `{"stop": "page-slug"}`."""
    viewer = current_viewer()
    if not viewer.signed_in:
        raise NotSignedIn("Sign in or send an API token (Authorization: Bearer TOKEN).")
    s = db_session()
    tour = tours.get_tour(s, slug)
    try:
        data = request.get_json(force=True)
    except BadRequest:
        return jsonify({"error": "The request body is not valid JSON.", "details": None}), 400
    if not isinstance(data, dict) or "stop" not in data:
        raise InvalidFields({"stop": "send {\"stop\": N} (the stop's number, from 1) or {\"stop\": \"page-slug\"}"})
    p = tours.progress(s, viewer, tour)
    st = p.find(data["stop"])
    tours.mark_read(s, viewer, tour, st)
    s.commit()
    return jsonify({"stop": _stop_json(tour, st), "progress": _progress_json(p, True)})
