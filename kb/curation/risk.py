"""Knowledge at risk (PRODUCT §4.7): what the district is about to forget, most at risk first.

Each rule looks at one kind of page (sitting leaders with no handover, routines one person can run, high-risk
handovers nobody checked, initiatives under way with nobody to ask, communities with no coordinator) or at pages
whose owner is leaving. What counts as under way or over comes from the kind declarations (kb.kinds).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb import kinds
from kb.access import Viewer
from kb.curation.summaries import PageSummary, summaries
from kb.curation.verification import verifications
from kb.models import Page, User

HIGH_RISK = 12  # attrition × criticality, out of 25: a handover at or above this needs a successor's check


@dataclass
class RiskRow:
    """One finding: `rule` names which check found it, `fix` says where it is put right."""

    rule: str
    page: PageSummary
    score: int
    reason: str
    fix: str  # "edit:<field>", "handover", "confirm", "reassign"
    fix_label: str


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

    for p in summaries(session, viewer, Page.kind == "routine", extra=["fields"]):
        n = (p.fields or {}).get("people_who_can_run_it")
        if isinstance(n, int) and n <= 1:
            rows.append(RiskRow("bus-factor", p, 58 if n == 0 else 55,
                                "Nobody can run it now" if n == 0 else "Only one person can run it",
                                "edit:people_who_can_run_it", "Record who else can run it"))
    for p in summaries(session, viewer, Page.kind == "leader", extra=["fields"]):
        fields = p.fields or {}
        current = [t for t in fields.get("tenures") or [] if _is_current(t, today)]
        if current and fields.get("handover") not in handover_slugs and p.slug not in handed_over:
            t = current[0]
            since = f" since {t['from']}" if t.get("from") else ""
            rows.append(RiskRow("no-handover", p, 60, f"{t['role']}{since}, and no handover is written",
                                "handover", "Start a handover"))
    for p in summaries(session, viewer, Page.kind == "handover", extra=["fields"]):
        fields = p.fields or {}
        risk = fields.get("risk") or {}
        score = int(risk.get("attrition", 0)) * int(risk.get("criticality", 0))
        if score >= HIGH_RISK and not fields.get("successor_checked"):
            rows.append(RiskRow("unchecked-handover", p, 35 + score,
                                f"Risk {risk['attrition']} × {risk['criticality']} = {score} of 25, "
                                "and no successor has confirmed it is usable", "confirm", "Ask the successor to check it"))
    for p in summaries(session, viewer, Page.kind == "community", extra=["fields"]):
        fields = p.fields or {}
        if not fields.get("coordinator"):
            ended = kinds.is_ended("community", kinds.status_of("community", fields))
            rows.append(RiskRow("no-coordinator", p, 10 if ended else 30,
                                "No coordinator" + (f" (the community is {fields['stage']})" if ended else ""),
                                "edit:coordinator", "Name a coordinator"))
    under_way = kinds.KINDS["initiative"].running_statuses
    for p in summaries(session, viewer, Page.kind == "initiative", Page.status.in_(under_way), extra=["fields"]):
        if not (p.fields or {}).get("experts"):
            rows.append(RiskRow("no-experts", p, 35, f"Still {p.status}, and nobody is named to ask about it",
                                "edit:experts", "Name who to ask"))
    leaving = select(User.id).where(User.leaving.is_(True), User.active.is_(True))
    for p in summaries(session, viewer, Page.owner_id.in_(leaving)):
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
