"""Curation and succession: keeping the memory current, and handing it over when people leave (PRODUCT §4.6, §4.7).

* Verification: each page has a verifier (default: its owner) and an interval (`review_every` days). A page is
  Verified, Needs review (the interval passed, it changed materially since it was verified, or someone asked for a
  review) or Never verified. Time comes from the caller (`now`), so tests control the clock.
* Queues for curators: needs review, unowned, orphaned, wanted, without sources; and the knowledge-at-risk ranking.
* Watching pages and tags, following kinds, and "what changed since my last visit".
* Reassignment of everything a departing person owns to a successor, in one logged action.
* Feed tokens, so feed readers (which cannot sign in) see what their owner may see.
* The handover wizard: the §3 handover questions asked in plain words, step by step, saved as a real page.

Every list goes through kb.access: a page the viewer may not read never appears, and is never counted.
"""
from __future__ import annotations

import json
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Protocol

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session, aliased, defer

from kb import access, kinds, pages
from kb.access import Viewer
from kb.accounts import audit, token_digest
from kb.errors import InvalidFields, NotAllowed, NotFound
from kb.models import (Draft, Link, Page, PageTag, Revision, SlugRedirect, Tour, TourStop, User,
                       Watch, utcnow)
from kb.slugs import slugify

DEFAULT_REVIEW_DAYS = 180
REVIEW_REQUESTED = "page.review_requested"
# Asking for a review sets verified_revision to 0 (real revisions start at 1): the page needs review until someone
# verifies it again, while who verified it last, and when, stay on record. The log says who asked, and when.
REVIEW_REQUESTED_MARK = 0
# Bookkeeping fields: setting them does not change what a page says, so it does not undo a verification.
IMMATERIAL_FIELDS = frozenset({"successor_checked", "handover"})
HIGH_RISK = 12  # attrition × criticality, out of 25: a handover at or above this needs a successor's check
UNDER_WAY = ("piloting", "active", "sustained")
VISIT_GAP = timedelta(minutes=30)  # requests closer together than this belong to the same visit


def _chunks(items: list, size: int = 500) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _user(session: Session, viewer: Viewer) -> User:
    user = session.get(User, viewer.user_id) if viewer.user_id else None
    if user is None:
        raise NotAllowed("Please sign in first.")
    return user


# ---------------------------------------------------------------------------------------------------------------
# Pages as the lists read them


class NotLoaded(RuntimeError):
    """A list read a column of a page that the list did not load."""


# What the curation lists read of a page. A list can hold every page (each one is "never verified" until someone
# checks it), so it reads these columns rather than whole pages: no ORM object per page, and no decoding of fields,
# tags or sources it does not use. `fields` or `sources` are added for the lists that need them. The readers list
# comes as its JSON text and is decoded only if read: kb.access reads it only for a restricted page that the viewer's
# role does not open by itself, and it was the costliest column to decode for every page of a long list.
_SUMMARY_COLUMNS = (Page.id, Page.slug, Page.title, Page.kind, Page.status, Page.visibility,
                    cast(Page.readers, String).label("readers_json"), Page.deleted_at, Page.owner_id,
                    Page.updated_at, Page.revision, Page.review_every, Page.verified_on, Page.verified_revision)
_EXTRA_COLUMNS = {"fields": Page.fields, "sources": Page.sources}


class PageSummary:
    """A page in a curation list: the columns above, its owner (a User, or None) and, if loaded, fields or sources.

    It carries what kb.access.can_read_page reads (visibility, readers, deleted_at) and what the lists and their
    templates show. Reading anything else raises NotLoaded, not AttributeError: templates turn a missing attribute
    into an empty string, and a list that starts to use another column must fail loudly, not print nothing.
    """

    __slots__ = (*(c.key for c in _SUMMARY_COLUMNS), "owner", *_EXTRA_COLUMNS)

    def __init__(self, id, slug, title, kind, status, visibility, readers_json, deleted_at, owner_id, updated_at,
                 revision, review_every, verified_on, verified_revision, owner=None):
        self.id, self.slug, self.title, self.kind, self.status = id, slug, title, kind, status
        self.visibility, self.readers_json, self.deleted_at = visibility, readers_json, deleted_at
        self.owner_id, self.updated_at, self.revision, self.review_every = owner_id, updated_at, revision, review_every
        self.verified_on, self.verified_revision, self.owner = verified_on, verified_revision, owner

    @property
    def readers(self) -> list[str] | None:
        return None if self.readers_json is None else json.loads(self.readers_json)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: an attribute this summary does not have, or did not load.
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotLoaded(f"curation lists do not load a page's {name!r}; add it to the list's query")

    def __repr__(self) -> str:
        return f"<PageSummary {self.id} {self.slug!r}>"


def _summaries(session: Session, viewer: Viewer, *where, extra: Iterable[str] = ()) -> list[PageSummary]:
    """Readable pages matching `where`, by title, as PageSummary (with the `extra` columns named)."""
    extra = tuple(extra)
    q = (access.readable_pages(viewer).with_only_columns(*_SUMMARY_COLUMNS, *(_EXTRA_COLUMNS[e] for e in extra))
         .where(*where).order_by(func.lower(Page.title)))
    n = len(_SUMMARY_COLUMNS)
    if extra:
        found = []
        for row in session.execute(q):
            p = PageSummary(*row[:n])
            for name, value in zip(extra, row[n:]):
                setattr(p, name, value)
            found.append(p)
    else:
        found = [PageSummary(*row) for row in session.execute(q)]
    found = access.filter_readable(viewer, found)
    owner_ids = list({p.owner_id for p in found} - {None})
    owners: dict[int, User] = {}
    for chunk in _chunks(owner_ids):
        owners.update((u.id, u) for u in session.scalars(select(User).where(User.id.in_(chunk))))
    for p in found:
        p.owner = owners.get(p.owner_id)
    return found


# ---------------------------------------------------------------------------------------------------------------
# Verification


@dataclass
class Verification:
    """A page's verification state: 'verified', 'needs-review' or 'never-verified', and why."""

    state: str
    reasons: list[str] = field(default_factory=list)
    verified_on: datetime | None = None
    due_on: date | None = None

    @property
    def label(self) -> str:
        return {"verified": "Verified", "needs-review": "Needs review", "never-verified": "Never verified"}[self.state]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def sentence(self) -> str:
        """The reasons as a sentence for people: first letter capital, full stop."""
        text = self.reason
        return (text[:1].upper() + text[1:] + ".") if text else ""


def verifier_of(page: Page) -> User | None:
    """Who verifies the page: its named verifier, else its owner."""
    return page.verifier or page.owner


def may_verify(viewer: Viewer, page: Page) -> bool:
    """The owner, the named verifier and curators may verify a page they can read."""
    if not viewer.signed_in or not access.can_read_page(viewer, page):
        return False
    return viewer.may_curate or viewer.user_id in (page.owner_id, page.verifier_id)


def _substance(kind: str, fields: dict | None, body: str | None, sources: list | None) -> tuple:
    """What a page says: a change here means its verification no longer holds. Titles, tags and who may read it
    are not substance; neither is whitespace."""
    fields = {k: v for k, v in (fields or {}).items() if k not in IMMATERIAL_FIELDS}
    return kind, fields, " ".join((body or "").split()), sorted(sources or [])


def _changed_since_verified(session: Session, candidates: list[Page | PageSummary]) -> set[int]:
    """Ids of pages whose text or fields changed (in substance) since the revision that was verified.

    Both sides are read here, in one query per 500 pages, so the candidates need only their id: lists pass
    summaries without text or fields (the session flushes pending changes to a page before the query runs)."""
    ids = [p.id for p in candidates]
    changed: set[int] = set()
    for chunk in _chunks(ids):
        q = (select(Revision.page_id, Revision.kind, Revision.fields, Revision.body, Revision.sources,
                    Page.kind, Page.fields, Page.body, Page.sources)
             .join(Page, Page.id == Revision.page_id)
             .where(Page.id.in_(chunk), Revision.number == Page.verified_revision))
        for page_id, *both in session.execute(q):
            if _substance(*both[:4]) != _substance(*both[4:]):
                changed.add(page_id)
    return changed


def verifications(session: Session, page_list: Iterable[Page | PageSummary], now: datetime
                  ) -> dict[int, Verification]:
    """The verification state of each page, worked out in a few queries: {page id: Verification}."""
    page_list = list(page_list)
    changed = _changed_since_verified(session, [
        p for p in page_list if p.verified_on and p.verified_revision and p.verified_revision != p.revision])
    out: dict[int, Verification] = {}
    for p in page_list:
        requested = p.verified_revision == REVIEW_REQUESTED_MARK
        if p.verified_on is None:
            if requested:
                out[p.id] = Verification("needs-review", ["a review was asked for"])
            else:
                out[p.id] = Verification("never-verified", ["nobody has verified this page yet"])
            continue
        every = p.review_every or DEFAULT_REVIEW_DAYS
        due = (p.verified_on + timedelta(days=every)).date()
        reasons = []
        if now.date() >= due:
            reasons.append(f"review was due on {due:%Y-%m-%d} (every {every} days)")
        if p.id in changed:
            reasons.append(f"changed since it was verified (revision {p.verified_revision}, now {p.revision})")
        if requested:
            reasons.append("a review was asked for")
        out[p.id] = Verification("needs-review" if reasons else "verified", reasons, p.verified_on, due)
    return out


def verification(session: Session, page: Page, now: datetime) -> Verification:
    return verifications(session, [page], now)[page.id]


def verify(session: Session, viewer: Viewer, page: Page, now: datetime) -> None:
    """Record that the viewer checked the page as it is now: who, when, and which revision."""
    if not may_verify(viewer, page):
        raise NotAllowed("Only the page's owner, its verifier or a curator can verify it.")
    page.verified_by_id, page.verified_on, page.verified_revision = viewer.user_id, now, page.revision
    audit(session, viewer.user_id, "page.verify", f"page:{page.id}", slug=page.slug, revision=page.revision)
    session.flush()


def request_review(session: Session, viewer: Viewer, page: Page) -> None:
    """Put the page on the needs-review queue until someone verifies it again."""
    if not (viewer.may_curate or viewer.user_id == page.owner_id) or not access.can_read_page(viewer, page):
        raise NotAllowed("Only the page's owner or a curator can ask for a review.")
    page.verified_revision = REVIEW_REQUESTED_MARK
    audit(session, viewer.user_id, REVIEW_REQUESTED, f"page:{page.id}", slug=page.slug)
    session.flush()


def set_care(session: Session, viewer: Viewer, page: Page, *, owner: User | None | str = "keep",
             verifier: User | None | str = "keep", review_every: int | None = None) -> None:
    """Change a page's owner (curators), verifier and review interval (owner or curator). "keep" leaves a value."""
    if not access.can_read_page(viewer, page) or not (viewer.may_curate or viewer.user_id == page.owner_id):
        raise NotAllowed("Only the page's owner or a curator can change who looks after it.")
    changes: dict[str, Any] = {}
    for key, person, current in (("owner", owner, page.owner_id), ("verifier", verifier, page.verifier_id)):
        if isinstance(person, User) and not person.active and person.id != current:
            raise InvalidFields({key: f"{person.label}'s account is closed; choose an active person"})
    if owner != "keep" and (owner.id if owner else None) != page.owner_id:
        if not viewer.may_curate:
            raise NotAllowed("Only curators can give a page to someone else.")
        page.owner_id = owner.id if owner else None
        changes["owner"] = owner.name if owner else None
    if verifier != "keep" and (verifier.id if verifier else None) != page.verifier_id:
        page.verifier_id = verifier.id if verifier else None
        changes["verifier"] = verifier.name if verifier else None
    if review_every is not None and review_every != page.review_every:
        if not 1 <= review_every <= 3650:
            raise InvalidFields({"review_every": "must be between 1 and 3650 days"})
        page.review_every = review_every
        changes["review_every"] = review_every
    if changes:
        audit(session, viewer.user_id, "page.care", f"page:{page.id}", slug=page.slug, **changes)
    session.flush()


# ---------------------------------------------------------------------------------------------------------------
# Queues


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


def _readable(session: Session, viewer: Viewer, *where) -> list[Page]:
    """Readable pages matching `where`, by title, as whole pages without their (possibly long) text. The curation
    lists, which can hold every page, read PageSummary instead (_summaries)."""
    q = access.readable_pages(viewer).where(*where).options(defer(Page.body)).order_by(func.lower(Page.title))
    return access.filter_readable(viewer, session.scalars(q))


def needs_review(session: Session, viewer: Viewer, now: datetime) -> list[QueueItem]:
    candidates = _summaries(session, viewer, or_(Page.verified_on.is_not(None),
                                                 Page.verified_revision == REVIEW_REQUESTED_MARK))
    states = verifications(session, candidates, now)
    due = [p for p in candidates if states[p.id].state == "needs-review"]
    due.sort(key=lambda p: (states[p.id].due_on or date.min, p.title.lower()))
    return [QueueItem(p.slug, p.title, states[p.id].sentence.rstrip("."), p) for p in due]


def never_verified(session: Session, viewer: Viewer, now: datetime) -> list[QueueItem]:
    candidates = _summaries(session, viewer, Page.verified_on.is_(None))
    states = verifications(session, candidates, now)
    return [QueueItem(p.slug, p.title, "Nobody has verified it yet", p) for p in candidates
            if states[p.id].state == "never-verified"]


def unowned(session: Session, viewer: Viewer) -> list[QueueItem]:
    closed = select(User.id).where(User.active.is_(False))
    out = []
    for p in _summaries(session, viewer, or_(Page.owner_id.is_(None), Page.owner_id.in_(closed))):
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
            for p in _summaries(session, viewer, ~linked(Page.slug), Page.id.not_in(linked_by_old_slug),
                                Page.id.not_in(in_tours))]


def wanted(session: Session, viewer: Viewer) -> list[QueueItem]:
    """Missing pages, the most linked first; only links from pages the viewer can read count."""
    return [QueueItem(slug, slug.replace("-", " ").capitalize(),
                      f"Linked from {n} page{'s' if n != 1 else ''}, not written yet", None, n)
            for slug, n in pages.wanted_pages(session, viewer, limit=1000)]


def unsourced(session: Session, viewer: Viewer) -> list[QueueItem]:
    empty = or_(Page.sources.is_(None), cast(Page.sources, String).in_(["[]", "null"]))
    return [QueueItem(p.slug, p.title, "No sources cited", p)
            for p in _summaries(session, viewer, empty, extra=["sources"]) if not p.sources]


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
        "at_risk": lambda: [r.as_item() for r in at_risk(session, viewer, now)],
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


# ---------------------------------------------------------------------------------------------------------------
# Reassignment


@dataclass
class Holdings:
    """What one person looks after."""

    pages: int = 0
    tours: int = 0
    verifications: int = 0

    @property
    def total(self) -> int:
        return self.pages + self.tours + self.verifications


def holdings(session: Session, user_ids: Iterable[int] | None = None) -> dict[int, Holdings]:
    """{user id: Holdings} for everyone (or the given users): pages owned, tours owned, pages they must verify."""
    out: dict[int, Holdings] = defaultdict(Holdings)
    live = Page.deleted_at.is_(None)
    for uid, n in session.execute(select(Page.owner_id, func.count()).where(live, Page.owner_id.is_not(None))
                                  .group_by(Page.owner_id)):
        out[uid].pages = n
    for uid, n in session.execute(select(Tour.owner_id, func.count()).where(Tour.owner_id.is_not(None))
                                  .group_by(Tour.owner_id)):
        out[uid].tours = n
    for uid, n in session.execute(select(Page.verifier_id, func.count()).where(live, Page.verifier_id.is_not(None))
                                  .group_by(Page.verifier_id)):
        out[uid].verifications = n
    if user_ids is not None:
        return {uid: out[uid] for uid in user_ids}
    return dict(out)


def reassign(session: Session, viewer: Viewer, departing: User, successor: User) -> Holdings:
    """Move every page, tour and verification duty of `departing` to `successor`, as one logged action.

    Deleted pages move too, so that restoring one does not bring back an owner who has left. Who verified a page in
    the past is history and stays as it was.
    """
    if not viewer.may_curate:
        raise NotAllowed("Only curators and administrators can reassign someone's pages.")
    if departing.id == successor.id:
        raise InvalidFields({"successor": "choose someone other than the person who is leaving"})
    if not successor.active:
        raise InvalidFields({"successor": f"{successor.label}'s account is closed; choose an active person"})
    owned = list(session.scalars(select(Page).where(Page.owner_id == departing.id)))
    verifying = list(session.scalars(select(Page).where(Page.verifier_id == departing.id)))
    tours = list(session.scalars(select(Tour).where(Tour.owner_id == departing.id)))
    for p in owned:
        p.owner_id = successor.id
    for p in verifying:
        p.verifier_id = successor.id
    for t in tours:
        t.owner_id = successor.id
    moved = Holdings(len(owned), len(tours), len(verifying))
    audit(session, viewer.user_id, "user.reassign", departing.name, successor=successor.name,
          pages=sorted(p.slug for p in owned), tours=sorted(t.slug for t in tours),
          verifications=sorted(p.slug for p in verifying))
    session.flush()
    return moved


def set_leaving(session: Session, viewer: Viewer, user: User, leaving: bool) -> None:
    """Mark someone as leaving (their pages show up as knowledge at risk), or not."""
    if not viewer.may_curate:
        raise NotAllowed("Only curators and administrators can mark someone as leaving.")
    if user.leaving != leaving:
        user.leaving = leaving
        audit(session, viewer.user_id, "user.leaving" if leaving else "user.staying", user.name)
    session.flush()


# ---------------------------------------------------------------------------------------------------------------
# Watching and "since your last visit"


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


def watch_page(session: Session, viewer: Viewer, page: Page, on: bool = True) -> None:
    if not viewer.signed_in or not access.can_read_page(viewer, page):
        raise NotFound()
    existing = session.scalars(select(Watch).where(Watch.user_id == viewer.user_id, Watch.page_id == page.id)).all()
    if on and not existing:
        session.add(Watch(user_id=viewer.user_id, page_id=page.id))
    elif not on:
        for w in existing:
            session.delete(w)
    session.flush()


def watch_tag(session: Session, viewer: Viewer, tag: str, on: bool = True) -> str:
    """Watch (or stop watching) a tag; returns the tag as stored."""
    _user(session, viewer)
    tag = slugify(tag or "")
    if not tag:
        raise InvalidFields({"tag": "name a tag to watch"})
    existing = session.scalars(select(Watch).where(Watch.user_id == viewer.user_id, Watch.tag == tag)).all()
    if on and not existing:
        session.add(Watch(user_id=viewer.user_id, tag=tag))
    elif not on:
        for w in existing:
            session.delete(w)
    session.flush()
    return tag


def watched_pages(session: Session, viewer: Viewer) -> list[Page]:
    page_ids, _ = watches(session, viewer.user_id) if viewer.signed_in else (set(), set())
    return _readable(session, viewer, Page.id.in_(page_ids or [-1]))


def follow_kinds(session: Session, viewer: Viewer, kind_names: Iterable[str]) -> list[str]:
    user = _user(session, viewer)
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
    user = _user(session, viewer)
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


# ---------------------------------------------------------------------------------------------------------------
# Feed tokens


def create_feed_token(session: Session, viewer: Viewer) -> str:
    """A new secret feed address for the viewer; the token is returned once, only its hash is kept."""
    user = _user(session, viewer)
    token = "kbf_" + secrets.token_urlsafe(32)
    user.feed_token_hash = token_digest(token)
    audit(session, user.id, "feed_token.create", user.name)
    session.flush()
    return token


def revoke_feed_token(session: Session, viewer: Viewer) -> None:
    user = _user(session, viewer)
    if user.feed_token_hash:
        user.feed_token_hash = None
        audit(session, user.id, "feed_token.revoke", user.name)
    session.flush()


def viewer_for_feed_token(session: Session, token: str | None, anonymous_read: bool) -> Viewer:
    """Whom a feed request reads as: the token's (active) owner, or an anonymous visitor."""
    if token:
        user = session.scalar(select(User).where(User.feed_token_hash == token_digest(token)))
        if user is not None and user.active:
            return Viewer(user.id, user.name, user.role, anonymous_read)
    return Viewer(anonymous_read=anonymous_read)


# ---------------------------------------------------------------------------------------------------------------
# Knowledge at risk


@dataclass
class RiskRow:
    """One finding: `rule` names which check found it, `fix` says where it is put right."""

    rule: str
    page: PageSummary
    score: int
    reason: str
    fix: str  # "edit:<field>", "handover", "confirm", "reassign"
    fix_label: str

    def as_item(self) -> QueueItem:
        return QueueItem(self.page.slug, self.page.title, self.reason, self.page)


RISK_RULES = {
    "no-handover": "Sitting leaders with no handover",
    "bus-factor": "Routines only one person can run",
    "unchecked-handover": "High-risk handovers no successor has checked",
    "owner-leaving": "Pages whose only owner is leaving",
    "no-experts": "Initiatives under way with nobody to ask",
    "no-coordinator": "Communities with no coordinator",
}


def _is_current(tenure: dict, today: date) -> bool:
    """A tenure that has started and not ended (or ends in the future). A tenure with no dates at all is history
    we know little about, not a sitting leader."""
    end = tenure.get("to")
    if end:
        return str(end) >= today.isoformat()[:len(str(end))]
    return bool(tenure.get("from"))


def at_risk(session: Session, viewer: Viewer, now: datetime) -> list[RiskRow]:
    """Knowledge at risk, most at risk first (PRODUCT §4.7). A page that is not verified ranks a little higher."""
    today = now.date()
    rows: list[RiskRow] = []
    # Every live handover counts as written, also one this viewer may not read: only slugs and fields are needed.
    live_handovers = session.execute(select(Page.slug, Page.fields)
                                     .where(Page.kind == "handover", Page.deleted_at.is_(None))).all()
    handover_slugs = {slug for slug, _ in live_handovers}
    handed_over = {(fields or {}).get("outgoing") for _, fields in live_handovers}

    for p in _summaries(session, viewer, Page.kind == "routine", extra=["fields"]):
        n = (p.fields or {}).get("people_who_can_run_it")
        if isinstance(n, int) and n <= 1:
            rows.append(RiskRow("bus-factor", p, 58 if n == 0 else 55,
                                "Nobody can run it now" if n == 0 else "Only one person can run it",
                                "edit:people_who_can_run_it", "Record who else can run it"))
    for p in _summaries(session, viewer, Page.kind == "leader", extra=["fields"]):
        fields = p.fields or {}
        current = [t for t in fields.get("tenures") or [] if _is_current(t, today)]
        if current and fields.get("handover") not in handover_slugs and p.slug not in handed_over:
            t = current[0]
            since = f" since {t['from']}" if t.get("from") else ""
            rows.append(RiskRow("no-handover", p, 60, f"{t['role']}{since}, and no handover is written",
                                "handover", "Start a handover"))
    for p in _summaries(session, viewer, Page.kind == "handover", extra=["fields"]):
        fields = p.fields or {}
        risk = fields.get("risk") or {}
        score = int(risk.get("attrition", 0)) * int(risk.get("criticality", 0))
        if score >= HIGH_RISK and not fields.get("successor_checked"):
            rows.append(RiskRow("unchecked-handover", p, 35 + score,
                                f"Risk {risk['attrition']} × {risk['criticality']} = {score} of 25, "
                                "and no successor has confirmed it is usable", "confirm", "Ask the successor to check it"))
    for p in _summaries(session, viewer, Page.kind == "community", extra=["fields"]):
        fields = p.fields or {}
        if not fields.get("coordinator"):
            ended = fields.get("stage") in ("dispersed", "memorable")
            rows.append(RiskRow("no-coordinator", p, 10 if ended else 30,
                                "No coordinator" + (f" (the community is {fields['stage']})" if ended else ""),
                                "edit:coordinator", "Name a coordinator"))
    for p in _summaries(session, viewer, Page.kind == "initiative", Page.status.in_(UNDER_WAY), extra=["fields"]):
        if not (p.fields or {}).get("experts"):
            rows.append(RiskRow("no-experts", p, 35, f"Still {p.status}, and nobody is named to ask about it",
                                "edit:experts", "Name who to ask"))
    leaving = select(User.id).where(User.leaving.is_(True), User.active.is_(True))
    for p in _summaries(session, viewer, Page.owner_id.in_(leaving)):
        rows.append(RiskRow("owner-leaving", p, 45, f"Its owner, {p.owner.label}, is leaving and nobody else owns it",
                            "reassign", "Reassign their pages"))

    states = verifications(session, list({r.page.id: r.page for r in rows}.values()), now)
    for r in rows:
        state = states[r.page.id].state
        if state != "verified":
            r.score += 5
            r.reason += "; not verified" if state == "never-verified" else "; needs review"
    rows.sort(key=lambda r: (-r.score, r.page.title.lower(), r.rule))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The handover wizard


@dataclass(frozen=True)
class Question:
    """One question of the wizard. `key` is a handover field, or title/body/visibility/readers/risk.*."""

    key: str
    prompt: str
    help: str = ""
    control: str = "text"  # line, text, lines, person, pages, scale, visibility
    kind: str | None = None  # for "pages" and "person": which kind of page to offer
    low: str = ""
    high: str = ""


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    intro: str
    questions: tuple[Question, ...] = ()


Q = Question
HANDOVER_STEPS: tuple[Step, ...] = (
    Step("role", "The role", "Start with the job you are handing over and the people involved.", (
        Q("role", "Which role are you handing over?", "For example: Superintendent, or Director of Curriculum.",
          "line"),
        Q("outgoing", "Who is leaving?", "Choose their page, or type their name.", "person", "leader"),
        Q("incoming", "Who is taking over, if you know?", "Leave it empty if nobody has been named yet.", "person",
          "leader"),
        Q("overlap", "Will you work side by side for a while? For how long?",
          "For example: two weeks in June, or no overlap.", "line"),
    )),
    Step("in-flight", "Work in flight", "What your successor inherits on day one.", (
        Q("in_flight", "Which initiatives are under way that your successor will inherit?",
          "Tick the ones that apply; add others one per line.", "pages", "initiative"),
        Q("decisions_pending", "Which decisions are waiting, and by when?",
          "One decision per line, with its deadline if there is one.", "lines"),
    )),
    Step("routines", "Routines and records", "The recurring work you keep running, and where its records are.", (
        Q("routines_owned", "Which routines do you run or keep alive?",
          "Tick the ones that apply; add others one per line.", "pages", "routine"),
        Q("where_things_are", "Where are the files, folders and key documents? Who holds the keys and passwords?",
          "Say where things are and who to ask. Do not write passwords here.", "text"),
    )),
    Step("people", "People", "The relationships that will not transfer by themselves.", (
        Q("relationships", "Whom should your successor call, and when?",
          "Name people and groups, why each matters, and the moment to call them (before the budget, after a "
          "board meeting...).", "text"),
    )),
    Step("break", "What will break", "The knowledge that lives only in your head.", (
        Q("will_break", "What will break first when you leave?",
          "What depends on you personally: a meeting only you call, a partner who only talks to you.", "text"),
        Q("policy_vs_practice", "Where does what is written down differ from what people actually do?", "", "text"),
        Q("taboos", "What should your successor avoid saying or doing, and why?",
          "If this is sensitive, make the handover restricted on the last step.", "text"),
    )),
    Step("risk", "How much is at risk", "Two judgements, so curators can see which handovers matter most.", (
        Q("risk.attrition", "How likely is this role to change hands again soon?",
          "1 = very unlikely, 5 = very likely.", "scale", low="very unlikely", high="very likely"),
        Q("risk.criticality", "How much would the district feel it if this role stood empty?",
          "1 = hardly at all, 5 = a great deal.", "scale", low="hardly", high="a great deal"),
        Q("body", "Anything else your successor should know?", "Write freely. Markdown and [[page links]] work.",
          "text"),
    )),
    Step("review", "Check and save", "Read your answers once more, give the handover a title and choose who may "
                                     "read it.", (
        Q("title", "Title of the handover", "", "line"),
        Q("visibility", "Who may read it?", "", "visibility"),
        Q("readers", "Named readers (for restricted handovers)",
          "User names, separated by commas. Add your successor so they can read and confirm it.", "line"),
    )),
)

SCALE = ("1", "2", "3", "4", "5")


class FormData(Protocol):
    """What the wizard reads a step from (werkzeug's MultiDict has this shape)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def getlist(self, key: str) -> list[Any]: ...


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def read_step(step: Step, form: FormData) -> dict[str, Any]:
    """The answers to one step from a submitted form, as the draft keeps them."""
    out: dict[str, Any] = {}
    for q in step.questions:
        name = f"q.{q.key}"
        if q.control in ("line", "text", "visibility", "scale"):
            out[q.key] = (form.get(name) or "").strip()
        elif q.control == "lines":
            out[q.key] = _lines(form.get(name, ""))
        elif q.control == "person":
            typed = slugify(form.get(name + ".other") or "")
            out[q.key] = typed or (form.get(name) or "").strip()
        elif q.control == "pages":
            picked = [v for v in form.getlist(name) if v]
            typed = [slugify(v) for v in _lines(form.get(name + ".other", ""))]
            out[q.key] = list(dict.fromkeys(v for v in picked + typed if v))
    return out


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    kind = kinds.KINDS["handover"]
    fields = {f.name: data[f.name] for f in kind.editable_fields if data.get(f.name) not in (None, "", [])}
    fields.pop("risk", None)
    a, c = data.get("risk.attrition"), data.get("risk.criticality")
    if a or c:
        fields["risk"] = {"attrition": a, "criticality": c}
    return fields


def step_errors(step: Step, data: dict[str, Any]) -> dict[str, str]:
    """Problems with this step's answers, by question key (empty when the step can be left)."""
    errors: dict[str, str] = {}
    keys = {q.key for q in step.questions}
    if keys & {"risk.attrition", "risk.criticality"}:
        a, c = data.get("risk.attrition"), data.get("risk.criticality")
        for key, v in (("risk.attrition", a), ("risk.criticality", c)):
            if v and v not in SCALE:
                errors[key] = "choose a number from 1 to 5"
        if bool(a) != bool(c) and not errors:
            errors["risk.criticality" if a else "risk.attrition"] = "answer both questions, or neither"
    field_keys = keys - {"title", "body", "visibility", "readers", "risk.attrition", "risk.criticality"}
    fields = {k: v for k, v in _fields(data).items() if k in field_keys}
    try:
        kinds.validate_fields("handover", fields)
    except InvalidFields as e:
        errors.update({k: v for k, v in e.errors.items() if k in keys})
    if "visibility" in keys and data.get("visibility") not in ("public", "staff", "restricted"):
        errors["visibility"] = "choose who may read it"
    if "title" in keys and not (data.get("title") or "").strip():
        errors["title"] = "a handover needs a title"
    return errors


def default_title(data: dict[str, Any], titles: dict[str, str], today: date) -> str:
    """A title from the answers: "Handover: Superintendent (Jane Doe), 2025-06"."""
    role = (data.get("role") or "").strip()
    who = data.get("outgoing")
    name = titles.get(who) or (who.replace("-", " ").title() if who else "")
    bits = "Handover: " + (role or "a role")
    if name:
        bits += f" ({name})"
    return f"{bits}, {today:%Y-%m}"


def handover_state(data: dict[str, Any]) -> pages.PageState:
    return pages.PageState(
        title=(data.get("title") or "").strip(), kind="handover", fields=_fields(data), tags=["handover"],
        visibility=data.get("visibility") or "staff",
        readers=[r.strip() for r in (data.get("readers") or "").split(",") if r.strip()],
        body=data.get("body") or kinds.KINDS["handover"].template)


def get_draft(session: Session, viewer: Viewer) -> Draft | None:
    """The viewer's handover in progress, if any."""
    return session.scalar(select(Draft).where(Draft.user_id == viewer.user_id, Draft.kind == "handover")
                          .order_by(Draft.updated_at.desc()).limit(1))


def start_draft(session: Session, viewer: Viewer, data: dict[str, Any] | None = None) -> Draft:
    if not viewer.may_edit:
        raise NotAllowed("You need a contributor account to write a handover.")
    draft = Draft(user_id=viewer.user_id, kind="handover", data=dict(data or {}), step=0, updated_at=utcnow())
    session.add(draft)
    session.flush()
    return draft


def discard_draft(session: Session, viewer: Viewer) -> None:
    for d in session.scalars(select(Draft).where(Draft.user_id == viewer.user_id, Draft.kind == "handover")):
        session.delete(d)
    session.flush()


def save_step(session: Session, draft: Draft, step_index: int, answers: dict[str, Any], move: int) -> dict[str, str]:
    """Keep a step's answers (always, so nothing typed is lost), then move by `move` steps if they are valid."""
    step = HANDOVER_STEPS[step_index]
    draft.data = {**(draft.data or {}), **answers}
    draft.updated_at = utcnow()
    errors = step_errors(step, draft.data) if move > 0 else {}
    if not errors:
        draft.step = max(0, min(step_index + move, len(HANDOVER_STEPS) - 1))
    else:
        draft.step = step_index
    session.flush()
    return errors


def _free_slug(session: Session, title: str) -> str:
    base = slugify(title) or "handover"
    slug, n = base, 1
    while (session.scalar(select(Page.id).where(Page.slug == slug)) is not None
           or session.get(SlugRedirect, slug) is not None):
        n += 1
        slug = f"{base}-{n}"
    return slug


@dataclass
class Finished:
    page: Page
    linked: list[Page]
    notes: list[str]


def _link_leader(session: Session, viewer: Viewer, slug: str | None, handover: Page, only_if_empty: bool
                 ) -> tuple[Page | None, str | None]:
    if not slug:
        return None, None
    leader = access.get_readable_page(session, viewer, slug)
    if leader is None or leader.kind != "leader":
        return None, (f"There is no leader page “{slug.replace('-', ' ')}” yet, so the handover could not be "
                      "linked from it. Create that page and set its Handover field.")
    current = (leader.fields or {}).get("handover")
    if current == handover.slug or (only_if_empty and current):
        return None, None
    state = pages.PageState.of(leader)
    state.fields = {**(state.fields or {}), "handover": handover.slug}
    try:
        saved, _ = pages.save_page(session, viewer, leader.slug, state, leader.revision,
                                   f"Linked to the handover “{handover.title}”")
    except (NotAllowed, InvalidFields):
        return None, f"You may not edit {leader.title}, so ask a curator to link the handover from it."
    return saved, None


def finish_handover(session: Session, viewer: Viewer, draft: Draft) -> Finished:
    """Save the handover as a page, link it from the outgoing leader's page (and the incoming leader's, if that
    has none), and discard the draft."""
    data = dict(draft.data or {})
    errors: dict[str, str] = {}
    for step in HANDOVER_STEPS:
        errors.update(step_errors(step, data))
    if errors:
        raise InvalidFields(errors)
    state = handover_state(data)
    page, _ = pages.save_page(session, viewer, _free_slug(session, state.title), state, None,
                              "Handover written with the guided form")
    linked, notes = [], []
    for key, only_if_empty in (("outgoing", False), ("incoming", True)):
        saved, note = _link_leader(session, viewer, (page.fields or {}).get(key), page, only_if_empty)
        if saved is not None:
            linked.append(saved)
        if note and key == "outgoing":
            notes.append(note)
    audit(session, viewer.user_id, "handover.create", page.slug, linked=[p.slug for p in linked])
    session.delete(draft)
    session.flush()
    return Finished(page, linked, notes)


def may_confirm(viewer: Viewer, page: Page) -> bool:
    return page.kind == "handover" and access.can_edit_page(viewer, page)


def confirm_handover(session: Session, viewer: Viewer, page: Page, now: datetime) -> Page:
    """The successor confirms the handover is usable: `successor_checked` becomes today, in a new revision."""
    if page.kind != "handover":
        raise NotFound("Only handovers are confirmed by a successor.")
    if not may_confirm(viewer, page):
        raise NotAllowed("You need a contributor account that can read this handover to confirm it.")
    state = pages.PageState.of(page)
    state.fields = {**(state.fields or {}), "successor_checked": now.date().isoformat()}
    saved, _ = pages.save_page(session, viewer, page.slug, state, page.revision,
                               f"Confirmed usable by the successor ({viewer.name})")
    audit(session, viewer.user_id, "handover.confirm", page.slug, on=now.date().isoformat())
    return saved
