"""The reform timeline (`/timeline`, `/timeline.svg`, `/api/timeline`) and the routine calendar (`/calendar`,
`/api/calendar`). The data and the drawing live in kb.timeline; this only reads the filters and renders."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request, url_for

from kb import timeline as tl_domain
from kb.web.context import db_session
from kb.web.login import current_viewer, require_api_reader, require_reader

bp = Blueprint("timeline", __name__)


def _page_url(slug: str) -> str:
    return url_for("wiki.view", slug=slug)


def _build():
    args = request.args
    return tl_domain.build_timeline(db_session(), current_viewer(), role=args.get("role"), kind=args.get("kind"),
                                    tag=args.get("tag"))


@bp.route("/timeline")
def timeline():
    require_reader()
    data = _build()
    return render_template("timeline/timeline.html", tl=data, picture=tl_domain.picture(data, _page_url),
                           kinds=tl_domain.TIMELINE_KINDS,
                           status_colours=tl_domain.STATUS_COLOURS, tenure_colours=tl_domain.TENURE_COLOURS,
                           partnership_colours=tl_domain.PARTNERSHIP_COLOURS)


@bp.route("/timeline.svg")
def timeline_svg():
    """The picture on its own, for slides and printing."""
    require_reader()
    picture = tl_domain.picture(_build(), lambda slug: url_for("wiki.view", slug=slug, _external=True))
    svg = render_template("timeline/_picture.svg", picture=picture)
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, mimetype="image/svg+xml")


@bp.route("/api/timeline")
def api_timeline():
    require_api_reader()
    return jsonify(_build().as_json(_page_url))


def _calendar():
    return tl_domain.routine_calendar(db_session(), current_viewer(), tag=request.args.get("tag"),
                                      owner=request.args.get("owner"))


@bp.route("/calendar")
def calendar():
    require_reader()
    from datetime import date

    return render_template("timeline/calendar.html", cal=_calendar(), this_month=date.today().month)


@bp.route("/api/calendar")
def api_calendar():
    require_api_reader()
    return jsonify(_calendar().as_json(_page_url))
