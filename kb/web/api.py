"""The JSON API for pages and revisions (PRODUCT §7). Session cookie or `Authorization: Bearer TOKEN`."""
from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for
from werkzeug.exceptions import BadRequest

from kb import access, pages
from kb.errors import BadParameter, KBError, NotAllowed, NotSignedIn
from kb.models import Page, Revision
from kb.web.context import MAX_OFFSET, db_session, iso, kick_index, whole_number
from kb.web.login import current_viewer, require_api_reader

bp = Blueprint("api", __name__, url_prefix="/api")

PUT_KEYS = {"title", "kind", "fields", "tags", "visibility", "readers", "sources", "body", "base_revision", "comment"}


def page_summary(page: Page) -> dict:
    return {"slug": page.slug, "title": page.title, "kind": page.kind, "status": page.status,
            "tags": list(page.tags or []), "visibility": page.visibility, "revision": page.revision,
            "updated": iso(page.updated_at)}


def page_json(page: Page) -> dict:
    s = db_session()
    viewer = current_viewer()
    from sqlalchemy import select

    from kb.models import Link

    links = list(dict.fromkeys(s.scalars(select(Link.target_slug).where(Link.source_id == page.id))))
    data = page_summary(page)
    data.update({
        "fields": page.fields or {},
        "sources": list(page.sources or []),
        "readers": list(page.readers or []) if page.visibility == "restricted" else [],
        "owner": page.owner.name if page.owner else None,
        "body": page.body,
        "html": pages.current_html(s, viewer, page),
        "links": links,
        "backlinks": [p.slug for p in pages.backlinks(s, viewer, page)],
        "url": url_for("wiki.view", slug=page.slug),
    })
    return data


def revision_json(rev: Revision, full: bool = False) -> dict:
    data = {"number": rev.number, "title": rev.title, "slug": rev.slug, "kind": rev.kind,
            "author": rev.author.name if rev.author else None, "created": iso(rev.created_at),
            "comment": rev.comment}
    if full:
        data.update({"fields": rev.fields or {}, "tags": list(rev.tags or []), "visibility": rev.visibility,
                     "sources": list(rev.sources or []), "body": rev.body})
    return data


@bp.route("/pages")
def list_pages():
    viewer = require_api_reader()
    try:
        limit = whole_number(request.args, "limit", 500, low=1, high=5000)
        offset = whole_number(request.args, "offset", 0, high=MAX_OFFSET)
    except ValueError:
        raise KBError("limit and offset must be whole numbers", {"limit": "whole number"})
    found = pages.list_pages(db_session(), viewer, kind=request.args.get("kind") or None,
                             tag=request.args.get("tag") or None, status=request.args.get("status") or None,
                             limit=limit, offset=offset)
    return jsonify({"pages": [page_summary(p) for p in found], "count": len(found)})


@bp.route("/pages/<slug>", methods=["GET"])
def get_page(slug: str):
    viewer = require_api_reader()
    return jsonify(page_json(pages.get_page(db_session(), viewer, slug)))


@bp.route("/pages/<slug>", methods=["PUT"])
def put_page(slug: str):
    viewer = current_viewer()
    if not viewer.signed_in:
        raise NotSignedIn("Sign in or send an API token (Authorization: Bearer TOKEN).")
    if not viewer.may_edit:
        raise NotAllowed("You need a contributor account to edit pages.")
    if request.content_length and request.content_length > pages.MAX_BODY_BYTES * 2:
        return jsonify({"error": "That is too large.", "details": {"body": "too large"}}), 413
    try:
        data = request.get_json(force=True)
    except BadRequest:
        return jsonify({"error": "The request body is not valid JSON.", "details": None}), 400
    if not isinstance(data, dict):
        return jsonify({"error": "The request body must be a JSON object.", "details": None}), 400
    unknown = set(data) - PUT_KEYS
    if unknown:
        return jsonify({"error": "Some fields are not valid.",
                        "details": {k: "is not a page attribute" for k in sorted(unknown)}}), 422
    s = db_session()
    existing = access.get_readable_page(s, viewer, slug)
    state = pages.PageState(
        title=data.get("title", existing.title if existing else ""),
        kind=data.get("kind", existing.kind if existing else "page"),
        fields=data.get("fields", existing.fields if existing else {}),
        tags=data.get("tags", existing.tags if existing else []),
        visibility=data.get("visibility", existing.visibility if existing else "public"),
        readers=data.get("readers", existing.readers if existing else []),
        sources=data.get("sources", existing.sources if existing else []),
        body=data.get("body", existing.body if existing else ""),
    )
    try:
        base = whole_number(data, "base_revision", None)
    except BadParameter:
        return jsonify({"error": "Some fields are not valid.",
                        "details": {"base_revision": "must be a revision number"}}), 422
    comment = data.get("comment") or ""
    if not isinstance(comment, str):
        return jsonify({"error": "Some fields are not valid.", "details": {"comment": "must be text"}}), 422
    page, created = pages.save_page(s, viewer, existing.slug if existing else slug, state, base, comment)
    s.commit()
    kick_index()
    return jsonify(page_json(page)), (201 if created else 200)


@bp.route("/pages/<slug>/revisions")
def list_revisions(slug: str):
    viewer = require_api_reader()
    s = db_session()
    page = pages.get_page(s, viewer, slug)
    return jsonify({"slug": page.slug, "revisions": [revision_json(r) for r in pages.revisions(s, page)]})


@bp.route("/pages/<slug>/revisions/<int:number>")
def get_revision(slug: str, number: int):
    viewer = require_api_reader()
    s = db_session()
    page = pages.get_page(s, viewer, slug)
    rev = pages.get_revision(s, page, number)
    data = revision_json(rev, full=True)
    data["html"] = pages.revision_html(s, viewer, rev)
    return jsonify(data)
