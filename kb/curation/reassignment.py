"""Reassignment: when someone leaves, everything they look after (pages, tours, verification duties) moves to a
successor in one logged action; and marking someone as leaving, so their pages show as knowledge at risk."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb.access import Viewer
from kb.accounts import audit
from kb.errors import InvalidFields, NotAllowed
from kb.models import Page, Tour, User


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
