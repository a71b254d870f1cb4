"""Onboarding tours: an ordered list of stops (a page, the curator's note, a reflection question) for an audience.

This module holds the tour model's import/export (YAML under `tours/`), saving with revisions, editing a tour's
stops, and each reader's progress ("changed since you read it" included). Like every domain module it takes a
`Session` owned by the caller and never imports Flask.

Visibility: a stop whose page the viewer may not read does not exist for that viewer. It is left out of the stop
list, the numbering, the counts and the progress, so nothing hints that it is there. Stops are numbered from 1 among
the stops the viewer can read; that number is what URLs and the API use.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kb import access
from kb.access import Viewer
from kb.db import add_unless_taken, for_update
from kb.errors import EditConflict, ImportFailed, InvalidFields, NotAllowed, NotFound, NotSignedIn
from kb.models import Page, SlugRedirect, Tour, TourRead, TourRevision, TourStop, User, utcnow
from kb.slugs import slugify
from kb.yamlfile import MAX_YAML_BYTES, Loader, load_yaml, read_text

MAX_MINUTES = 10_000  # a tour's reading time: a week of reading is already more than anyone plans
TOUR_KEYS = ("slug", "title", "description", "audience", "minutes", "stops")
STOP_KEYS = ("page", "note", "question")
MAX_TITLE = 300
MAX_TEXT = 20_000
MAX_STOPS = 200


@dataclass
class StopSpec:
    page: str
    note: str = ""
    question: str = ""
    line: int | None = field(default=None, compare=False)  # where the stop starts in its file, for error messages


@dataclass
class TourSpec:
    where: str
    slug: str
    title: str
    description: str = ""
    audience: list[str] = field(default_factory=list)
    minutes: int | None = None
    stops: list[StopSpec] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "description": self.description,
                "audience": list(self.audience), "minutes": self.minutes,
                "stops": [{"page": s.page, "note": s.note, "question": s.question} for s in self.stops]}


# ---------------------------------------------------------------------------------------------------------------
# Checking a tour (from YAML, the editor or a revision snapshot)

def clean_spec(data: Any, where: str, lines: dict[str, int] | None = None,
               stop_lines: list[int] | None = None) -> TourSpec:
    """Check a tour's data. From a file (`where` set) a problem is ImportFailed naming the file and line;
    otherwise InvalidFields naming the field."""
    lines = lines or {}
    stop_lines = stop_lines or []

    def fail(key: str, problem: str, line: int | None = None):
        line = line or lines.get(key)
        if where:
            raise ImportFailed(f"{where}:{line}" if line else where, problem)
        raise InvalidFields({key: problem})

    if not isinstance(data, dict):
        fail("tour", "a tour must be a mapping with a title and stops")
    for key in data:
        if key not in TOUR_KEYS:
            fail(str(key), f"unknown key {key!r} (known keys: {', '.join(TOUR_KEYS)})")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        fail("title", "every tour needs a title")
    if len(title.strip()) > MAX_TITLE:
        fail("title", f"the title is too long (at most {MAX_TITLE} characters)")
    slug = slugify(str(data.get("slug") or title))
    if not slug:
        fail("slug", "the tour's title has no letters or digits to make an address")
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        fail("description", f"the description must be text of at most {MAX_TEXT} characters")
    audience = data.get("audience") or []
    if isinstance(audience, str):
        audience = audience.split(",")
    if not isinstance(audience, list) or not all(isinstance(a, str) for a in audience):
        fail("audience", "audience must be a list of roles or job titles")
    minutes = data.get("minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)
                                or not 0 <= minutes <= MAX_MINUTES):
        fail("minutes", f"minutes must be a whole number from 0 to {MAX_MINUTES}")
    raw_stops = data.get("stops") or []
    if not isinstance(raw_stops, list):
        fail("stops", "stops must be a list")
    if len(raw_stops) > MAX_STOPS:
        fail("stops", f"a tour has at most {MAX_STOPS} stops")
    stops: list[StopSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_stops, 1):
        line = stop_lines[i - 1] if i <= len(stop_lines) else None
        if isinstance(raw, str):
            raw = {"page": raw}
        if not isinstance(raw, dict) or not raw.get("page"):
            fail("stops", f"stop {i} needs a page", line)
        unknown = set(raw) - set(STOP_KEYS)
        if unknown:
            fail("stops", f"stop {i} has unknown keys: {', '.join(sorted(map(str, unknown)))} "
                          f"(known keys: {', '.join(STOP_KEYS)})", line)
        page = slugify(str(raw["page"]))
        if not page:
            fail("stops", f"stop {i} names no page", line)
        if page in seen:
            fail("stops", f"stop {i} repeats the page {page!r}, which is already stop {seen[page]}", line)
        seen[page] = i
        note, question = raw.get("note") or "", raw.get("question") or ""
        if not isinstance(note, str) or not isinstance(question, str) or len(note) + len(question) > MAX_TEXT:
            fail("stops", f"stop {i}: the note and question must be text of at most {MAX_TEXT} characters", line)
        stops.append(StopSpec(page, note.strip("\n"), question.strip(), line))
    audience = list(dict.fromkeys(a.strip() for a in audience if a.strip()))
    return TourSpec(where, slug, title.strip(), description.strip("\n"), audience, minutes, stops)


def _stop_lines(text: str) -> list[int]:
    """Line numbers (1-based) where each entry of the top-level `stops` list starts."""
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "stops" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def parse_tour_file(path: Path, where: str) -> TourSpec:
    """Read one tour file; ImportFailed names the file and line of the first problem."""
    text = read_text(path, where, limit=MAX_YAML_BYTES)
    data, lines = load_yaml(text, where)
    return clean_spec(data, where, lines, _stop_lines(text))


def spec_from_snapshot(snapshot: dict[str, Any]) -> TourSpec:
    return clean_spec(dict(snapshot), "")


# ---------------------------------------------------------------------------------------------------------------
# Saving, import and export

def _resolve(session: Session, slug: str) -> Page | None:
    page = session.scalar(select(Page).where(Page.slug == slug, Page.deleted_at.is_(None)))
    if page is None:
        redirect = session.get(SlugRedirect, slug)
        if redirect is not None:
            page = session.get(Page, redirect.page_id)
            if page is not None and page.deleted_at is not None:
                page = None
    return page


def readable_page(session: Session, viewer: Viewer, slug: str) -> Page | None:
    """The live page a stop names (by its address or an old one), if the viewer may read it."""
    page = _resolve(session, slug)
    return page if page is not None and access.can_read_page(viewer, page) else None


def save_tour(session: Session, viewer: Viewer, spec: TourSpec, comment: str = "",
              base_revision: int | None = None, slug: str | None = None, creating: bool = False) -> Tour:
    """Create or update a tour from a spec, keeping a revision. Curators only.

    `slug` is the tour being edited (its address stays when the title changes); None creates or imports by the
    spec's slug. `base_revision` is the revision the editor started from; a stale one raises EditConflict.
    `creating` (the "new tour" form) refuses to overwrite a tour that already has the address.
    """
    if not viewer.may_curate:
        raise NotAllowed("Only curators can edit tours.")
    pages_by_stop = []
    for i, stop in enumerate(spec.stops, 1):
        page = _resolve(session, stop.page)
        if page is None:
            problem = f"stop {i} names the page {stop.page!r}, which does not exist"
            if spec.where:
                raise ImportFailed(f"{spec.where}:{stop.line}" if stop.line else spec.where, problem)
            raise InvalidFields({"stops": problem})
        if page in pages_by_stop:
            problem = f"stop {i} repeats the page {page.slug!r}, already stop {pages_by_stop.index(page) + 1}"
            if spec.where:
                raise ImportFailed(f"{spec.where}:{stop.line}" if stop.line else spec.where, problem)
            raise InvalidFields({"stops": problem})
        pages_by_stop.append(page)
    # Locked until commit: a concurrent save of this tour waits, then sees this one's revision.
    tour = session.scalar(for_update(select(Tour).where(Tour.slug == (slug or spec.slug))))
    if tour is None:
        if slug is not None:
            raise NotFound("There is no tour here.")
        tour = Tour(slug=spec.slug, title=spec.title, owner_id=viewer.user_id, revision=0)
        if not add_unless_taken(session, tour):  # created by someone else since we looked
            if creating:
                raise InvalidFields({"title": f"there is already a tour at the address {spec.slug!r}; "
                                              "choose another title"})
            raise EditConflict(0, "", "Someone else created this tour at the same moment. Your changes were not "
                                      "saved; open the tour to see theirs.")
    elif base_revision is not None and base_revision != tour.revision:
        raise EditConflict(tour.revision, "", "Someone else saved this tour after you started editing. "
                                              "Your changes were not saved; open the tour again to see theirs.")
    elif creating:
        raise InvalidFields({"title": f"there is already a tour at the address {spec.slug!r}; choose another title"})
    spec = replace(spec, slug=tour.slug)
    tour.title, tour.description, tour.audience, tour.minutes = spec.title, spec.description, spec.audience, spec.minutes
    tour.stops.clear()
    session.flush()
    for pos, (stop, page) in enumerate(zip(spec.stops, pages_by_stop)):
        tour.stops.append(TourStop(position=pos, page_id=page.id, note=stop.note, question=stop.question))
        stop.page = page.slug  # an old address of a renamed page is stored as the page's address now
    tour.revision += 1
    tour.updated_at = utcnow()
    session.flush()
    session.add(TourRevision(tour_id=tour.id, number=tour.revision, snapshot=spec.snapshot(),
                             author_id=viewer.user_id, comment=(comment or "")[:500]))
    session.flush()
    return tour


def apply_tour_specs(session: Session, viewer: Viewer, specs: list[TourSpec]) -> int:
    """Save imported tours, skipping those that did not change. Returns how many were written."""
    written = 0
    for spec in specs:
        tour = session.scalar(select(Tour).where(Tour.slug == spec.slug))
        if tour is not None and tour_spec(tour).snapshot() == spec.snapshot():
            continue
        save_tour(session, viewer, spec, f"Imported from {spec.where}")
        written += 1
    return written


def tour_spec(tour: Tour) -> TourSpec:
    return TourSpec("", tour.slug, tour.title, tour.description, list(tour.audience or []), tour.minutes,
                    [StopSpec(s.page.slug, s.note, s.question) for s in tour.stops])


def visible_stops(viewer: Viewer, tour: Tour) -> list[TourStop]:
    """The stops whose page the viewer may read; the others are skipped without a trace."""
    return [s for s in tour.stops if access.can_read_page(viewer, s.page)]


def export_tours(session: Session, viewer: Viewer, root: Path) -> int:
    all_tours = list(session.scalars(select(Tour).order_by(Tour.slug)))
    if not all_tours:
        return 0
    root.mkdir(parents=True, exist_ok=True)
    for tour in all_tours:
        spec = tour_spec(tour)
        visible = {s.page.slug for s in visible_stops(viewer, tour)}
        spec.stops = [s for s in spec.stops if s.page in visible]
        data = spec.snapshot()
        if data["minutes"] is None:
            del data["minutes"]
        (root / f"{tour.slug}.yaml").write_text(
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    return len(all_tours)


# ---------------------------------------------------------------------------------------------------------------
# Finding tours, and whom they are for

def all_tours(session: Session) -> list[Tour]:
    return list(session.scalars(select(Tour).order_by(Tour.title)))


def get_tour(session: Session, slug: str) -> Tour:
    tour = session.scalar(select(Tour).where(Tour.slug == slug))
    if tour is None:
        raise NotFound("There is no tour here.")
    return tour


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", (text or "").lower())) + " "


def is_for(tour: Tour, role: str | None, job_title: str | None = None) -> bool:
    """Is the tour meant for someone with this role or job title? ("principal" matches "Principal, Lake High")."""
    words = _words(f"{role or ''} {job_title or ''}")
    return any(_words(a).strip() and _words(a) in words for a in tour.audience or [])


def audiences(tours: Iterable[Tour]) -> list[str]:
    """Every audience named by a tour, for a "show tours for" choice."""
    return sorted({a.strip().lower() for t in tours for a in t.audience or [] if a.strip()})


def tours_for(session: Session, viewer: Viewer, job_title: str | None = None,
              audience: str | None = None) -> tuple[list[Tour], list[Tour]]:
    """(tours for this person, the other tours). `audience` (a chosen role) replaces role and job title."""
    tours = all_tours(session)
    if audience:
        mine = [t for t in tours if is_for(t, audience)]
    else:
        mine = [t for t in tours if is_for(t, viewer.role if viewer.signed_in else None, job_title)]
    return mine, [t for t in tours if t not in mine]


# ---------------------------------------------------------------------------------------------------------------
# Progress

@dataclass
class StopState:
    """One stop as one viewer sees it: its number among the stops they can read, and whether they read it."""

    number: int
    stop: TourStop
    read_at: datetime | None = None
    read_revision: int | None = None

    @property
    def page(self) -> Page:
        return self.stop.page

    @property
    def read(self) -> bool:
        return self.read_at is not None

    @property
    def changed(self) -> bool:
        """Read, but the page has a newer revision than the one read."""
        return self.read_revision is not None and self.page.revision > self.read_revision

    @property
    def done(self) -> bool:
        return self.read and not self.changed


@dataclass
class TourProgress:
    tour: Tour
    stops: list[StopState]

    @property
    def total(self) -> int:
        return len(self.stops)

    @property
    def read(self) -> int:
        return sum(1 for s in self.stops if s.read)

    @property
    def changed(self) -> int:
        return sum(1 for s in self.stops if s.changed)

    @property
    def started(self) -> bool:
        return self.read > 0

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.read == self.total

    @property
    def last_read_at(self) -> datetime | None:
        return max((s.read_at for s in self.stops if s.read_at), default=None)

    @property
    def next_stop(self) -> StopState | None:
        """The first unread stop; when all are read, the first that changed since."""
        return (next((s for s in self.stops if not s.read), None)
                or next((s for s in self.stops if s.changed), None))

    def stop(self, number: int) -> StopState:
        if not 1 <= number <= self.total:
            raise NotFound("This tour has no such stop.")
        return self.stops[number - 1]

    def find(self, ref: Any) -> StopState:
        """A stop by its number (1-based, among the stops the viewer can read) or by its page's slug."""
        if isinstance(ref, bool):
            ref = None
        if isinstance(ref, str) and ref.strip().isdigit():
            ref = int(ref.strip())
        if isinstance(ref, int):
            if 1 <= ref <= self.total:
                return self.stops[ref - 1]
            raise InvalidFields({"stop": f"this tour has stops 1 to {self.total}"})
        if isinstance(ref, str) and ref.strip():
            slug = slugify(ref)
            for s in self.stops:
                if s.page.slug == slug:
                    return s
            raise InvalidFields({"stop": f"no stop of this tour is the page {slug!r}"})
        raise InvalidFields({"stop": "give the stop's number or its page's slug"})


def _reads(session: Session, user_id: int, tour: Tour) -> dict[int, TourRead]:
    return {r.page_id: r for r in session.scalars(
        select(TourRead).where(TourRead.user_id == user_id, TourRead.tour_id == tour.id))}


def progress(session: Session, viewer: Viewer, tour: Tour) -> TourProgress:
    """The viewer's stops of the tour (only those they may read) with what they have read."""
    reads = _reads(session, viewer.user_id, tour) if viewer.signed_in else {}
    states = []
    for stop in visible_stops(viewer, tour):
        r = reads.get(stop.page_id)
        states.append(StopState(len(states) + 1, stop, r.read_at if r else None, r.page_revision if r else None))
    return TourProgress(tour, states)


def mark_read(session: Session, viewer: Viewer, tour: Tour, state: StopState) -> TourRead:
    """Record that the viewer read the stop's page as it is now; reading again clears "changed"."""
    if not viewer.signed_in:
        raise NotSignedIn("Sign in to keep your place in a tour.")
    if not access.can_read_page(viewer, state.page):
        raise NotFound("This tour has no such stop.")
    mine = select(TourRead).where(TourRead.user_id == viewer.user_id, TourRead.tour_id == tour.id,
                                  TourRead.page_id == state.page.id)
    read = session.scalar(mine)
    if read is None:
        read = TourRead(user_id=viewer.user_id, tour_id=tour.id, page_id=state.page.id,
                        page_revision=state.page.revision)
        if not add_unless_taken(session, read):  # the same stop marked from another tab at the same moment
            read = session.scalar(for_update(mine))
    read.page_revision = state.page.revision
    read.read_at = utcnow()
    session.flush()
    state.read_at, state.read_revision = read.read_at, read.page_revision
    return read


def forget_progress(session: Session, viewer: Viewer, tour: Tour) -> None:
    """Start the tour again: the viewer's reads of it are removed."""
    if viewer.signed_in:
        session.execute(delete(TourRead).where(TourRead.user_id == viewer.user_id, TourRead.tour_id == tour.id))
        session.flush()


def continue_tour(session: Session, viewer: Viewer, job_title: str | None = None) -> TourProgress | None:
    """The tour to continue on the home page: the one the viewer read in most recently that has unread or
    changed stops; if they have started none, the first unstarted tour meant for them."""
    if not viewer.signed_in:
        return None
    tour_ids = set(session.scalars(select(TourRead.tour_id).where(TourRead.user_id == viewer.user_id)))
    candidates = []
    for tour in session.scalars(select(Tour).where(Tour.id.in_(tour_ids))) if tour_ids else []:
        p = progress(session, viewer, tour)
        if p.next_stop is not None and p.started:
            candidates.append(p)
    if candidates:
        return max(candidates, key=lambda p: p.last_read_at)
    mine, _ = tours_for(session, viewer, job_title)
    for tour in mine:
        if tour.id not in tour_ids:
            p = progress(session, viewer, tour)
            if p.total:
                return p
    return None


@dataclass
class ReaderProgress:
    """How far one person is through a tour, for the curator view."""

    user: User
    read: int
    total: int
    changed: int
    started_at: datetime
    last_read_at: datetime
    finished_at: datetime | None


def readers(session: Session, viewer: Viewer, tour: Tour) -> list[ReaderProgress]:
    """Who started the tour, how far they are and when they finished. Curators only.

    Each person is measured against the stops they themselves can read."""
    if not viewer.may_curate:
        raise NotAllowed("Only curators can see who is taking a tour.")
    by_user: dict[int, list[TourRead]] = {}
    for r in session.scalars(select(TourRead).where(TourRead.tour_id == tour.id)):
        by_user.setdefault(r.user_id, []).append(r)
    out = []
    for user_id, reads in by_user.items():
        user = session.get(User, user_id)
        if user is None:
            continue
        p = progress(session, Viewer(user.id, user.name, user.role), tour)
        if not p.started:  # they read only stops they may no longer see
            continue
        out.append(ReaderProgress(user, p.read, p.total, p.changed, min(r.read_at for r in reads),
                                  max(r.read_at for r in reads), p.last_read_at if p.finished else None))
    out.sort(key=lambda r: (r.finished_at is None, -(r.read / r.total if r.total else 0), r.user.name))
    return out


def started_count(session: Session, tour: Tour) -> int:
    """How many people have read at least one stop (for curators' overview)."""
    return len(set(session.scalars(select(TourRead.user_id).where(TourRead.tour_id == tour.id))))


# ---------------------------------------------------------------------------------------------------------------
# Revisions

def revisions(session: Session, tour: Tour) -> list[TourRevision]:
    return list(session.scalars(select(TourRevision).where(TourRevision.tour_id == tour.id)
                                .order_by(TourRevision.number.desc())))


def get_revision(session: Session, tour: Tour, number: int) -> TourRevision:
    rev = session.scalar(select(TourRevision).where(TourRevision.tour_id == tour.id, TourRevision.number == number))
    if rev is None:
        raise NotFound(f"Revision {number} of this tour does not exist.")
    return rev


def snapshot_text(snapshot: dict[str, Any]) -> str:
    """A revision as YAML text (the file format), for diffs between revisions."""
    data = dict(snapshot)
    if data.get("minutes") is None:
        data.pop("minutes", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def restore_revision(session: Session, viewer: Viewer, tour: Tour, number: int, base_revision: int) -> Tour:
    """Make an old revision current again, as a new revision."""
    rev = get_revision(session, tour, number)
    spec = spec_from_snapshot(rev.snapshot)
    return save_tour(session, viewer, spec, f"Restored revision {number}", base_revision, slug=tour.slug)


# ---------------------------------------------------------------------------------------------------------------
# Editing a draft of a tour's stops (the editor's buttons)

def find_page(session: Session, viewer: Viewer, text: str) -> Page:
    """The readable page named by an address, a /wiki/ link or an exact title; InvalidFields if none."""
    text = (text or "").strip()
    if not text:
        raise InvalidFields({"add_page": "type a page title or address"})
    candidate = text
    m = re.search(r"/wiki/([^/?#\s]+)", text)
    if m:
        from urllib.parse import unquote

        candidate = unquote(m.group(1))
    page = access.get_readable_page(session, viewer, slugify(candidate))
    if page is None:
        for p in session.scalars(access.readable_pages(viewer).where(Page.title.ilike(text.replace("%", "")))):
            if access.can_read_page(viewer, p) and p.title.strip().lower() == text.lower():
                page = p
                break
    if page is None:
        raise InvalidFields({"add_page": f"there is no page called {text!r}"})
    return page


def move_stop(spec: TourSpec, index: int, delta: int) -> None:
    """Move stop `index` (0-based) up (delta -1) or down (+1); a move past either end does nothing."""
    j = index + delta
    if 0 <= index < len(spec.stops) and 0 <= j < len(spec.stops):
        spec.stops[index], spec.stops[j] = spec.stops[j], spec.stops[index]


def remove_stop(spec: TourSpec, index: int) -> None:
    if 0 <= index < len(spec.stops):
        del spec.stops[index]


def add_stop(session: Session, viewer: Viewer, spec: TourSpec, text: str) -> Page:
    """Append the page named by `text` (see find_page) as a new stop; returns the page."""
    page = find_page(session, viewer, text)
    if any(s.page == page.slug for s in spec.stops):
        raise InvalidFields({"add_page": f"“{page.title}” is already a stop of this tour"})
    spec.stops.append(StopSpec(page.slug))
    return page


# ---------------------------------------------------------------------------------------------------------------
# The transition binder

def binder_sources(stops: Iterable[StopState]) -> list[tuple[str, list[int]]]:
    """Every source cited by the stops' pages, once, with the stop numbers citing it."""
    found: dict[str, list[int]] = {}
    for s in stops:
        for source in s.page.sources or []:
            found.setdefault(source, []).append(s.number)
    return list(found.items())
