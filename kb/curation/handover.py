"""The handover wizard: the handover questions (PRODUCT §3) asked in plain words, step by step, kept as a draft so
nothing typed is lost, and saved as a real handover page linked from the leaders' pages; and the successor's
confirmation that a handover is usable.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb import access, kinds, pages
from kb.access import Viewer
from kb.accounts import audit
from kb.errors import EditConflict, InvalidFields, NotAllowed, NotFound
from kb.models import Draft, Page, SlugRedirect, utcnow
from kb.slugs import slugify


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


def read_step(step: Step, form: FormData) -> dict[str, Any]:
    """The answers to one step from a submitted form, as the draft keeps them."""
    out: dict[str, Any] = {}
    for q in step.questions:
        name = f"q.{q.key}"
        if q.control in ("line", "text", "visibility", "scale"):
            out[q.key] = (form.get(name) or "").strip()
        elif q.control == "lines":
            out[q.key] = kinds.lines(form.get(name, ""))
        elif q.control == "person":
            typed = slugify(form.get(name + ".other") or "")
            out[q.key] = typed or (form.get(name) or "").strip()
        elif q.control == "pages":
            picked = [v for v in form.getlist(name) if v]
            typed = [slugify(v) for v in kinds.lines(form.get(name + ".other", ""))]
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
    for attempt in range(5):
        try:
            page, _ = pages.save_page(session, viewer, _free_slug(session, state.title), state, None,
                                      "Handover written with the guided form")
            break
        except EditConflict:  # another handover took that address at the same moment: take the next free one
            if attempt == 4:
                raise
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
