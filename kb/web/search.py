"""Search over HTTP: the results page, the JSON search API, title suggestions and "tried before".

Thin on purpose: every view reads its parameters, asks the app's search backend (which applies visibility), and
renders.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, render_template, request

from kb import search as kb_search
from kb.errors import BadParameter
from kb.kinds import KINDS
from kb.web.context import whole_number
from kb.web.login import current_viewer

bp = Blueprint("search", __name__)

PER_PAGE = 10
MAX_LIMIT = 100
MAX_OFFSET = 10_000


def _backend() -> kb_search.SearchBackend:
    return kb_search.backend_for(current_app)


def _int(name: str, default: int, low: int, high: int) -> int:
    return whole_number(request.args, name, default, low, high)


def _text(name: str, limit: int = 200) -> str:
    return (request.args.get(name) or "").strip()[:limit]


def _filters() -> dict[str, str]:
    out = {name: _text(name) for name in kb_search.FILTERS}
    if out["year"] and kb_search.parse_year(out["year"]) is None:
        raise BadParameter("year", "write a year (2003) or a range (2001-2004)")
    return {k: v for k, v in out.items() if v}


def _api_error(message: str, details: Any = None, status: int = 400):
    return jsonify({"error": message, "details": details}), status


def _search_url(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "") and not (k == "page" and v == 1)}
    return "/search?" + urlencode(kept)


@bp.get("/search")
def results():
    q = _text("q", kb_search.MAX_QUERY_CHARS * 10)
    # The page is for people: a bad parameter is ignored rather than refused (the API refuses it).
    try:
        filters = _filters()
    except BadParameter:
        filters = {k: v for k, v in ((n, _text(n)) for n in ("kind", "tag", "status")) if v}
    try:
        page = _int("page", 1, 1, MAX_OFFSET // PER_PAGE)
    except BadParameter:
        page = 1
    sort = request.args.get("sort", "relevance")
    sort = sort if sort in kb_search.SORTS else "relevance"
    viewer = current_viewer()
    backend = _backend()
    found = backend.query(viewer, q, filters, sort=sort, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    tried = kb_search.TriedBefore()
    if found.query.has_terms and found.query.kinds in ([], ["initiative"], ["lesson"]):
        tried = backend.tried_before(viewer, found.query.text)
    current = {"q": q, "sort": sort if sort != "relevance" else None, **filters}

    def url(**changes: Any) -> str:
        params = {**current, **changes}
        return _search_url(**params)

    facet_links = _facet_links(found, filters, url)
    hits = [{"hit": h, "snippet": h.snippet} for h in found.hits]  # Markup: escaped text with <mark> added
    return render_template(
        "search/results.html", q=q, results=found, hits=hits, filters=filters, sort=sort, url=url,
        facet_links=facet_links, tried=tried, kinds=KINDS,
    )


def _facet_links(found: kb_search.SearchResults, filters: dict[str, str], url) -> list[dict[str, Any]]:
    """For each facet: its values with counts, each a link that narrows the search (or widens it again)."""
    groups = []
    labels = {"kind": "Kind", "tag": "Tag", "status": "Status", "decade": "Decade"}
    for name in kb_search.FACET_NAMES:
        param = "year" if name == "decade" else name
        items = []
        for value, count in found.facets.get(name, {}).items():
            label = KINDS[value].plural if name == "kind" and value in KINDS else value
            if name == "decade":
                start = int(value[:-1]) if value[:-1].isdigit() else 0
                param_value = f"{start}-{start + 9}"
            else:
                param_value = value
            selected = filters.get(param) == param_value
            items.append({"label": label, "count": count, "selected": selected,
                          "href": url(**{param: None if selected else param_value, "page": None})})
        if items:
            groups.append({"name": name, "label": labels[name], "items": items})
    return groups


@bp.get("/api/search")
def api_search():
    try:
        filters = _filters()
        limit = _int("limit", PER_PAGE, 1, MAX_LIMIT)
        offset = _int("offset", 0, 0, MAX_OFFSET)
    except BadParameter as e:
        return _api_error(f"Bad parameter {e.name}", {e.name: e.problem})
    sort = request.args.get("sort", "relevance")
    if sort not in kb_search.SORTS:
        return _api_error("Bad parameter sort", {"sort": f"choose one of {', '.join(kb_search.SORTS)}"})
    found = _backend().query(current_viewer(), _text("q", kb_search.MAX_QUERY_CHARS * 10), filters,
                             sort=sort, limit=limit, offset=offset)
    return jsonify(found.as_json())


@bp.get("/api/suggest")
def api_suggest():
    try:
        limit = _int("limit", 8, 1, 20)
    except BadParameter as e:
        return _api_error(f"Bad parameter {e.name}", {e.name: e.problem})
    return jsonify({"suggestions": _backend().suggest(current_viewer(), _text("q"), limit=limit)})


@bp.get("/api/tried-before")
def api_tried_before():
    title = _text("title", 300) or _text("q", 300)
    found = _backend().tried_before(current_viewer(), title, exclude=_text("exclude") or None)
    return jsonify(found.as_json())
