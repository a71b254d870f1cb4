"""The review before ending: when a page is set to an ended status, the editor first shows what the district knows
about the work ("Before you end this initiative"), because new leaders often end work that was quietly working.

Which kinds have the review, and what it shows, is declared in kb.kinds (`Kind.ending_review`). Everything comes
from pages the viewer may read.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from kb import kinds, pages
from kb.access import Viewer
from kb.derived import worked_out
from kb.pages import PageState


def ending_now(page, state: PageState) -> bool:
    """Is this edit of an existing page setting it to an ended status (from one that was not), for a kind that has
    the review?"""
    kind = kinds.KINDS.get(state.kind)
    if page is None or kind is None or kind.ending_review is None:
        return False
    old_status = kinds.status_of(page.kind, page.fields or {}) if page.kind == state.kind else None
    new_status = kinds.status_of(state.kind, state.fields or {})
    return kinds.is_ended(state.kind, new_status) and not kinds.is_ended(state.kind, old_status)


def before_ending(session: Session, viewer: Viewer, page, state: PageState, tried_before=None) -> dict[str, Any]:
    """What to look at before ending the page, as the edit would leave it: its evidence, lessons, the routines and
    communities that carry it, who to ask, and `tried_before` (earlier attempts on the same topic, from search)."""
    review = kinds.KINDS[state.kind].ending_review
    fields = state.fields or {}
    facts = {fact.name: found for fact, found in
             worked_out(state.kind, fields, pages.backlinks_by_field(session, viewer, page))}
    carried_by = list(fields.get(review.carried_by) or [])
    titles = pages.readable_titles(session, viewer, carried_by)
    carrier_rows = [(slug, titles.get(slug)) for slug in carried_by]
    carrier_rows += [(p.slug, p.title) for p in sorted(facts[review.carriers], key=lambda p: p.title.casefold())]
    return {
        "status": kinds.status_of(state.kind, fields),
        "ended_reason": fields.get(review.reason),
        "evidence": fields.get(review.evidence) or "",
        "lessons": sorted(facts[review.lessons], key=lambda p: p.title.casefold()),
        "carriers": carrier_rows,
        "experts": list(fields.get(review.experts) or []),
        "tried_before": tried_before,
    }
