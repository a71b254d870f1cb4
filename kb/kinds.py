"""The eight knowledge kinds, declared once: their fields, types, allowed values, labels and help text, and what a
kind means: which statuses say its work is running or ended (`Kind.running_statuses`, `Kind.ended_statuses`, asked
through `is_running`, `is_ended` and `is_open`), which fields are links (`Field.is_link`), what is derived from what
(`DERIVED`), and what is asked before a page is ended (`Kind.ending_review`, `Field.needed_when_ended`).

Forms, validation, the API, import/export, search, the timeline, curation and the derived facts (kb.derived,
kb.ending) all read this declaration. Adding a field means adding one `Field(...)` line here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from kb.errors import InvalidFields
from kb.slugs import slugify

DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
MAX_TEXT = 20_000


@dataclass(frozen=True)
class Field:
    """One field of a kind. Types: string, text, choice, date, bool, int, list, months, tenures, risk, and link or
    links, which hold page slugs and count as links for backlinks."""

    name: str
    type: str
    label: str
    help: str = ""
    choices: tuple[str, ...] = ()
    derived: bool = False  # computed from other pages; never typed in
    needed_when_ended: str = ""  # if set, the field must be filled when the status is an ended one; the message
    not_before: str | None = None  # a date field this one may not come before (an end and its start)
    bookkeeping: bool = False  # about the page's upkeep, not its subject: setting it does not undo a verification

    @property
    def is_link(self) -> bool:
        return self.type in ("link", "links")

    @property
    def repeats(self) -> bool:
        """Is it typed as rows, one per value (a linked page, a tenure), with an empty row to fill?"""
        return self.type in ("links", "tenures")


@dataclass(frozen=True)
class EndingReview:
    """What the editor shows before a page is set to an ended status ("Before you end this initiative"), so that
    nobody ends work without seeing what it carries: the fields saying why it ends, what is known of its effect and
    whom to ask, the pages its own field says carry it, and two derived facts (DERIVED): the lessons about it and
    the other pages that may carry it."""

    reason: str
    evidence: str
    experts: str
    carried_by: str
    lessons: str
    carriers: str


@dataclass(frozen=True)
class Kind:
    """A kind of page. `status_field` names the field that says where a page of the kind stands; of its values,
    `running_statuses` say the work is under way and `ended_statuses` that it is over. A status in neither (an
    initiative that is only proposed) has not started yet."""

    name: str
    label: str
    plural: str
    description: str
    fields: tuple[Field, ...] = ()
    status_field: str | None = None
    running_statuses: tuple[str, ...] = ()
    ended_statuses: tuple[str, ...] = ()
    ending_review: EndingReview | None = None
    template: str = ""
    _by_name: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._by_name.update({f.name: f for f in self.fields})

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @property
    def editable_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.derived)


@dataclass(frozen=True)
class Derived:
    """A fact a page of kind `on` shows, worked out from other pages and never typed in: the pages of `from_kinds`
    that link to it through the fields in `via` (none named: through any field or the text). Links the page already
    gives in its own field `unless` are left out, so nothing is listed twice."""

    on: str
    name: str
    label: str
    from_kinds: tuple[str, ...]
    via: tuple[str, ...] = ()
    unless: str | None = None


F = Field
INITIATIVE_STATUS = ("proposed", "piloting", "active", "sustained", "ended", "replaced")
ENDED_REASONS = ("funding", "leader-change", "evaluated-ineffective", "assumed-failed", "mandate", "capacity",
                 "replaced", "other")
PARTNERSHIP_TYPES = ("arms-length", "strategic-alliance", "coalition", "collaborative", "professional-community")

KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("page", "Page", "Pages", "A plain wiki page: a concept, an overview, a guide.",
         template="## Summary\n\n\n## Why it matters\n\n\n## Sources\n"),
    Kind("initiative", "Initiative", "Initiatives",
         "A reform effort in the district's history: why it started, what it did, how it ended.",
         status_field="status", running_statuses=("piloting", "active", "sustained"),
         ended_statuses=("ended", "replaced"),
         ending_review=EndingReview(reason="ended_reason", evidence="evidence", experts="experts",
                                    carried_by="carried_by", lessons="lessons", carriers="carried_on_by"),
         template="## What it was\n\n\n## What happened\n\n\n## What we learned\n",
         fields=(
             F("status", "choice", "Status", "Where the initiative stands now.", INITIATIVE_STATUS),
             F("started", "date", "Started", "Year, year-month or full date (YYYY, YYYY-MM, YYYY-MM-DD)."),
             F("ended", "date", "Ended", "When it ended, if it has.", not_before="started"),
             F("sponsors", "links", "Sponsors", "The leaders who championed it (their pages)."),
             F("problem", "text", "Problem", "What it was meant to fix."),
             F("theory_of_action", "text", "Theory of action", "Why people believed it would work."),
             F("scope", "text", "Scope", "Schools, grades and offices it covered."),
             F("funding", "text", "Funding", "Who paid for it, and for how long."),
             F("evidence", "text", "Evidence", "What is known about its effect, and how strong that evidence is."),
             F("ended_reason", "choice", "Why it ended", "Required when the status is ended or replaced.",
               ENDED_REASONS,
               needed_when_ended="say why it ended: an initiative that is ended or replaced needs a reason"),
             F("ended_story", "text", "How it ended", "The story of the ending, in a few sentences."),
             F("carried_by", "links", "Carried by", "Routines and communities the work lives on in."),
             F("predecessor", "link", "Predecessor", "The initiative this one followed."),
             F("successor", "link", "Successor", "The initiative that replaced this one."),
             F("experts", "list", "Who to ask", "People who know this initiative best."),
         )),
    Kind("routine", "Routine", "Routines",
         "A recurring practice that keeps the district running, with what the written procedure leaves out.",
         template="## How it runs\n\n\n## What people who run it know\n",
         fields=(
             F("purpose", "text", "Purpose", "Why the routine exists."),
             F("formal", "bool", "Formal", "Is it written down and required?"),
             F("mandate", "text", "Mandate", "The policy or rule that requires it, if any."),
             F("cadence", "string", "Cadence", "How often: weekly, monthly, each October..."),
             F("months", "months", "Months", "The months of the year it happens (1-12)."),
             F("owner", "link", "Owner", "The community or role that owns it."),
             F("participants", "list", "Participants", "Who takes part."),
             F("inputs", "list", "Inputs", "What it needs before it starts."),
             F("steps", "list", "Steps", "The steps, in order."),
             F("outputs", "list", "Outputs", "What it produces."),
             F("artifacts", "list", "Artifacts", "Templates, protocols, rubrics and tools it uses."),
             F("tacit", "text", "What the procedure leaves out", "The know-how that is not written down."),
             F("last_performed", "date", "Last performed", "When it last ran."),
             F("people_who_can_run_it", "int", "People who can run it",
               "How many people could run it tomorrow (1 means it is at risk)."),
         )),
    Kind("community", "Community of practice", "Communities of practice",
         "A group that shares a domain of practice and learns together.",
         status_field="stage", running_statuses=("coalescing", "active"), ended_statuses=("dispersed", "memorable"),
         template="## What they do together\n\n\n## How to join\n",
         fields=(
             F("domain", "text", "Domain", "The area of practice they share."),
             F("formality", "choice", "Formality", "", ("formal", "informal")),
             F("stage", "choice", "Stage", "Where the community is in its life.",
               ("potential", "coalescing", "active", "dispersed", "memorable")),
             F("recognition", "choice", "Recognition", "How the district recognises it.",
               ("unrecognized", "legitimized", "supported", "institutionalized")),
             F("coordinator", "string", "Coordinator", "Who keeps it going."),
             F("core_members", "list", "Core members", ""),
             F("boundary_spanners", "list", "Boundary spanners", "Members who connect it to other groups."),
             F("meets", "string", "Meets", "Its rhythm: when and how often it meets."),
             F("repertoire", "list", "Repertoire", "Its routines, tools and stories."),
             F("current_work", "text", "Current work", "What it is working on now."),
             F("sponsor", "string", "Sponsor", "The leader who backs it."),
         )),
    Kind("lesson", "Lesson learned", "Lessons learned",
         "What was supposed to happen, what happened, why, and what to do next time.",
         status_field="maturity",
         template="## The story\n\n\n## What to do next time\n",
         fields=(
             F("occurred", "date", "Occurred", "When it happened."),
             F("context", "text", "Context", "The driving event."),
             F("intended", "text", "What was supposed to happen", ""),
             F("actual", "text", "What actually happened", ""),
             F("why", "text", "Why the difference", ""),
             F("lesson", "text", "Lesson", "The lesson in one or two sentences."),
             F("recommendation", "text", "Recommendation", "What to do next time."),
             F("maturity", "choice", "Maturity", "How well established the lesson is.",
               ("observation", "insight", "lesson", "learned")),
             F("evidence", "text", "Evidence", "What supports it."),
             F("source_type", "choice", "Source type", "Where the lesson comes from.",
               ("documentation", "interview", "after-action-review", "exit-interview", "research")),
             F("applies_to", "list", "Applies to", "Situations, roles or initiatives it applies to."),
         )),
    Kind("leader", "Leader", "Leaders",
         "A person and the roles they held in the district.",
         template="## In the role\n\n\n## What they left behind\n",
         fields=(
             F("tenures", "tenures", "Tenures",
               "Each role held: role, from, to, hired (internal or external), why they left."),
             F("priorities", "list", "Priorities", "What they set out to do."),
             F("initiatives_started", "links", "Initiatives started",
               "Taken automatically from the initiatives that name this leader as a sponsor.", derived=True),
             F("handover", "link", "Handover", "The handover they wrote or received.", bookkeeping=True),
         )),
    Kind("partnership", "Partnership", "Partnerships",
         "A relationship with an outside organisation: what it was for and how it worked.",
         status_field="status", running_statuses=("active",), ended_statuses=("ended",),
         template="## What the partnership did\n\n\n## What we learned about partnering\n",
         fields=(
             F("partner", "string", "Partner", "The outside organisation."),
             F("type", "choice", "Type", "The kind of partnership (see the partnership typology).",
               PARTNERSHIP_TYPES),
             F("started", "date", "Started", ""),
             F("ended", "date", "Ended", ""),
             F("agreement", "text", "Agreement", "The written agreement, such as an MOU."),
             F("goals", "list", "Goals", ""),
             F("indicators", "list", "Indicators", "How progress is measured."),
             F("roles", "text", "Roles", "Who does what."),
             F("district_owner", "string", "District owner", "Who in the district owns the relationship."),
             F("partner_contact", "string", "Partner contact", ""),
             F("outcomes", "text", "Outcomes", ""),
             F("status", "choice", "Status", "", ("proposed", "active", "ended")),
         )),
    Kind("handover", "Handover", "Handovers",
         "Written by or with a departing leader: what is in flight, who to call, what will break.",
         template="## Notes for my successor\n",
         fields=(
             F("role", "string", "Role", "The role being handed over."),
             F("outgoing", "link", "Outgoing leader", ""),
             F("incoming", "link", "Incoming leader", ""),
             F("overlap", "text", "Overlap", "How long the two will work side by side."),
             F("in_flight", "links", "In flight", "Initiatives under way."),
             F("decisions_pending", "list", "Decisions pending", ""),
             F("routines_owned", "links", "Routines owned", ""),
             F("relationships", "text", "Relationships", "Whom to call, and when."),
             F("will_break", "text", "What will break", "What will break first when I leave."),
             F("policy_vs_practice", "text", "Policy versus practice", "Where what is written differs from what is done."),
             F("taboos", "text", "Taboos", "What not to say or do, and why."),
             F("where_things_are", "text", "Where things are", "Files, folders, passwords' keepers, key documents."),
             F("risk", "risk", "Risk", "Attrition risk (1-5) times position criticality (1-5)."),
             F("successor_checked", "date", "Successor checked",
               "The date the successor confirmed this handover is usable.", bookkeeping=True),
         )),
]}

# What each kind shows about the pages that link to it (kb.derived works them out), in the order pages show them.
DERIVED: tuple[Derived, ...] = (
    Derived("leader", "initiatives_started", "Initiatives started", ("initiative",), ("sponsors",)),
    Derived("leader", "handovers", "Handovers", ("handover",), ("outgoing", "incoming")),
    Derived("community", "routines_owned", "Routines it owns", ("routine",), ("owner",)),
    Derived("community", "initiatives_carried", "Initiatives it carries", ("initiative",), ("carried_by",)),
    Derived("routine", "initiatives_carried", "Initiatives it carries", ("initiative",), ("carried_by",)),
    Derived("routine", "named_in_handovers", "Named in handovers", ("handover",), ("routines_owned",)),
    Derived("initiative", "lessons", "Lessons", ("lesson",)),
    Derived("initiative", "carried_on_by", "Carried on by", ("routine", "community"), unless="carried_by"),
    Derived("initiative", "followed_by", "Followed by", ("initiative",), ("predecessor",), unless="successor"),
    Derived("initiative", "came_after", "Came after", ("initiative",), ("successor",), unless="predecessor"),
    Derived("initiative", "in_flight_in", "In flight in handovers", ("handover",), ("in_flight",)),
)

# The statuses that end an initiative (search ranks ended initiatives after the others).
ENDING_STATUSES = KINDS["initiative"].ended_statuses


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidFields({"kind": f"unknown kind {name!r}; choose one of {', '.join(KINDS)}"}) from None


def is_running(kind_name: str, status: str | None) -> bool:
    """Is a page of this kind with this status under way (an initiative piloting, active or sustained)?"""
    kind = KINDS.get(kind_name)
    return kind is not None and status in kind.running_statuses


def is_ended(kind_name: str, status: str | None) -> bool:
    """Does this status say the page's work is over (an initiative ended or replaced)?"""
    kind = KINDS.get(kind_name)
    return kind is not None and status in kind.ended_statuses


def is_open(kind_name: str, status: str | None) -> bool:
    """Is this a recorded status of the kind that is not an ended one: under way, or not started yet?"""
    kind = KINDS.get(kind_name)
    if kind is None or kind.status_field is None:
        return False
    return status in kind.field(kind.status_field).choices and status not in kind.ended_statuses


def lines(text: str | None) -> list[str]:
    """The non-empty lines of a typed text, trimmed: how a list is typed, one entry per line."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def normalize_date(value: Any) -> str:
    """A date field's value as 'YYYY', 'YYYY-MM' or 'YYYY-MM-DD', or ValueError with a reason."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a date written YYYY, YYYY-MM or YYYY-MM-DD")
    text = value.strip()
    m = DATE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a date; write YYYY, YYYY-MM or YYYY-MM-DD")
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    try:
        date(year, int(month or 1), int(day or 1))
    except ValueError:
        raise ValueError(f"{text!r} is not a real date") from None
    return text


def date_year(value: str | None) -> int | None:
    if not value:
        return None
    m = DATE_RE.match(str(value))
    return int(m.group(1)) if m else None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _as_text(value: Any, limit: int = MAX_TEXT) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be text")
    text = str(value).strip()
    if len(text) > limit:
        raise ValueError(f"is too long ({len(text)} characters; at most {limit})")
    return text


def _as_list(value: Any) -> list:
    if isinstance(value, list):
        return value
    raise ValueError("must be a list")


def _as_slug(value: Any) -> str:
    slug = slugify(_as_text(value, 300))
    if not slug:
        raise ValueError(f"{value!r} is not a page name")
    return slug


def _as_int(value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValueError("must be a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"must be between {low} and {high}" if high is not None else f"must be at least {low}")
    return value


def _clean_value(f: Field, value: Any) -> Any:
    t = f.type
    if t == "string":
        return _as_text(value, 300)
    if t == "text":
        return _as_text(value)
    if t == "choice":
        text = _as_text(value, 100)
        if text not in f.choices:
            raise ValueError(f"{text!r} is not allowed; choose one of {', '.join(f.choices)}")
        return text
    if t == "date":
        return normalize_date(value)
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError("must be true or false")
    if t == "int":
        return _as_int(value, 0)
    if t == "link":
        return _as_slug(value)
    if t == "links":
        return list(dict.fromkeys(_as_slug(v) for v in _as_list(value) if not _empty(v)))
    if t == "list":
        return [_as_text(v, 2000) for v in _as_list(value) if not _empty(v)]
    if t == "months":
        return sorted({_as_int(v, 1, 12) for v in _as_list(value)})
    if t == "tenures":
        return [_clean_tenure(i, v) for i, v in enumerate(_as_list(value), 1)]
    if t == "risk":
        if not isinstance(value, dict) or set(value) - {"attrition", "criticality"}:
            raise ValueError("must have attrition (1-5) and criticality (1-5)")
        return {k: _as_int(value.get(k), 1, 5) for k in ("attrition", "criticality")}
    raise ValueError(f"has an unknown type {t}")  # a declaration mistake, caught by tests


TENURE_KEYS = ("role", "from", "to", "hired", "left_because")


def _clean_tenure(i: int, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"tenure {i} must have role, from, to, hired, left_because")
    unknown = set(value) - set(TENURE_KEYS)
    if unknown:
        raise ValueError(f"tenure {i} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    out: dict[str, Any] = {}
    try:
        if _empty(value.get("role")):
            raise ValueError("needs a role")
        out["role"] = _as_text(value["role"], 100)
        for key in ("from", "to"):
            if not _empty(value.get(key)):
                out[key] = normalize_date(value[key])
        if not _empty(value.get("hired")):
            if value["hired"] not in ("internal", "external"):
                raise ValueError("hired must be internal or external")
            out["hired"] = value["hired"]
        if not _empty(value.get("left_because")):
            out["left_because"] = _as_text(value["left_because"], 2000)
    except ValueError as e:
        raise ValueError(f"tenure {i}: {e}") from None
    return out


def validate_fields(kind_name: str, fields: Any) -> dict[str, Any]:
    """The fields cleaned and normalised for this kind, or InvalidFields with a message per field."""
    kind = get_kind(kind_name)
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise InvalidFields({"fields": "must be an object of field names and values"})
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        f = kind.field(name)
        if f is None:
            known = ", ".join(x.name for x in kind.editable_fields) or "none"
            errors[name] = f"is not a field of a {kind.name} (fields: {known})"
            continue
        if f.derived:
            if not _empty(value):
                errors[name] = "is worked out automatically and cannot be set"
            continue
        if _empty(value):
            continue
        try:
            cleaned = _clean_value(f, value)
        except ValueError as e:
            errors[name] = str(e)
            continue
        if not _empty(cleaned):
            clean[name] = cleaned
    ended = is_ended(kind.name, status_of(kind.name, clean)) and kind.status_field not in errors
    for f in kind.fields:
        if f.needed_when_ended and ended and f.name not in clean:
            errors[f.name] = f.needed_when_ended
    for f in kind.fields:
        if f.not_before and clean.get(f.name) and clean.get(f.not_before) and clean[f.name] < clean[f.not_before]:
            errors[f.name] = "is before the start date"
    if errors:
        raise InvalidFields(errors)
    return {f.name: clean[f.name] for f in kind.fields if f.name in clean}


def status_of(kind_name: str, fields: dict[str, Any]) -> str | None:
    kind = KINDS.get(kind_name)
    if kind is None or kind.status_field is None:
        return None
    return fields.get(kind.status_field)


def field_links(kind_name: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(field name, target slug) for every link-typed field value."""
    kind = KINDS.get(kind_name)
    out: list[tuple[str, str]] = []
    if kind is None:
        return out
    for f in kind.fields:
        value = fields.get(f.name)
        if f.type == "link" and value:
            out.append((f.name, value))
        elif f.type == "links" and value:
            out.extend((f.name, v) for v in value)
    return out


def field_text(kind_name: str, fields: dict[str, Any]) -> str:
    """All field values as plain text, for the search index."""
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None and not isinstance(v, bool):
            parts.append(str(v).replace("-", " ") if isinstance(v, str) and slugify(v) == v else str(v))

    walk(fields)
    return "\n".join(parts)


def years_covered(kind_name: str, fields: dict[str, Any], today: date | None = None) -> list[int]:
    """The years a page is about: from its start to end dates (open-ended runs to today), plus single dates."""
    today = today or date.today()
    kind = KINDS.get(kind_name)
    if kind is None:
        return []
    years: set[int] = set()

    def span(start: Any, end: Any, open_ended: bool) -> None:
        a = date_year(start)
        b = date_year(end) or (today.year if open_ended and a else None)
        if a and b and b >= a and b - a <= 100:
            years.update(range(a, b + 1))
        elif a:
            years.add(a)

    if "started" in fields or "ended" in fields:
        span(fields.get("started"), fields.get("ended"), not is_ended(kind_name, status_of(kind_name, fields)))
    for tenure in fields.get("tenures") or []:
        span(tenure.get("from"), tenure.get("to"), True)
    for f in kind.fields:
        if f.type == "date" and f.name not in ("started", "ended"):
            y = date_year(fields.get(f.name))
            if y:
                years.add(y)
    return sorted(years)
