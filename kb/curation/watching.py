"""Watching pages and tags, following kinds, and "what changed since my last visit".

A visit is a run of requests less than `VISIT_GAP` apart; what changed since the previous visit is shown on the home
page and at /changes. Only changes to pages the viewer may read, made by others, are listed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, defer

from kb import access, kinds
from kb.access import Viewer
from kb.db import for_update
from kb.errors import InvalidFields, NotAllowed, NotFound
from kb.models import Page, PageTag, Revision, User, Watch
from kb.slugs import slugify

VISIT_GAP = timedelta(minutes=30)  # requests closer together than this belong to the same visit


def signed_in_user(session: Session, viewer: Viewer) -> User:
    """The viewer's account, for what only a signed-in person can do (watch, follow, have a feed address)."""
    user = session.get(User, viewer.user_id) if viewer.user_id else None
    if user is None:
        raise NotAllowed("Please sign in first.")
    return user


def watches(session: Session, user_id: int) -> tuple[set[int], set[str]]:
    """(watched page ids, watched tags) of a user."""
    page_ids, tags = set(), set()
    for w in session.scalars(select(Watch).where(Watch.user_id == user_id)):
        if w.page_id is not None:
            page_ids.add(w.page_id)
        elif w.tag:
            tags.add(w.tag)
    return page_ids, tags


def is_watching(session: Session, viewer: Viewer, page: Page) -> bool:
    if not viewer.signed_in:
        return False
    return session.scalar(select(Watch.id).where(Watch.user_id == viewer.user_id, Watch.page_id == page.id)) is not None


def _one_change_at_a_time(session: Session, viewer: Viewer) -> None:
    """Lock the person's account row for the rest of the transaction, so that two requests changing what they
    watch (two tabs, a double click) take turns instead of both adding a row. SQLite's writers already take turns."""
    session.scalars(for_update(select(User).where(User.id == viewer.user_id))).first()


def watch_page(session: Session, viewer: Viewer, page: Page, on: bool = True) -> None:
    if not viewer.signed_in or not access.can_read_page(viewer, page):
        raise NotFound()
    _one_change_at_a_time(session, viewer)
    existing = session.scalars(select(Watch).where(Watch.user_id == viewer.user_id, Watch.page_id == page.id)).all()
    if on and not existing:
        session.add(Watch(user_id=viewer.user_id, page_id=page.id))
    elif not on:
        for w in existing:
            session.delete(w)
    session.flush()


def watch_tag(session: Session, viewer: Viewer, tag: str, on: bool = True) -> str:
    """Watch (or stop watching) a tag; returns the tag as stored."""
    signed_in_user(session, viewer)
    tag = slugify(tag or "")
    if not tag:
        raise InvalidFields({"tag": "name a tag to watch"})
    _one_change_at_a_time(session, viewer)
    existing = session.scalars(select(Watch).where(Watch.user_id == viewer.user_id, Watch.tag == tag)).all()
    if on and not existing:
        session.add(Watch(user_id=viewer.user_id, tag=tag))
    elif not on:
        for w in existing:
            session.delete(w)
    session.flush()
    return tag


def _readable(session: Session, viewer: Viewer, *where) -> list[Page]:
    """Readable pages matching `where`, by title, as whole pages without their (possibly long) text. The curation
    lists, which can hold every page, read PageSummary instead (kb.curation.summaries)."""
    q = access.readable_pages(viewer).where(*where).options(defer(Page.body)).order_by(func.lower(Page.title))
    return access.filter_readable(viewer, session.scalars(q))


def watched_pages(session: Session, viewer: Viewer) -> list[Page]:
    page_ids, _ = watches(session, viewer.user_id) if viewer.signed_in else (set(), set())
    return _readable(session, viewer, Page.id.in_(page_ids or [-1]))


def follow_kinds(session: Session, viewer: Viewer, kind_names: Iterable[str]) -> list[str]:
    user = signed_in_user(session, viewer)
    chosen = [k for k in kinds.KINDS if k in set(kind_names)]
    user.follows_kinds = chosen
    session.flush()
    return chosen


def record_visit(user: User, now: datetime, gap: timedelta = VISIT_GAP) -> datetime | None:
    """Note that the user is here now. A visit is a run of requests less than `gap` apart; returns when the
    previous visit ended (None on a first visit), which is what "since your last visit" means."""
    if user.last_visit_at is None or now - user.last_visit_at > gap:
        user.previous_visit_at = user.last_visit_at
    user.last_visit_at = now
    return user.previous_visit_at


def mark_seen(user: User, now: datetime) -> None:
    """Everything up to now counts as seen."""
    user.previous_visit_at = now
    user.last_visit_at = now


@dataclass
class Change:
    """What happened to one page since a moment: its newest revision, how many, by whom, and why it is shown."""

    page: Page
    latest: Revision
    count: int
    authors: list[str]
    why: str
    is_new: bool
    first_number: int


def changes_since(session: Session, viewer: Viewer, since: datetime, limit: int = 100) -> list[Change]:
    """Changes by others, after `since`, to watched pages, pages with watched tags, and new pages of followed kinds."""
    if not viewer.signed_in:
        return []
    user = signed_in_user(session, viewer)
    page_ids, tags = watches(session, user.id)
    followed = [k for k in (user.follows_kinds or []) if k in kinds.KINDS]
    conditions = []
    if page_ids:
        conditions.append(Page.id.in_(page_ids))
    if tags:
        conditions.append(Page.id.in_(select(PageTag.page_id).where(PageTag.tag.in_(tags))))
    if followed:
        created = select(Revision.page_id).where(Revision.number == 1, Revision.created_at > since)
        conditions.append(Page.kind.in_(followed) & Page.id.in_(created))
    if not conditions:
        return []
    q = (select(Revision, Page).join(Page, Page.id == Revision.page_id)
         .where(access.page_clause(viewer), Revision.created_at > since, or_(*conditions),
                or_(Revision.author_id.is_(None), Revision.author_id != user.id))
         .order_by(Revision.created_at.desc(), Revision.id.desc()).limit(limit * 20))
    grouped: dict[int, list[Revision]] = {}
    page_of: dict[int, Page] = {}
    for rev, page in session.execute(q):
        if access.can_read_page(viewer, page):
            grouped.setdefault(page.id, []).append(rev)
            page_of[page.id] = page
    tag_set = set(tags)
    out = []
    for pid, revs in list(grouped.items())[:limit]:
        page = page_of[pid]
        is_new = any(r.number == 1 for r in revs)
        if pid in page_ids:
            why = "you watch this page"
        elif tag_set & set(page.tags or []):
            why = "tagged " + ", ".join(f"#{t}" for t in sorted(tag_set & set(page.tags or []))) + ", which you watch"
        else:
            why = f"a new {kinds.KINDS[page.kind].label.lower()}, a kind you follow"
        authors = list(dict.fromkeys(r.author.label if r.author else "someone" for r in revs))
        out.append(Change(page, revs[0], len(revs), authors, why, is_new, min(r.number for r in revs)))
    return out
