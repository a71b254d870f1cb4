"""The curators' queues: needs review, never verified, unowned, orphaned, wanted, without sources, and knowledge at
risk; and bulk actions on the pages of a queue (assign an owner, verify, ask for a review).

Every queue goes through kb.access: a page the viewer may not read never appears, and is never counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session, aliased

from kb import access, pages
from kb.access import Viewer
from kb.curation.risk import at_risk
from kb.curation.summaries import PageSummary, summaries
from kb.curation.verification import REVIEW_REQUESTED_MARK, request_review, set_care, verifications, verify
from kb.errors import InvalidFields, NotAllowed
from kb.models import Link, Page, SlugRedirect, TourStop, User


@dataclass
class QueueItem:
    slug: str
    title: str
    reason: str
    page: PageSummary | None = None  # None for a wanted page (it does not exist yet)
    count: int = 0

    def as_json(self) -> dict[str, str]:
        return {"slug": self.slug, "title": self.title, "reason": self.reason}


QUEUES = (
    ("needs_review", "Needs review", "Pages whose review is due, that changed since they were verified, or that "
                                     "someone asked to have checked."),
    ("unowned", "Unowned", "Pages with no owner, or whose owner's account is closed."),
    ("orphaned", "Orphaned", "Pages no other page links to and no tour visits: nobody will find them by browsing."),
    ("wanted", "Wanted", "Pages that are linked to but not written yet, the most linked first."),
    ("unsourced", "Without sources", "Pages that do not say where their knowledge comes from."),
    ("never_verified", "Never verified", "Pages nobody has checked yet."),
)


def needs_review(session: Session, viewer: Viewer, now: datetime) -> list[QueueItem]:
    candidates = summaries(session, viewer, or_(Page.verified_on.is_not(None),
                                                 Page.verified_revision == REVIEW_REQUESTED_MARK))
    states = verifications(session, candidates, now)
    due = [p for p in candidates if states[p.id].state == "needs-review"]
    due.sort(key=lambda p: (states[p.id].due_on or date.min, p.title.lower()))
    return [QueueItem(p.slug, p.title, states[p.id].sentence.rstrip("."), p) for p in due]


def never_verified(session: Session, viewer: Viewer, now: datetime) -> list[QueueItem]:
    candidates = summaries(session, viewer, Page.verified_on.is_(None))
    states = verifications(session, candidates, now)
    return [QueueItem(p.slug, p.title, "Nobody has verified it yet", p) for p in candidates
            if states[p.id].state == "never-verified"]


def unowned(session: Session, viewer: Viewer) -> list[QueueItem]:
    closed = select(User.id).where(User.active.is_(False))
    out = []
    for p in summaries(session, viewer, or_(Page.owner_id.is_(None), Page.owner_id.in_(closed))):
        reason = "No owner" if p.owner is None else f"The owner's account ({p.owner.label}) is closed"
        out.append(QueueItem(p.slug, p.title, reason, p))
    return out


def orphaned(session: Session, viewer: Viewer) -> list[QueueItem]:
    """Pages with no links from pages the viewer can read, and in no tour."""
    # Worked out in the database, so only the orphans themselves are loaded. "No link to it exists" is asked per
    # page and per renamed page (EXISTS, which stops at the first link found) rather than by collecting every
    # link from a readable page first, twice.
    source = aliased(Page)

    def linked(slug):
        return (select(Link.id).join(source, source.id == Link.source_id)
                .where(Link.target_slug == slug, access.page_clause(viewer, source)).exists())

    linked_by_old_slug = select(SlugRedirect.page_id).where(linked(SlugRedirect.old_slug))
    in_tours = select(TourStop.page_id)
    return [QueueItem(p.slug, p.title, "No page links here and no tour visits it", p)
            for p in summaries(session, viewer, ~linked(Page.slug), Page.id.not_in(linked_by_old_slug),
                                Page.id.not_in(in_tours))]


def wanted(session: Session, viewer: Viewer) -> list[QueueItem]:
    """Missing pages, the most linked first; only links from pages the viewer can read count."""
    return [QueueItem(slug, slug.replace("-", " ").capitalize(),
                      f"Linked from {n} page{'s' if n != 1 else ''}, not written yet", None, n)
            for slug, n in pages.wanted_pages(session, viewer, limit=1000)]


def unsourced(session: Session, viewer: Viewer) -> list[QueueItem]:
    empty = or_(Page.sources.is_(None), cast(Page.sources, String).in_(["[]", "null"]))
    return [QueueItem(p.slug, p.title, "No sources cited", p)
            for p in summaries(session, viewer, empty, extra=["sources"]) if not p.sources]


def queues(session: Session, viewer: Viewer, now: datetime, names: Iterable[str] | None = None
           ) -> dict[str, list[QueueItem]]:
    """The curation queues by name (all of them, or the ones named)."""
    makers = {
        "needs_review": lambda: needs_review(session, viewer, now),
        "unowned": lambda: unowned(session, viewer),
        "orphaned": lambda: orphaned(session, viewer),
        "wanted": lambda: wanted(session, viewer),
        "unsourced": lambda: unsourced(session, viewer),
        "never_verified": lambda: never_verified(session, viewer, now),
        "at_risk": lambda: [QueueItem(r.page.slug, r.page.title, r.reason, r.page)
                            for r in at_risk(session, viewer, now)],
    }
    return {name: makers[name]() for name in (names or makers)}


def api_queues(session: Session, viewer: Viewer, now: datetime) -> dict[str, list[dict[str, str]]]:
    """The body of GET /api/curation."""
    names = ("needs_review", "unowned", "orphaned", "wanted", "unsourced", "at_risk")
    return {k: [i.as_json() for i in v] for k, v in queues(session, viewer, now, names).items()}


BULK_ACTIONS = ("assign", "verify", "review")


def bulk(session: Session, viewer: Viewer, slugs: Iterable[str], action: str, now: datetime,
         owner: User | None = None) -> list[Page]:
    """Apply one curation action to many pages: assign an owner, verify, or add to the review queue."""
    if not viewer.may_curate:
        raise NotAllowed("Only curators can change many pages at once.")
    if action not in BULK_ACTIONS:
        raise InvalidFields({"action": f"choose one of {', '.join(BULK_ACTIONS)}"})
    if action == "assign" and (owner is None or not owner.active):
        raise InvalidFields({"owner": "choose the person who will own these pages"})
    done = []
    for slug in dict.fromkeys(slugs):
        page = access.get_readable_page(session, viewer, slug, follow_redirects=False)
        if page is None:
            continue
        if action == "assign":
            set_care(session, viewer, page, owner=owner)
        elif action == "verify":
            verify(session, viewer, page, now)
        else:
            request_review(session, viewer, page)
        done.append(page)
    return done
