"""Saving, reading, renaming, reverting and deleting pages. Every save becomes a revision; nothing is lost.

Functions take a SQLAlchemy `Session` (owned by the caller, who commits) and the `Viewer` acting. A save names the
revision it was based on; if the page moved on since, it raises `EditConflict` instead of overwriting.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from markupsafe import Markup
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, defer

from kb import access, kinds
from kb.access import Viewer
from kb.db import add_unless_taken, for_update, is_unique_violation
from kb.errors import EditConflict, InvalidFields, NotAllowed, NotFound, TooLarge
from kb.models import Link, Page, PageTag, Revision, SlugRedirect, User, utcnow
from kb.render import mark_wanted, render, trusted, wiki_link_targets
from kb.slugs import slugify

MAX_BODY_BYTES = 1024 * 1024
MAX_TITLE = 300
MAX_TAGS = 50


@dataclass
class PageState:
    """What a save writes: the whole editable state of a page."""

    title: str
    kind: str = "page"
    fields: dict[str, Any] | None = None
    tags: list[str] | None = None
    visibility: str = "public"
    readers: list[str] | None = None
    sources: list[str] | None = None
    body: str = ""

    @classmethod
    def of(cls, obj: Page | Revision) -> "PageState":
        return cls(obj.title, obj.kind, dict(obj.fields or {}), list(obj.tags or []), obj.visibility,
                   list(obj.readers or []), list(obj.sources or []), obj.body)


def _clean_string_list(name: str, value: Any, errors: dict[str, str], limit: int, as_slug: bool = False) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in value.replace("\n", ",").split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors[name] = "must be a list of text"
        return []
    out = [slugify(v) if as_slug else v.strip() for v in value]
    out = list(dict.fromkeys(v for v in out if v))
    if len(out) > limit:
        errors[name] = f"has {len(out)} entries; at most {limit}"
    return out


def clean_state(state: PageState) -> PageState:
    """The state validated and normalised, or InvalidFields / TooLarge saying what is wrong and where."""
    errors: dict[str, str] = {}
    title = state.title.strip() if isinstance(state.title, str) else ""
    if not title:
        errors["title"] = "a page needs a title"
    elif len(title) > MAX_TITLE:
        errors["title"] = f"is too long ({len(title)} characters; at most {MAX_TITLE})"
    elif not slugify(title):
        errors["title"] = "needs at least one letter or digit, so the page can have an address"
    body = state.body if isinstance(state.body, str) else None
    if body is None:
        errors["body"] = "must be text"
        body = ""
    if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise TooLarge(f"The page text is larger than {MAX_BODY_BYTES // 1024} KiB.", {"body": "too large"})
    if state.kind not in kinds.KINDS:
        errors["kind"] = f"unknown kind {state.kind!r}; choose one of {', '.join(kinds.KINDS)}"
    if state.visibility not in ("public", "staff", "restricted"):
        errors["visibility"] = "must be public, staff or restricted"
    tags = _clean_string_list("tags", state.tags, errors, MAX_TAGS, as_slug=True)
    readers = _clean_string_list("readers", state.readers, errors, 500)
    sources = _clean_string_list("sources", state.sources, errors, 200)
    fields: dict[str, Any] = {}
    if "kind" not in errors:
        try:
            fields = kinds.validate_fields(state.kind, state.fields)
        except InvalidFields as e:
            errors.update({f"fields.{k}" if k != "fields" else k: v for k, v in e.errors.items()})
    if errors:
        raise InvalidFields(errors)
    return PageState(title, state.kind, fields, tags, state.visibility, readers, sources,
                     body.replace("\r\n", "\n"))


def existing_slugs(session: Session, slugs: Iterable[str]) -> set[str]:
    """Which of these slugs name a live page (or an old name of one)."""
    slugs = list(set(slugs))
    if not slugs:
        return set()
    found = set(session.scalars(select(Page.slug).where(Page.slug.in_(slugs), Page.deleted_at.is_(None))))
    found |= set(session.scalars(
        select(SlugRedirect.old_slug).join(Page, Page.id == SlugRedirect.page_id)
        .where(SlugRedirect.old_slug.in_(slugs), Page.deleted_at.is_(None))))
    return found


def visible_targets(session: Session, viewer: Viewer, slugs: Iterable[str]) -> set[str]:
    """Which of these link targets the viewer can open: readable pages, and old names of readable pages."""
    slugs = set(slugs)
    if not slugs:
        return set()
    found = set(readable_titles(session, viewer, slugs))
    rows = session.execute(select(SlugRedirect.old_slug, Page.visibility, Page.readers)
                           .join(Page, Page.id == SlugRedirect.page_id)
                           .where(SlugRedirect.old_slug.in_(slugs), access.page_clause(viewer))).all()
    return found | {old for old, visibility, readers in rows if access.can_read(viewer, visibility, readers)}


def for_reader(session: Session, viewer: Viewer, html: str, body: str) -> Markup:
    """Cached HTML as this reader sees it: links to pages they cannot open are marked wanted, like missing ones."""
    targets = wiki_link_targets(body)
    if not targets:
        return trusted(html)
    return mark_wanted(html, set(targets) - visible_targets(session, viewer, targets))


def render_body(session: Session, viewer: Viewer, body: str) -> tuple[str, list[str]]:
    """HTML for a body as this reader sees it (previews, tour notes). Returns (html, linked slugs)."""
    rendered = render(body)
    return for_reader(session, viewer, rendered.html, body), list(rendered.links)


def _slug_taken(session: Session, slug: str, page_id: int | None) -> bool:
    other = session.scalar(select(Page.id).where(Page.slug == slug))
    if other is not None and other != page_id:
        return True
    redirect = session.get(SlugRedirect, slug)
    return redirect is not None and redirect.page_id != page_id


def _link_rows(page_id: int, slug: str, kind: str, fields: dict, body_links: list[str]) -> list[dict]:
    """The links of a page: its body's wiki links and its link fields, without self-links or repeats."""
    rows = [("body", s) for s in body_links] + kinds.field_links(kind, fields or {})
    seen: set[tuple[str, str]] = set()
    out = []
    for via, target in rows:
        if (via, target) not in seen and target != slug:
            seen.add((via, target))
            out.append({"source_id": page_id, "target_slug": target, "via": via})
    return out


def _write_links(session: Session, page: Page, body_links: list[str]) -> None:
    session.execute(delete(Link).where(Link.source_id == page.id))
    rows = _link_rows(page.id, page.slug, page.kind, page.fields, body_links)
    if rows:
        session.execute(insert(Link), rows)


def _write_tags(session: Session, page: Page) -> None:
    session.execute(delete(PageTag).where(PageTag.page_id == page.id))
    if page.tags:
        session.execute(insert(PageTag), [{"page_id": page.id, "tag": t} for t in page.tags])


def _search(session: Session):
    """The search backend bound to this session's database (kb.search.init_app binds it), told of every change in
    the change's own transaction, so none is lost; None for a database used without an app."""
    database = session.info.get("kb_database")
    return getattr(database, "search", None)


def line_diff(old: str, new: str, old_label: str = "before", new_label: str = "after") -> str:
    """A unified diff of two texts, line by line. Every line ends with a newline in the diff, so a last line
    without one never runs into the next line of the diff."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, n=3, lineterm="")
    return "".join(line + "\n" for line in lines)


def _state_text(state: PageState | Page | Revision) -> str:
    """A page's whole state as text, so diffs show field and tag changes too, not only the body."""
    import json

    head = {"title": state.title, "kind": state.kind, "visibility": state.visibility, "tags": state.tags or [],
            "fields": state.fields or {}}
    return json.dumps(head, ensure_ascii=False, indent=1, sort_keys=True) + "\n\n" + (state.body or "")


def save_page(
    session: Session,
    viewer: Viewer,
    slug: str | None,
    state: PageState,
    base_revision: int | None,
    comment: str = "",
    *,
    html: str | None = None,
    body_links: list[str] | None = None,
    when: datetime | None = None,
) -> tuple[Page, bool]:
    """Create or update the page at `slug` (derived from the title when None). Returns (page, created).

    `base_revision` is the revision the editor started from (None or 0 when creating). A stale base raises
    EditConflict carrying the current revision and the diff from the editor's text to the current text.
    `html`/`body_links` may be passed pre-rendered (bulk import renders in parallel).
    """
    if not viewer.may_edit:
        raise NotAllowed("You need a contributor account to edit pages.")
    state = clean_state(state)
    slug = slugify(slug) if slug else slugify(state.title)
    if not slug:
        raise InvalidFields({"slug": "needs at least one letter or digit"})
    if not access.may_set_visibility(viewer, state.visibility):
        raise InvalidFields({"visibility": "only curators can make a page restricted"})
    # The page row stays locked until the save commits, so a concurrent save of it waits and then sees this one.
    page = session.scalar(for_update(select(Page).where(Page.slug == slug)))
    if page is None:
        redirect = session.get(SlugRedirect, slug)
        if redirect is not None:
            page = session.scalar(for_update(select(Page).where(Page.id == redirect.page_id)))
    created = page is None or page.deleted_at is not None
    if page is not None and page.deleted_at is None:
        if not access.can_read_page(viewer, page):
            # Do not reveal what is there: the address is simply not available.
            raise NotAllowed("That page address is not available. Choose another title.")
        if not access.can_edit_page(viewer, page):
            raise NotAllowed()
        if not base_revision or base_revision != page.revision:
            raise _conflict(session, page, state)
    elif page is not None and not viewer.is_admin:
        raise NotAllowed("A page with that address was deleted; ask an administrator to restore it.")
    elif base_revision and page is None:
        raise NotFound("The page you were editing no longer exists.")

    now = when or utcnow()
    if page is None:
        page = Page(slug=slug, title=state.title, kind=state.kind, created_at=now,
                    owner_id=viewer.user_id, verifier_id=None, revision=0)
        if not add_unless_taken(session, page):
            # Another save created this address since we looked (two creates at once): theirs stands.
            taken = session.scalar(for_update(select(Page).where(Page.slug == slug)))
            if taken is None or not access.can_read_page(viewer, taken):
                raise NotAllowed("That page address is not available. Choose another title.")
            raise _conflict(session, taken, state)
    number = page.revision + 1
    if html is None or body_links is None:
        rendered = render(state.body)
        html, body_links = rendered.html, list(rendered.links)
    page.title, page.kind, page.fields, page.tags = state.title, state.kind, state.fields, state.tags
    page.visibility, page.readers, page.sources, page.body = state.visibility, state.readers, state.sources, state.body
    page.status = kinds.status_of(state.kind, state.fields or {})
    page.revision = number
    page.updated_at, page.updated_by_id = now, viewer.user_id
    page.deleted_at, page.deleted_by_id = None, None
    session.flush()
    session.add(Revision(page_id=page.id, number=number, slug=page.slug, title=state.title, kind=state.kind,
                         fields=state.fields, tags=state.tags, visibility=state.visibility, readers=state.readers,
                         sources=state.sources, body=state.body, html=html, author_id=viewer.user_id,
                         created_at=now, comment=(comment or "")[:500]))
    _write_links(session, page, body_links)
    _write_tags(session, page)
    search = _search(session)
    if search is not None:
        search.page_saved(session, page)
    try:
        session.flush()
    except IntegrityError as e:  # a revision number taken by a writer that did not lock the page (never expected)
        if not is_unique_violation(e):
            raise
        raise EditConflict(number - 1, "", "Someone else saved this page at the same moment. Your changes were "
                                           "not saved; open the page again to see theirs.") from None
    return page, created


def _conflict(session: Session, page: Page, state: PageState) -> EditConflict:
    """The conflict of a save based on an older revision than `page` has: the diff from the editor's text to the
    current text."""
    current = session.scalar(select(Revision).where(Revision.page_id == page.id, Revision.number == page.revision))
    return EditConflict(page.revision, line_diff(_state_text(state), _state_text(current or page),
                                                 "your version", f"revision {page.revision}"))


@dataclass
class NewPage:
    """A page to create in bulk: its address, its checked state, and its pre-rendered body."""

    slug: str
    state: PageState
    html: str
    links: list[str]
    comment: str = ""


def create_pages(session: Session, viewer: Viewer, new_pages: list[NewPage], when: datetime | None = None) -> list[int]:
    """Create many new pages at once (an import): the same rows save_page writes, as a few bulk inserts.

    The caller guarantees the slugs are free and the states went through clean_state. Returns the page ids.
    """
    if not viewer.may_edit:
        raise NotAllowed("You need a contributor account to edit pages.")
    if not new_pages:
        return []
    now = when or utcnow()
    page_rows = []
    for n in new_pages:
        st = n.state
        if not access.may_set_visibility(viewer, st.visibility):
            raise InvalidFields({"visibility": "only curators can make a page restricted"})
        page_rows.append(dict(slug=n.slug, title=st.title, kind=st.kind, status=kinds.status_of(st.kind, st.fields or {}),
                              fields=st.fields, tags=st.tags, visibility=st.visibility, readers=st.readers,
                              sources=st.sources, body=st.body, revision=1, owner_id=viewer.user_id,
                              review_every=180, created_at=now, updated_at=now, updated_by_id=viewer.user_id))
    session.execute(insert(Page), page_rows)
    ids = dict(session.execute(select(Page.slug, Page.id).where(Page.slug.in_([n.slug for n in new_pages]))).all())
    revisions, links, tags = [], [], []
    for n in new_pages:
        st, page_id = n.state, ids[n.slug]
        revisions.append(dict(page_id=page_id, number=1, slug=n.slug, title=st.title, kind=st.kind, fields=st.fields,
                              tags=st.tags, visibility=st.visibility, readers=st.readers, sources=st.sources,
                              body=st.body, html=n.html, author_id=viewer.user_id, created_at=now,
                              comment=n.comment[:500]))
        links.extend(_link_rows(page_id, n.slug, st.kind, st.fields, n.links))
        tags.extend({"page_id": page_id, "tag": t} for t in st.tags or [])
    for model, rows in ((Revision, revisions), (Link, links), (PageTag, tags)):
        if rows:
            session.execute(insert(model), rows)
    search = _search(session)
    if search is not None:
        search.pages_written(session, list(ids.values()))
    return [ids[n.slug] for n in new_pages]


def get_page(session: Session, viewer: Viewer, slug: str) -> Page:
    """The readable page at `slug` or NotFound (also when it exists but the viewer may not read it)."""
    page = access.get_readable_page(session, viewer, slug)
    if page is None:
        raise NotFound()
    return page


def get_revision(session: Session, page: Page, number: int) -> Revision:
    rev = session.scalar(select(Revision).where(Revision.page_id == page.id, Revision.number == number))
    if rev is None:
        raise NotFound(f"Revision {number} of this page does not exist.")
    return rev


def revisions(session: Session, page: Page) -> list[Revision]:
    return list(session.scalars(select(Revision).where(Revision.page_id == page.id).order_by(Revision.number.desc())))


def current_html(session: Session, viewer: Viewer, page: Page, cache_store=None) -> str:
    """The page's body as this reader sees it, from the per-revision HTML cache (rendered and stored if missing)."""
    rev = session.scalar(select(Revision).where(Revision.page_id == page.id, Revision.number == page.revision))
    if rev is None:
        return ""
    return revision_html(session, viewer, rev, cache_store)


def store_html(session: Session, revision_id: int, html: str) -> None:
    session.execute(update(Revision).where(Revision.id == revision_id).values(html=html))


def revision_html(session: Session, viewer: Viewer, rev: Revision, cache_store=None) -> str:
    html = rev.html
    if html is None:
        html = render(rev.body).html
        if cache_store is not None:
            cache_store(rev.id, html)
    return for_reader(session, viewer, html, rev.body)


def diff_revisions(a: Revision, b: Revision) -> list[tuple[str, str]]:
    """Line diff of two revisions' whole state as (op, line) pairs: op is ' ', '-', '+' or '@'."""
    out: list[tuple[str, str]] = []
    lines = difflib.unified_diff(_state_text(a).splitlines(), _state_text(b).splitlines(), lineterm="", n=3)
    for line in list(lines)[2:]:
        op = line[:1] if line[:1] in "+- @" else " "
        out.append((op, line[1:] if op != "@" else line))
    return out


def revert(session: Session, viewer: Viewer, page: Page, number: int, base_revision: int) -> Page:
    """Make revision `number` current again, as a new revision."""
    old = get_revision(session, page, number)
    state = PageState.of(old)
    if not access.may_set_visibility(viewer, state.visibility):
        state.visibility = page.visibility
    saved, _ = save_page(session, viewer, page.slug, state, base_revision, f"Reverted to revision {number}")
    return saved


def rename(session: Session, viewer: Viewer, page: Page, new_title: str, base_revision: int,
           new_slug: str | None = None, comment: str = "") -> Page:
    """Give the page a new title and address; the old address keeps working through a redirect."""
    if not access.can_edit_page(viewer, page):
        raise NotAllowed()
    slug = slugify(new_slug or new_title)
    if not slug:
        raise InvalidFields({"title": "needs at least one letter or digit, so the page can have an address"})
    session.scalar(for_update(select(Page).where(Page.id == page.id)))  # as save_page: wait for a save under way
    if base_revision != page.revision:
        raise EditConflict(page.revision, "")
    old_slug = page.slug
    if slug != old_slug:
        taken = InvalidFields({"title": f"the address {slug!r} is already used by another page"})
        if _slug_taken(session, slug, page.id):
            raise taken
        session.execute(delete(SlugRedirect).where(SlugRedirect.old_slug == slug))
        session.add(SlugRedirect(old_slug=old_slug, page_id=page.id))
        page.slug = slug
        try:
            session.flush()
        except IntegrityError as e:  # another page took the address at the same moment
            if not is_unique_violation(e):
                raise
            raise taken from None
    state = PageState.of(page)
    state.title = new_title
    saved, _ = save_page(session, viewer, slug, state, base_revision,
                         comment or f"Renamed from {old_slug!r}")
    search = _search(session)
    if search is not None and slug != old_slug:
        search.page_renamed(session, saved, old_slug)
    return saved


def delete_page(session: Session, viewer: Viewer, page: Page, comment: str = "") -> None:
    """Hide a page everywhere. Its revisions stay, and an administrator can restore it."""
    if not viewer.may_curate or not access.can_read_page(viewer, page):
        raise NotAllowed("Only curators and administrators can delete pages.")
    page.deleted_at, page.deleted_by_id = utcnow(), viewer.user_id
    search = _search(session)
    if search is not None:
        search.page_deleted(session, page)
    session.flush()


def restore_page(session: Session, viewer: Viewer, page_id: int) -> Page:
    if not viewer.is_admin:
        raise NotAllowed("Only administrators can restore deleted pages.")
    page = session.get(Page, page_id)
    if page is None or page.deleted_at is None:
        raise NotFound("There is no deleted page with that id.")
    page.deleted_at, page.deleted_by_id = None, None
    search = _search(session)
    if search is not None:
        search.page_saved(session, page)
    session.flush()
    return page


def deleted_pages(session: Session, viewer: Viewer) -> list[Page]:
    if not viewer.is_admin:
        return []
    return list(session.scalars(select(Page).where(Page.deleted_at.is_not(None)).order_by(Page.deleted_at.desc())))


def backlinks(session: Session, viewer: Viewer, page: Page) -> list[Page]:
    """Readable pages that link to this page (by its slug or an old slug), by title."""
    names = [page.slug] + list(session.scalars(select(SlugRedirect.old_slug).where(SlugRedirect.page_id == page.id)))
    sources = select(Link.source_id).where(Link.target_slug.in_(names))
    q = access.readable_pages(viewer).where(Page.id.in_(sources)).order_by(Page.title)
    return access.filter_readable(viewer, session.scalars(q))


def backlinks_by_field(session: Session, viewer: Viewer, page: Page) -> dict[str, list[Page]]:
    """Readable pages linking here, grouped by the field they link through ('body' for the text)."""
    names = [page.slug] + list(session.scalars(select(SlugRedirect.old_slug).where(SlugRedirect.page_id == page.id)))
    rows = session.execute(
        select(Link.via, Page).join(Page, Page.id == Link.source_id)
        .where(Link.target_slug.in_(names), access.page_clause(viewer)).order_by(Page.title)
        .options(defer(Page.body), defer(Page.sources))  # lists show titles and fields, never the text
    ).all()
    out: dict[str, list[Page]] = {}
    for via, p in rows:
        if access.can_read_page(viewer, p) and p not in out.setdefault(via, []):
            out[via].append(p)
    return out


def wanted_pages(session: Session, viewer: Viewer, limit: int = 200) -> list[tuple[str, int]]:
    """Slugs linked from readable pages that lead nowhere for this viewer, the most linked first: (slug, count).

    A page the viewer may not read counts as not written, exactly as if it did not exist.
    """
    target = aliased(Page)
    live = select(target.slug).where(access.page_clause(viewer, target))
    redirects = (select(SlugRedirect.old_slug).join(target, target.id == SlugRedirect.page_id)
                 .where(access.page_clause(viewer, target)))
    q = (select(Link.target_slug, func.count(func.distinct(Link.source_id)))
         .join(Page, Page.id == Link.source_id)
         .where(access.page_clause(viewer), Link.target_slug.not_in(live), Link.target_slug.not_in(redirects))
         .group_by(Link.target_slug).order_by(func.count(func.distinct(Link.source_id)).desc(), Link.target_slug)
         .limit(limit))
    return [(slug, n) for slug, n in session.execute(q)]


def list_pages(session: Session, viewer: Viewer, kind: str | None = None, tag: str | None = None,
               status: str | None = None, limit: int = 500, offset: int = 0) -> list[Page]:
    """Readable pages, filtered by kind, tag and status, by title."""
    q = access.readable_pages(viewer)
    if kind:
        q = q.where(Page.kind == kind)
    if status:
        q = q.where(Page.status == status)
    if tag:
        q = q.where(Page.id.in_(select(PageTag.page_id).where(PageTag.tag == slugify(tag))))
    q = q.order_by(func.lower(Page.title)).limit(limit).offset(offset)
    return access.filter_readable(viewer, session.scalars(q))


def count_by_kind(session: Session, viewer: Viewer) -> dict[str, int]:
    """How many readable pages of each kind there are (every kind, zero included)."""
    rows = session.execute(select(Page.kind, func.count()).where(access.page_clause(viewer)).group_by(Page.kind))
    counts = {k: 0 for k in kinds.KINDS}
    counts.update({kind: n for kind, n in rows})
    return counts


def recent_revisions(session: Session, viewer: Viewer, kind: str | None = None, tag: str | None = None,
                     user: str | None = None, since: datetime | None = None, limit: int = 100) -> list[tuple[Revision, Page]]:
    """The newest revisions of readable pages, newest first."""
    q = (select(Revision, Page).join(Page, Page.id == Revision.page_id).where(access.page_clause(viewer))
         .order_by(Revision.created_at.desc(), Revision.id.desc()).limit(limit))
    if kind:
        q = q.where(Page.kind == kind)
    if tag:
        q = q.where(Page.id.in_(select(PageTag.page_id).where(PageTag.tag == slugify(tag))))
    if user:
        q = q.where(Revision.author_id.in_(select(User.id).where(User.name == user)))
    if since:
        q = q.where(Revision.created_at > since)
    return [(r, p) for r, p in session.execute(q).all() if access.can_read_page(viewer, p)]


def all_tags(session: Session, viewer: Viewer) -> list[tuple[str, int]]:
    q = (select(PageTag.tag, func.count()).join(Page, Page.id == PageTag.page_id).where(access.page_clause(viewer))
         .group_by(PageTag.tag).order_by(func.count().desc(), PageTag.tag))
    return [(t, n) for t, n in session.execute(q)]


def readable_titles(session: Session, viewer: Viewer, slugs: Iterable[str]) -> dict[str, str]:
    """{slug: title} for the slugs that name pages the viewer may read (hidden ones look missing)."""
    slugs = list(set(slugs))
    if not slugs:
        return {}
    rows = session.execute(select(Page.slug, Page.title, Page.visibility, Page.readers)
                           .where(Page.slug.in_(slugs), access.page_clause(viewer))).all()
    return {slug: title for slug, title, visibility, readers in rows if access.can_read(viewer, visibility, readers)}
