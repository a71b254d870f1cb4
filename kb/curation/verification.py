"""Verification: is what a page says still true, and who looks after it.

Each page has a verifier (default: its owner) and an interval (`review_every` days). A page is Verified, Needs review
(the interval passed, it changed materially since it was verified, or someone asked for a review) or Never verified.
Time comes from the caller (`now`), so tests control the clock. `set_care` changes who owns and verifies a page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb import access, kinds
from kb.access import Viewer
from kb.accounts import audit
from kb.curation.summaries import PageSummary, in_chunks
from kb.errors import InvalidFields, NotAllowed
from kb.models import Page, Revision, User

DEFAULT_REVIEW_DAYS = 180
REVIEW_REQUESTED = "page.review_requested"
# Asking for a review sets verified_revision to 0 (real revisions start at 1): the page needs review until someone
# verifies it again, while who verified it last, and when, stay on record. The log says who asked, and when.
REVIEW_REQUESTED_MARK = 0
# Bookkeeping fields (declared in kb.kinds): setting them does not change what a page says, so it does not undo a
# verification.
IMMATERIAL_FIELDS = frozenset(f.name for kind in kinds.KINDS.values() for f in kind.fields if f.bookkeeping)


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
    for chunk in in_chunks(ids):
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
