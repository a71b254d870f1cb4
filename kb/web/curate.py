"""Curation in the browser: recent changes and their feed, watching, "since your last visit", verification, the
curation queues, knowledge at risk, reassignment, feed tokens and the handover wizard. The work is in kb.curation,
one module per job."""
from __future__ import annotations

from datetime import datetime, timedelta
from itertools import groupby
from xml.etree import ElementTree as ET

from flask import (Blueprint, Response, abort, current_app, flash, g, jsonify, redirect, render_template, request,
                   url_for)
from sqlalchemy import func, select

from kb import access, kinds, pages
from kb.curation import feed_tokens, handover, queues, reassignment, verification, watching
from kb.curation.risk import RISK_RULES, RiskRow, at_risk
from kb.errors import BadParameter, InvalidFields, NotAllowed, NotFound
from kb.models import Page, User
from kb.web.context import db_session, kick_index, now, whole_number
from kb.web.login import current_viewer, require_api_reader, require_reader
from kb.web.security import is_safe_next

bp = Blueprint("curate", __name__)

RECENT_LIMITS = (100, 500, 1000)


def require_signed_in() -> None:
    if not current_viewer().signed_in:
        abort(redirect(url_for("auth.login", next=request.full_path.rstrip("?"))))


def require_curator() -> None:
    require_signed_in()
    if not current_viewer().may_curate:
        raise NotAllowed("This is for curators and administrators.")


def back(default: str):
    target = request.form.get("next") or request.args.get("next")
    return redirect(target if is_safe_next(target) else default)


def readable_page(slug: str) -> Page:
    page = access.get_readable_page(db_session(), current_viewer(), slug)
    if page is None:
        raise NotFound()
    return page


def find_user(name: str | None, field: str) -> User:
    user = db_session().scalar(select(User).where(User.name == (name or "").strip())) if name else None
    if user is None:
        raise InvalidFields({field: f"there is no user named {name!r}" if name else "choose a person"})
    return user


def active_users() -> list[User]:
    return list(db_session().scalars(select(User).where(User.active.is_(True)).order_by(func.lower(User.name))))


# ---------------------------------------------------------------------------------------------------------------
# Data for the templates other blueprints include (page status, page actions, home panel)


@bp.app_context_processor
def _curation_helpers():
    def page_status(page):
        return verification.verification(db_session(), page, now())

    def watching_page(page) -> bool:
        return watching.is_watching(db_session(), current_viewer(), page)

    def home_changes(limit: int = 6):
        viewer = current_viewer()
        if not viewer.signed_in:
            return None
        since = g.get("kb_since_last_visit") or (now() - timedelta(days=14))
        return {"since": g.get("kb_since_last_visit"),
                "changes": watching.changes_since(db_session(), viewer, since, limit=limit)}

    return {"curation_status": page_status, "curation_watching": watching_page, "curation_home": home_changes,
            "curation_may_verify": verification.may_verify, "curation_may_confirm": handover.may_confirm,
            "curation_verifier": verification.verifier_of}


@bp.before_app_request
def _record_visit():
    """The home page and /changes mark a visit; what happened since the previous one is what they show."""
    if request.endpoint not in ("wiki.home", "curate.changes") or request.method != "GET":
        return
    viewer = current_viewer()
    if not viewer.signed_in:
        return
    try:
        with current_app.extensions["kb_db"].writing() as s:
            user = s.get(User, viewer.user_id)
            if user is not None:
                g.kb_since_last_visit = watching.record_visit(user, now())
    except Exception:  # a busy database must not stop anyone reading the home page
        current_app.logger.warning("could not record the visit of user %s", viewer.user_id)


# ---------------------------------------------------------------------------------------------------------------
# Recent changes and the feed


def _recent_filters() -> dict[str, str | None]:
    kind = request.args.get("kind") or None
    return {"kind": kind if kind in kinds.KINDS else None, "tag": request.args.get("tag") or None,
            "user": request.args.get("user") or None}


@bp.route("/recent")
def recent():
    require_reader()
    viewer = current_viewer()
    filters = _recent_filters()
    limit = whole_number(request.args, "limit", RECENT_LIMITS[0], low=1, high=RECENT_LIMITS[-1])
    s = db_session()
    rows = pages.recent_revisions(s, viewer, limit=limit, **filters)
    days = [(day, list(items)) for day, items in groupby(rows, key=lambda rp: rp[0].created_at.date())]
    watching_tag = False
    if filters["tag"] and viewer.signed_in:
        watching_tag = pages.slugify(filters["tag"]) in watching.watches(s, viewer.user_id)[1]
    more = next((n for n in RECENT_LIMITS if n > limit), None) if len(rows) >= limit else None
    return render_template("curate/recent.html", days=days, filters=filters, count=len(rows), more=more,
                           watching_tag=watching_tag,
                           feed_args={k: v for k, v in filters.items() if v})


def _clean_xml(text: str) -> str:
    # Control characters are not allowed in XML 1.0; a comment typed with one must not break the feed.
    return "".join(c for c in (text or "") if c in "\t\n\r" or ord(c) >= 32)


@bp.route("/recent.atom")
def recent_atom():
    """The Atom feed of recent changes, as the token's owner may see them (without a token: as anonymous)."""
    s = db_session()
    viewer = feed_tokens.viewer_for_feed_token(s, request.args.get("token"),
                                            bool(current_app.config.get("ANONYMOUS_READ")))
    filters = _recent_filters()
    rows = pages.recent_revisions(s, viewer, limit=50, **filters)
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    feed = ET.Element(f"{{{ns}}}feed")

    def sub(parent, tag, text=None, **attrs):
        el = ET.SubElement(parent, f"{{{ns}}}{tag}", {k: _clean_xml(v) for k, v in attrs.items()})
        if text is not None:
            el.text = _clean_xml(text)
        return el

    what = ", ".join(f"{k} {v}" for k, v in filters.items() if v)
    sub(feed, "title", "District memory: recent changes" + (f" ({what})" if what else ""))
    sub(feed, "id", url_for("curate.recent", _external=True, **{k: v for k, v in filters.items() if v}))
    sub(feed, "link", rel="alternate", type="text/html",
        href=url_for("curate.recent", _external=True, **{k: v for k, v in filters.items() if v}))
    updated = rows[0][0].created_at if rows else datetime(2000, 1, 1)
    sub(feed, "updated", updated.isoformat(timespec="seconds") + "Z")
    sub(feed, "generator", "District memory")
    for rev, page in rows:
        entry = sub(feed, "entry")
        label = "New page" if rev.number == 1 else f"revision {rev.number}"
        sub(entry, "title", f"{page.title} ({label})")
        sub(entry, "id", url_for("wiki.revision", slug=page.slug, number=rev.number, _external=True))
        href = (url_for("wiki.view", slug=page.slug, _external=True) if rev.number == 1 else
                url_for("wiki.diff", slug=page.slug, _external=True, **{"from": rev.number - 1, "to": rev.number}))
        sub(entry, "link", rel="alternate", type="text/html", href=href)
        sub(entry, "updated", rev.created_at.isoformat(timespec="seconds") + "Z")
        author = sub(entry, "author")
        sub(author, "name", rev.author.label if rev.author else "unknown")
        sub(entry, "category", term=page.kind, label=kinds.KINDS[page.kind].label)
        summary = kinds.KINDS[page.kind].label + (f": {rev.comment}" if rev.comment else "")
        sub(entry, "summary", summary)
    body = ET.tostring(feed, encoding="unicode", xml_declaration=False)
    resp = Response('<?xml version="1.0" encoding="utf-8"?>\n' + body,
                    mimetype="application/atom+xml")
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.route("/curate/feed-token", methods=["GET", "POST"])
def feed_token():
    """Make (or revoke) the secret feed address that lets a feed reader see what you may see."""
    require_signed_in()
    viewer = current_viewer()
    s = db_session()
    token = None
    if request.method == "POST":
        if request.form.get("action") == "revoke":
            feed_tokens.revoke_feed_token(s, viewer)
            s.commit()
            flash("Your private feed address no longer works.")
            return redirect(url_for("curate.feed_token"))
        token = feed_tokens.create_feed_token(s, viewer)
        s.commit()
    user = s.get(User, viewer.user_id)
    feed_url = url_for("curate.recent_atom", token=token, _external=True) if token else None
    return render_template("curate/feed_token.html", feed_url=feed_url, has_token=bool(user.feed_token_hash),
                           public_url=url_for("curate.recent_atom", _external=True))


# ---------------------------------------------------------------------------------------------------------------
# Watching and "since your last visit"


@bp.route("/curate/watch", methods=["POST"])
def watch():
    require_signed_in()
    viewer = current_viewer()
    s = db_session()
    on = request.form.get("on", "1") == "1"
    if request.form.get("page"):
        page = readable_page(request.form["page"])
        watching.watch_page(s, viewer, page, on)
        s.commit()
        flash(f"You are watching “{page.title}”." if on else f"You no longer watch “{page.title}”.")
        return back(url_for("wiki.view", slug=page.slug))
    tag = watching.watch_tag(s, viewer, request.form.get("tag", ""), on)
    s.commit()
    flash(f"You are watching #{tag}." if on else f"You no longer watch #{tag}.")
    return back(url_for("curate.changes"))


@bp.route("/changes")
def changes():
    require_signed_in()
    viewer = current_viewer()
    s = db_session()
    since = g.get("kb_since_last_visit")
    found = watching.changes_since(s, viewer, since or (now() - timedelta(days=14)), limit=200)
    page_ids, tags = watching.watches(s, viewer.user_id)
    user = s.get(User, viewer.user_id)
    return render_template("curate/changes.html", since=since, changes=found,
                           watched=watching.watched_pages(s, viewer), tags=sorted(tags),
                           follows=set(user.follows_kinds or []))


@bp.route("/changes/seen", methods=["POST"])
def changes_seen():
    require_signed_in()
    s = db_session()
    watching.mark_seen(s.get(User, current_viewer().user_id), now())
    s.commit()
    flash("Everything so far is marked as seen.")
    return back(url_for("curate.changes"))


@bp.route("/changes/follow", methods=["POST"])
def follow():
    require_signed_in()
    s = db_session()
    chosen = watching.follow_kinds(s, current_viewer(), request.form.getlist("kind"))
    s.commit()
    flash("You follow new " + ", ".join(kinds.KINDS[k].plural.lower() for k in chosen) + "." if chosen
          else "You follow no kinds of page.")
    return redirect(url_for("curate.changes"))


# ---------------------------------------------------------------------------------------------------------------
# Verification and who looks after a page


@bp.route("/curate/verify/<slug>", methods=["POST"])
def verify(slug: str):
    require_signed_in()
    s = db_session()
    page = readable_page(slug)
    verification.verify(s, current_viewer(), page, now())
    s.commit()
    flash(f"“{page.title}” is verified as of revision {page.revision}.")
    return back(url_for("wiki.view", slug=page.slug))


@bp.route("/curate/page/<slug>", methods=["GET", "POST"])
def care(slug: str):
    """Who owns and verifies a page, and how often it is reviewed."""
    require_signed_in()
    viewer = current_viewer()
    s = db_session()
    page = readable_page(slug)
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            if request.form.get("action") == "review":
                verification.request_review(s, viewer, page)
                flash("The page is on the review queue until someone verifies it.")
            else:
                try:
                    every = whole_number(request.form, "review_every", page.review_every, low=1, high=3650)
                except BadParameter:
                    raise InvalidFields({"review_every": "must be a whole number of days, up to ten years"})
                kwargs = {"review_every": every}
                verifier = request.form.get("verifier", "")
                kwargs["verifier"] = find_user(verifier, "verifier") if verifier else None
                if viewer.may_curate:
                    owner = request.form.get("owner", "")
                    kwargs["owner"] = find_user(owner, "owner") if owner else None
                verification.set_care(s, viewer, page, **kwargs)
                flash("Saved.")
            s.commit()
            return redirect(url_for("curate.care", slug=page.slug))
        except InvalidFields as e:
            s.rollback()
            errors = e.errors
    state = verification.verification(s, page, now())
    return render_template("curate/care.html", page=page, state=state, users=active_users(), errors=errors,
                           may_change=viewer.may_curate or viewer.user_id == page.owner_id,
                           may_verify=verification.may_verify(viewer, page)), (422 if errors else 200)


# ---------------------------------------------------------------------------------------------------------------
# Queues, risk, reassignment


@bp.route("/curate")
def index():
    require_signed_in()
    viewer = current_viewer()
    s = db_session()
    names = [n for n, _, _ in queues.QUEUES]
    chosen = request.args.get("queue") if request.args.get("queue") in names else "needs_review"
    all_queues = queues.queues(s, viewer, now(), names)
    return render_template("curate/index.html", queues=queues.QUEUES, counts={k: len(v) for k, v in all_queues.items()},
                           chosen=chosen, items=all_queues[chosen], users=active_users(),
                           title=dict((n, t) for n, t, _ in queues.QUEUES)[chosen],
                           about=dict((n, a) for n, _, a in queues.QUEUES)[chosen])


@bp.route("/curate/bulk", methods=["POST"])
def bulk():
    require_curator()
    s = db_session()
    action = request.form.get("action", "")
    owner = find_user(request.form.get("owner"), "owner") if action == "assign" else None
    slugs = request.form.getlist("page")
    if not slugs:
        flash("Tick at least one page first.")
        return back(url_for("curate.index"))
    done = queues.bulk(s, current_viewer(), slugs, action, now(), owner=owner)
    s.commit()
    what = {"assign": f"now owned by {owner.label}" if owner else "", "verify": "verified",
            "review": "added to the review queue"}[action]
    flash(f"{len(done)} page{'s' if len(done) != 1 else ''} {what}.")
    return back(url_for("curate.index"))


@bp.route("/curate/risk")
def risk():
    require_signed_in()
    rows = at_risk(db_session(), current_viewer(), now())
    return render_template("curate/risk.html", rows=rows, rules=RISK_RULES, fix_url=fix_url)


def fix_url(row: RiskRow) -> str:
    """Where a knowledge-at-risk finding is put right."""
    if row.fix.startswith("edit:"):
        return url_for("wiki.edit", slug=row.page.slug) + "#field-" + row.fix[5:]
    if row.fix == "handover":
        return url_for("curate.handover_wizard", leader=row.page.slug)
    if row.fix == "confirm":
        return url_for("curate.confirm", slug=row.page.slug)
    if row.fix == "reassign" and row.page.owner is not None:
        return url_for("curate.people", departing=row.page.owner.name) + "#reassign"
    return url_for("curate.care", slug=row.page.slug)


@bp.route("/curate/people")
def people():
    require_curator()
    s = db_session()
    users = list(s.scalars(select(User).order_by(User.active.desc(), func.lower(User.name))))
    return render_template("curate/people.html", users=users, holdings=reassignment.holdings(s),
                           departing=request.args.get("departing", ""))


@bp.route("/curate/people/leaving", methods=["POST"])
def leaving():
    require_curator()
    s = db_session()
    user = find_user(request.form.get("user"), "user")
    on = request.form.get("leaving") == "1"
    reassignment.set_leaving(s, current_viewer(), user, on)
    s.commit()
    flash(f"{user.label} is marked as leaving: their pages now show as knowledge at risk." if on
          else f"{user.label} is no longer marked as leaving.")
    return redirect(url_for("curate.people"))


@bp.route("/curate/reassign", methods=["POST"])
def reassign():
    require_curator()
    s = db_session()
    departing = find_user(request.form.get("departing"), "departing")
    successor = find_user(request.form.get("successor"), "successor")
    moved = reassignment.reassign(s, current_viewer(), departing, successor)
    s.commit()
    flash(f"Moved {moved.pages} page(s), {moved.tours} tour(s) and {moved.verifications} verification duty(ies) "
          f"from {departing.label} to {successor.label}. This is recorded in the log.")
    return redirect(url_for("curate.people"))


# ---------------------------------------------------------------------------------------------------------------
# The handover wizard


def _person_choices(kind: str) -> list[Page]:
    """Pages the wizard offers to tick or choose, leaving out those whose work is over (an ended initiative)."""
    found = pages.list_pages(db_session(), current_viewer(), kind=kind, limit=500)
    return [p for p in found if not kinds.is_ended(kind, p.status)]


@bp.route("/curate/handover", methods=["GET", "POST"])
def handover_wizard():
    require_signed_in()
    viewer = current_viewer()
    if not viewer.may_edit:
        raise NotAllowed("You need a contributor account to write a handover.")
    s = db_session()
    draft = handover.get_draft(s, viewer)
    steps = handover.HANDOVER_STEPS
    if request.method == "GET":
        if draft is None:
            return render_template("curate/handover_start.html", leader=request.args.get("leader", ""),
                                   title=request.args.get("title", ""), leaders=_person_choices("leader"))
        leader = request.args.get("leader")
        if leader and leader != (draft.data or {}).get("outgoing"):
            flash("You already have a handover in progress. Finish it, or discard it at the bottom of the page "
                  "to start the new one.")
        wanted = whole_number(request.args, "step", draft.step + 1, low=1, high=len(steps)) - 1
        return _wizard_page(draft, max(0, min(wanted, len(steps) - 1)), {})

    action = request.form.get("action", "next")
    if action == "start":
        handover.discard_draft(s, viewer)
        data = {"visibility": "staff"}
        leader = access.get_readable_page(s, viewer, request.form.get("leader", ""))
        if leader is not None and leader.kind == "leader":
            data["outgoing"] = leader.slug
            roles = [t.get("role") for t in (leader.fields or {}).get("tenures") or [] if t.get("role")]
            if roles:
                data["role"] = roles[-1]
        if request.form.get("title"):
            data["title"] = request.form["title"].strip()
        handover.start_draft(s, viewer, data)
        s.commit()
        return redirect(url_for("curate.handover_wizard", step=1))
    if draft is None:
        flash("That handover was already saved or discarded. Start a new one here.")
        return redirect(url_for("curate.handover_wizard"))
    if action == "discard":
        handover.discard_draft(s, viewer)
        s.commit()
        flash("The handover in progress was discarded.")
        return redirect(url_for("curate.handover_wizard"))
    index = whole_number(request.form, "step", 0, high=len(steps) - 1)
    answers = handover.read_step(steps[index], request.form)
    if "readers" in answers and not viewer.may_curate:
        answers.pop("readers")
    if answers.get("visibility") == "restricted" and not viewer.may_curate:
        answers["visibility"] = "staff"
    move = {"next": 1, "back": -1, "save": 0, "finish": 1}.get(action, 0)
    if action.startswith("goto-"):
        try:
            move = int(action[5:]) - index
        except ValueError:
            move = 0
        move = min(move, 0)  # jumping back is always allowed; forward goes through the steps' checks
    errors = handover.save_step(s, draft, index, answers, move)
    s.commit()
    if errors:
        return _wizard_page(draft, index, errors, status=422)
    if action == "finish" and index == len(steps) - 1:
        try:
            done = handover.finish_handover(s, viewer, draft)
            s.commit()
        except InvalidFields as e:
            s.rollback()
            errors = {k.removeprefix("fields."): v for k, v in e.errors.items()}
            first = next((i for i, st in enumerate(steps) if set(errors) & {q.key for q in st.questions}), index)
            return _wizard_page(handover.get_draft(s, viewer), first, errors, status=422)
        kick_index()
        return render_template("curate/handover_done.html", page=done.page, linked=done.linked, notes=done.notes)
    if action == "save":
        flash("Your answers are saved. You can come back to this handover at any time.")
    return redirect(url_for("curate.handover_wizard", step=draft.step + 1))


def _wizard_page(draft, index: int, errors: dict[str, str], status: int = 200):
    s = db_session()
    viewer = current_viewer()
    data = dict(draft.data or {})
    step = handover.HANDOVER_STEPS[index]
    if step.key == "review" and not data.get("title"):
        leaders = pages.readable_titles(s, viewer, [v for v in (data.get("outgoing"), data.get("incoming")) if v])
        data["title"] = handover.default_title(data, leaders, now().date())
    choices = {q.key: _person_choices(q.kind) for q in step.questions if q.control in ("person", "pages")}
    slugs = [v for k, v in data.items() if isinstance(v, str)] + [x for v in data.values() if isinstance(v, list)
                                                                   for x in v if isinstance(x, str)]
    return render_template("curate/handover_step.html", steps=handover.HANDOVER_STEPS, index=index, step=step,
                           data=data, errors=errors, choices=choices,
                           titles=pages.readable_titles(s, viewer, slugs), KIND_FIELDS=kinds.KINDS["handover"]), status


@bp.route("/curate/handover/<slug>/confirm", methods=["GET", "POST"])
def confirm(slug: str):
    """The successor reads the handover and confirms it is usable."""
    require_signed_in()
    viewer = current_viewer()
    s = db_session()
    page = readable_page(slug)
    if page.kind != "handover":
        raise NotFound()
    if request.method == "POST":
        saved = handover.confirm_handover(s, viewer, page, now())
        s.commit()
        kick_index()
        flash("Thank you. The handover is marked as checked by its successor.")
        return redirect(url_for("wiki.view", slug=saved.slug))
    fields = page.fields or {}
    titles = pages.readable_titles(s, viewer, [t for _, t in kinds.field_links(page.kind, fields)])
    return render_template("curate/confirm.html", page=page, kind=kinds.KINDS["handover"], fields=fields,
                           titles=titles, may_confirm=handover.may_confirm(viewer, page))


# ---------------------------------------------------------------------------------------------------------------
# The API


@bp.route("/api/curation")
def api_curation():
    viewer = require_api_reader()
    return jsonify(queues.api_queues(db_session(), viewer, now()))
