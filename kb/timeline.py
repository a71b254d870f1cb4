"""The reform timeline and the routine calendar: what turnover did to reform, in one picture.

`build_timeline` gathers the data: leaders' tenures in one lane per role, initiatives as bars coloured by status
(with an end marker saying why they ended), partnerships in their own lane. Items still running are drawn to today.
Only pages the viewer may read are used (through kb.access). `picture` lays it out for drawing on the server as SVG;
templates/timeline/_picture.svg draws it, escaping every text in it (they come from users). `routine_calendar` lays
routines out by month, flagging those only one person can run. No Flask here: views pass in how to link to a page.
"""
from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb import access, kinds, pages
from kb.access import Viewer
from kb.errors import InvalidFields
from kb.models import Page, PageTag
from kb.slugs import slugify

TIMELINE_KINDS = ("leader", "initiative", "partnership")
MAX_PAGES = 5000  # a district has hundreds of these; this only guards the drawing against absurd input

# Fill colours: initiatives by status, tenures by how the leader was hired, partnerships by whether they ended.
STATUS_COLOURS = {
    "proposed": "#a9bfd3",
    "piloting": "#4f8fc7",
    "active": "#2e7d4f",
    "sustained": "#17522f",
    "ended": "#b3261e",
    "replaced": "#6a3d9a",
    None: "#6b7785",
}
TENURE_COLOURS = {"internal": "#1f5f8b", "external": "#c25e00", None: "#51657a"}
PARTNERSHIP_COLOURS = {"ended": "#6f9f98", None: "#00796b"}
LIGHT_FILLS = {"#a9bfd3", "#6f9f98"}


# ---------------------------------------------------------------------------------------------------------------
# Dates as positions on the year axis

def year_position(value: str | None, end: bool = False) -> float | None:
    """A date as a fractional year. A start counts from the beginning of its period, an end to its close:
    "2002" starts at 2002.0 and, as an end, closes at 2003.0."""
    if not value:
        return None
    m = kinds.DATE_RE.match(str(value))
    if not m:
        return None
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    if month is None:
        return year + (1.0 if end else 0.0)
    month_i = int(month)
    if day is None:
        return year + (month_i - (0 if end else 1)) / 12
    return _day_position(date(year, month_i, int(day)), end)


def _day_position(d: date, end: bool = False) -> float:
    days = 366 if calendar.isleap(d.year) else 365
    return d.year + (d.timetuple().tm_yday - (0 if end else 1)) / days


# ---------------------------------------------------------------------------------------------------------------
# The data

@dataclass
class Bar:
    """One bar on the timeline: a tenure, an initiative or a partnership."""

    slug: str
    title: str
    kind: str
    start: str
    end: str | None
    x0: float
    x1: float
    open_ended: bool = False  # still running: drawn to today
    end_unknown: bool = False  # it ended, but nobody recorded when
    status: str | None = None
    ended_reason: str | None = None
    role: str | None = None
    hired: str | None = None
    left_because: str | None = None

    @property
    def ended(self) -> bool:
        return self.kind == "initiative" and kinds.is_ended(self.kind, self.status)

    @property
    def period(self) -> str:
        if self.open_ended:
            to = "today"
        elif self.end_unknown:
            to = "end not recorded"
        else:
            to = self.end or ""
        return f"{self.start}–{to}"

    @property
    def detail(self) -> str:
        """One line saying everything the bar shows, for hover, keyboard focus and screen readers."""
        parts = [self.title]
        if self.kind == "leader":
            parts.append(f"{self.role}, {self.period}")
            if self.hired:
                parts.append("Hired from inside the district" if self.hired == "internal" else "Hired from outside")
            if self.left_because:
                parts.append(f"Left because: {self.left_because}")
        else:
            label = "Initiative" if self.kind == "initiative" else "Partnership"
            parts.append(f"{label}, {self.period}")
            if self.status:
                parts.append(f"Status: {self.status}")
            if self.ended:
                parts.append(f"Ended because: {_words(self.ended_reason) or 'reason not recorded'}")
        if self.open_ended:
            parts.append("Still in the role" if self.kind == "leader" else "Still running")
        return ". ".join(parts)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"slug": self.slug, "title": self.title, "kind": self.kind, "from": self.start,
                                "to": self.end, "open_ended": self.open_ended, "end_unknown": self.end_unknown,
                                "x0": round(self.x0, 4), "x1": round(self.x1, 4)}
        if self.kind == "leader":
            data.update({"role": self.role, "hired": self.hired, "left_because": self.left_because})
        else:
            data["status"] = self.status
        if self.kind == "initiative":
            data["ended_reason"] = self.ended_reason
        return data


@dataclass
class Lane:
    """A horizontal band: one role's tenures, the initiatives, or the partnerships."""

    key: str
    label: str
    kind: str  # "role", "initiative" or "partnership"
    bars: list[Bar] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "kind": self.kind, "bars": [b.as_json() for b in self.bars]}


@dataclass
class Undated:
    """A page that belongs on the timeline but has no start date yet."""

    slug: str
    title: str
    kind: str
    missing: str

    def as_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "kind": self.kind, "missing": self.missing}


@dataclass
class Timeline:
    today: date
    lanes: list[Lane] = field(default_factory=list)
    undated: list[Undated] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # every role on record, for the filter
    role: str | None = None
    kind: str | None = None
    tag: str | None = None

    @property
    def bars(self) -> list[Bar]:
        return [b for lane in self.lanes for b in lane.bars]

    @property
    def first_year(self) -> int:
        bars = self.bars
        return math.floor(min(b.x0 for b in bars)) if bars else self.today.year

    @property
    def last_year(self) -> int:
        """The year the picture ends (exclusive): the end of the last bar, rounded up."""
        bars = self.bars
        return max(math.ceil(max(b.x1 for b in bars)), self.first_year + 1) if bars else self.today.year + 1

    def counts(self) -> dict[str, int]:
        out = {"leader": 0, "initiative": 0, "partnership": 0}
        for b in self.bars:
            out[b.kind] += 1
        return out

    def as_json(self, url_for_page: Callable[[str], str] | None = None) -> dict[str, Any]:
        lanes = [lane.as_json() for lane in self.lanes]
        undated = [u.as_json() for u in self.undated]
        if url_for_page is not None:
            for item in [b for lane in lanes for b in lane["bars"]] + undated:
                item["url"] = url_for_page(item["slug"])
        return {"today": self.today.isoformat(), "from": self.first_year, "to": self.last_year,
                "filters": {"role": self.role, "kind": self.kind, "tag": self.tag},
                "roles": self.roles, "lanes": lanes, "undated": undated}


def _words(choice: str | None) -> str:
    """A choice value as words: "assumed-failed" reads "assumed failed"."""
    return (choice or "").replace("-", " ")


def _text(value: Any) -> str | None:
    return str(value).strip() if value not in (None, "") else None


def _role_key(role: str) -> str:
    return " ".join(role.split()).casefold()


def build_timeline(session: Session, viewer: Viewer, role: str | None = None, kind: str | None = None,
                   tag: str | None = None, today: date | None = None) -> Timeline:
    """The timeline of the pages this viewer may read, filtered by role (tenures), kind and tag."""
    today = today or date.today()
    role = _text(role)
    kind = _text(kind)
    tag = slugify(tag) if _text(tag) else None
    if kind and kind not in TIMELINE_KINDS:
        raise InvalidFields({"kind": f"the timeline shows {', '.join(TIMELINE_KINDS)}; {kind!r} is not one of them"})
    q = access.readable_pages(viewer).where(Page.kind.in_([kind] if kind else TIMELINE_KINDS))
    if tag:
        q = q.where(Page.id.in_(select(PageTag.page_id).where(PageTag.tag == tag)))
    found = access.filter_readable(viewer, session.scalars(q.order_by(Page.id).limit(MAX_PAGES)))
    tl = Timeline(today=today, role=role, kind=kind, tag=tag)
    now = _day_position(today, end=True)
    role_lanes: dict[str, Lane] = {}
    all_roles: dict[str, str] = {}
    initiatives = Lane("initiatives", "Initiatives", "initiative")
    partnerships = Lane("partnerships", "Partnerships", "partnership")

    for page in found:
        fields = page.fields or {}
        if page.kind == "leader":
            dated = False
            for tenure in fields.get("tenures") or []:
                name = _text(tenure.get("role"))
                if not name:
                    continue
                key = _role_key(name)
                all_roles.setdefault(key, name)
                if role and key != _role_key(role):
                    continue
                bar = _span(page, tenure.get("from"), tenure.get("to"), not tenure.get("to"), now)
                if bar is None:
                    continue
                dated = True
                bar.role, bar.hired, bar.left_because = name, tenure.get("hired"), _text(tenure.get("left_because"))
                lane = role_lanes.setdefault(key, Lane(f"role:{slugify(name) or key}", name, "role"))
                lane.bars.append(bar)
            if not dated and not role:
                tl.undated.append(Undated(page.slug, page.title, page.kind, "no dates on its tenures"))
        else:
            status = fields.get("status")
            # A status that has not ended (kb.kinds.is_open) says the item is still going: with no end date it runs
            # to today. An item whose status is not recorded is not assumed to be running; its bar covers its start
            # date only, marked "end not recorded".
            running = kinds.is_open(page.kind, status) and not fields.get("ended")
            bar = _span(page, fields.get("started"), fields.get("ended"), running, now)
            if bar is None:
                tl.undated.append(Undated(page.slug, page.title, page.kind, "no start date"))
                continue
            bar.status = status
            if page.kind == "initiative":
                bar.ended_reason = fields.get("ended_reason")
                initiatives.bars.append(bar)
            else:
                partnerships.bars.append(bar)

    lanes = sorted(role_lanes.values(), key=lambda lane: (min(b.x0 for b in lane.bars), lane.label.casefold()))
    lanes += [lane for lane in (initiatives, partnerships) if lane.bars]
    for lane in lanes:
        lane.bars.sort(key=lambda b: (b.x0, b.x1, b.title.casefold()))
    tl.lanes = lanes
    tl.roles = sorted(all_roles.values(), key=str.casefold)
    tl.undated.sort(key=lambda u: (u.kind, u.title.casefold()))
    return tl


def _span(page: Page, start: Any, end: Any, open_ended: bool, now: float) -> Bar | None:
    """A bar from start to end; an open-ended one runs to today, an ended one without an end date is one period."""
    x0 = year_position(_text(start))
    if x0 is None:
        return None
    x1 = year_position(_text(end), end=True)
    end_unknown = False
    if x1 is None:
        if open_ended:
            x1 = max(now, x0)
        else:
            end_unknown = True
            x1 = year_position(_text(start), end=True) or x0 + 1
    if x1 <= x0:
        x1 = x0 + 1 / 12
    return Bar(page.slug, page.title, page.kind, str(start), _text(end), x0, x1,
               open_ended=open_ended and not _text(end), end_unknown=end_unknown)


# ---------------------------------------------------------------------------------------------------------------
# The picture

WIDTH = 1000
PAD_X = 14
AXIS_H = 42
LANE_HEAD_H = 24
ROW_H = 26
BAR_H = 17
CHAR_W = 6.6  # average width of a 12px sans-serif character, to keep labels from running into each other
LABEL_MAX = 60
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', Arial, sans-serif"
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: Any) -> str:
    """Text safe to put in XML: the template escapes markup, but characters XML forbids must go."""
    return _XML_BAD.sub("", str(text))


def _short(text: str, limit: int = LABEL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _tick_step(span: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100):
        if span / step <= 16:
            return step
    return 100


def _fill(bar: Bar) -> str:
    if bar.kind == "leader":
        return TENURE_COLOURS.get(bar.hired, TENURE_COLOURS[None])
    if bar.kind == "partnership":
        return PARTNERSHIP_COLOURS.get(bar.status, PARTNERSHIP_COLOURS[None])
    return STATUS_COLOURS.get(bar.status, STATUS_COLOURS[None])


def _end_note(bar: Bar) -> str:
    if bar.ended:
        return f"{bar.status}: {_words(bar.ended_reason) or 'reason not recorded'}"
    if bar.end_unknown:
        return "end not recorded"
    return ""


def _pack(bars: list[Bar], scale: Callable[[float], float]) -> list[list[tuple[Bar, bool]]]:
    """Bars placed on rows so that no bar or label overlaps another; (bar, label inside the bar) per row.

    Each bar goes on the first row (lowest index) with room for it, found through _FirstFree in log time: a linear
    scan over thousands of rows took half a second at 10,000 pages.
    """
    rows: list[list[tuple[Bar, bool]]] = []
    free = _FirstFree()
    for bar in bars:
        x0, x1 = scale(bar.x0), scale(bar.x1)
        label_w = len(_short(bar.title)) * CHAR_W + 10
        note = _end_note(bar)
        note_w = (len(note) * CHAR_W * 0.92 + 16) if note else 0
        inside = label_w <= (x1 - x0)
        right = x1 + note_w + (0 if inside else label_w + 4)
        i = free.first_at_most(x0 - 6)
        if i is None:
            rows.append([])
            i = free.append()
        rows[i].append((bar, inside))
        free.set(i, right)
    return rows


class _FirstFree:
    """Row ends in a segment tree of minimums: the first row whose end is at most x, in log time."""

    def __init__(self):
        self.size = 1
        self.count = 0
        self.tree = [float("inf")] * 2

    def append(self) -> int:
        if self.count == self.size:
            leaves = self.tree[self.size:]
            self.size *= 2
            self.tree = [float("inf")] * (2 * self.size)
            self.tree[self.size:self.size + len(leaves)] = leaves
            for node in range(self.size - 1, 0, -1):
                self.tree[node] = min(self.tree[2 * node], self.tree[2 * node + 1])
        self.count += 1
        return self.count - 1

    def set(self, i: int, end: float) -> None:
        node = self.size + i
        self.tree[node] = end
        node //= 2
        while node:
            self.tree[node] = min(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2

    def first_at_most(self, x: float) -> int | None:
        if self.tree[1] > x:
            return None
        node = 1
        while node < self.size:
            node = 2 * node if self.tree[2 * node] <= x else 2 * node + 1
        return node - self.size


# What templates/timeline/_picture.svg draws. Positions are worked out here and written as the attribute text
# they become; texts are plain (the template escapes them) with the characters XML forbids removed.

@dataclass(frozen=True)
class YearTick:
    """A year on the axis: a grid line, labelled at the top and at the bottom."""

    x: str
    year: int
    anchor: str  # text-anchor of the labels: the first and last years stay inside the picture


@dataclass(frozen=True)
class DrawnBar:
    """One bar as drawn: a link to its page holding the shape, its markers and its label."""

    href: str
    classes: str
    detail: str  # the tooltip, the accessible name and what timeline.js shows below the picture
    slug: str
    x: str
    y: str
    width: str
    fill: str
    dashed: bool  # it ended, but nobody recorded when: a dashed outline
    arrow: str | None  # path of the arrow head of a bar still running
    marker: str | None  # path of the diamond at the end of an ended initiative
    label: str
    label_x: str
    label_y: str
    label_fill: str
    inside: bool  # the label fits inside the bar; else it follows it, with the end note in a smaller type
    note: str  # why or whether it ended ("" for none)
    note_x: str  # where the note starts when the label is inside


@dataclass(frozen=True)
class DrawnLane:
    """A lane as drawn: its background band, its heading and its bars, row by row."""

    kind: str
    y: str
    height: str
    fill: str
    heading: str
    heading_y: str
    bars: list[DrawnBar]


@dataclass(frozen=True)
class Picture:
    """The whole timeline picture, ready for templates/timeline/_picture.svg."""

    width: int
    height: str
    font: str
    title: str
    pad_x: int  # where the lane headings start
    bar_height: int
    ticks: list[YearTick]
    grid_top: str
    grid_bottom: str
    label_ys: tuple[str, str]  # the year labels above and below the lanes
    lanes: list[DrawnLane]
    empty_x: str
    empty_y: str
    today_x: str | None  # None when today is outside the years shown
    today_bottom: str
    today_anchor: str


def picture(tl: Timeline, url_for_page: Callable[[str], str] | None = None) -> Picture:
    """The timeline laid out for drawing: lanes, rows, bars, labels and the axis, every position decided."""
    url_for_page = url_for_page or (lambda slug: f"/wiki/{slug}")
    first, last = tl.first_year, tl.last_year
    if last - first < 5:
        last = first + 5
    plot_w = WIDTH - 2 * PAD_X
    span = last - first

    def scale(x: float) -> float:
        return PAD_X + (x - first) / span * plot_w

    packed = [(lane, _pack(lane.bars, scale)) for lane in tl.lanes]
    body_h = sum(LANE_HEAD_H + len(rows) * ROW_H + 8 for _, rows in packed) or 40
    height = AXIS_H + body_h + AXIS_H - 8
    counts = tl.counts()
    title = (f"Reform timeline {first}–{last - 1}: {counts['leader']} tenures, {counts['initiative']} initiatives, "
             f"{counts['partnership']} partnerships")

    # Year grid and axis labels, top and bottom.
    step = _tick_step(span)
    bottom = AXIS_H + body_h
    ticks = [YearTick(f"{scale(year):.1f}", year, "start" if year == first else ("end" if year == last else "middle"))
             for year in range(first - first % step if first % step else first, last + 1, step) if year >= first]

    lanes = []
    y = AXIS_H
    for lane, rows in packed:
        lane_h = LANE_HEAD_H + len(rows) * ROW_H
        heading = lane.label if lane.kind != "role" else f"Role: {lane.label}"
        bars = [_drawn_bar(bar, inside, scale, y + LANE_HEAD_H + r * ROW_H, url_for_page)
                for r, row in enumerate(rows) for bar, inside in row]
        lanes.append(DrawnLane(kind=_clean(lane.kind), y=f"{y:.0f}", height=f"{lane_h + 4:.0f}",
                               fill="#f4f6f9" if lane.kind == "role" else "#fbfbfc",
                               heading=_clean(_short(heading, 120)), heading_y=f"{y + 16:.0f}", bars=bars))
        y += lane_h + 8

    # Today, over everything.
    now = _day_position(tl.today)
    today_x = scale(now) if first <= now <= last else None
    return Picture(
        width=WIDTH, height=f"{height:.0f}", font=FONT, title=_clean(title), pad_x=PAD_X, bar_height=BAR_H,
        ticks=ticks, grid_top=str(AXIS_H - 6), grid_bottom=f"{bottom:.0f}",
        label_ys=(f"{AXIS_H - 10:.0f}", f"{bottom + 16:.0f}"), lanes=lanes,
        empty_x=str(WIDTH / 2), empty_y=str(AXIS_H + 24),
        today_x=None if today_x is None else f"{today_x:.1f}", today_bottom=f"{bottom:.0f}",
        today_anchor="end" if today_x is not None and today_x > WIDTH - 40 else "middle")


def _drawn_bar(bar: Bar, inside: bool, scale: Callable[[float], float], top: float,
               url_for_page: Callable[[str], str]) -> DrawnBar:
    x0, x1 = scale(bar.x0), scale(bar.x1)
    w = max(x1 - x0, 3)
    y = top + (ROW_H - BAR_H) / 2
    fill = _fill(bar)
    classes = [f"timeline-bar timeline-bar--{bar.kind}"]
    if bar.status:
        classes.append(f"timeline-bar--{bar.status}")
    if bar.open_ended:
        classes.append("timeline-bar--open")
    arrow = marker = None
    if bar.open_ended:
        # An arrow head: it is still running.
        arrow = f"M{x1:.1f} {y - 2:.1f} L{x1 + 7:.1f} {y + BAR_H / 2:.1f} L{x1:.1f} {y + BAR_H + 2:.1f} Z"
    text_x = x0 + 5 if inside else x1 + (10 if bar.open_ended else 5)
    note = _end_note(bar)
    if note and not inside:
        text_x = x1 + 10
    if bar.ended:
        # The end marker: a diamond at the end, with why it ended.
        cy = y + BAR_H / 2
        marker = f"M{x1:.1f} {cy - 7:.1f} L{x1 + 6:.1f} {cy:.1f} L{x1:.1f} {cy + 7:.1f} L{x1 - 6:.1f} {cy:.1f} Z"
    light = fill in LIGHT_FILLS
    return DrawnBar(
        href=_clean(url_for_page(bar.slug)), classes=_clean(" ".join(classes)), detail=_clean(bar.detail),
        slug=_clean(bar.slug), x=f"{x0:.1f}", y=f"{y:.1f}", width=f"{w:.1f}", fill=fill, dashed=bar.end_unknown,
        arrow=arrow, marker=marker, label=_clean(_short(bar.title)), label_x=f"{text_x:.1f}",
        label_y=f"{y + BAR_H - 5:.1f}", label_fill="#1d2733" if light or not inside else "#ffffff", inside=inside,
        note=_clean(note), note_x=f"{x1 + 10:.1f}")


# ---------------------------------------------------------------------------------------------------------------
# The routine calendar

@dataclass
class CalendarRoutine:
    slug: str
    title: str
    months: list[int]
    cadence: str | None
    owner: str | None
    people_who_can_run_it: int | None
    last_performed: str | None

    @property
    def at_risk(self) -> bool:
        """Only one person (or nobody) can run it: the bus factor is 1."""
        return self.people_who_can_run_it is not None and self.people_who_can_run_it <= 1

    def as_json(self, owner_titles: dict[str, str]) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "months": self.months, "cadence": self.cadence,
                "owner": self.owner, "owner_title": owner_titles.get(self.owner or ""),
                "people_who_can_run_it": self.people_who_can_run_it, "at_risk": self.at_risk,
                "last_performed": self.last_performed}


@dataclass
class RoutineCalendar:
    months: dict[int, list[CalendarRoutine]]
    unscheduled: list[CalendarRoutine]
    owner_titles: dict[str, str]  # owner slug -> title, for owners the viewer may read
    tag: str | None = None
    owner: str | None = None

    @property
    def routines(self) -> list[CalendarRoutine]:
        seen: dict[str, CalendarRoutine] = {}
        for items in list(self.months.values()) + [self.unscheduled]:
            for r in items:
                seen.setdefault(r.slug, r)
        return sorted(seen.values(), key=lambda r: r.title.casefold())

    @property
    def at_risk(self) -> list[CalendarRoutine]:
        return [r for r in self.routines if r.at_risk]

    def as_json(self, url_for_page: Callable[[str], str] | None = None) -> dict[str, Any]:
        def item(r: CalendarRoutine) -> dict[str, Any]:
            data = r.as_json(self.owner_titles)
            if url_for_page is not None:
                data["url"] = url_for_page(r.slug)
            return data

        return {"filters": {"tag": self.tag, "owner": self.owner},
                "months": {str(m): [item(r) for r in rs] for m, rs in self.months.items()},
                "unscheduled": [item(r) for r in self.unscheduled],
                "at_risk": [item(r) for r in self.at_risk]}


def routine_calendar(session: Session, viewer: Viewer, tag: str | None = None,
                     owner: str | None = None) -> RoutineCalendar:
    """Readable routines by the months they happen in (from `months`), with their owners."""
    tag = slugify(tag) if _text(tag) else None
    owner = slugify(owner) if _text(owner) else None
    q = access.readable_pages(viewer).where(Page.kind == "routine")
    if tag:
        q = q.where(Page.id.in_(select(PageTag.page_id).where(PageTag.tag == tag)))
    routines = access.filter_readable(viewer, session.scalars(q.order_by(Page.id).limit(MAX_PAGES)))
    months: dict[int, list[CalendarRoutine]] = {m: [] for m in range(1, 13)}
    unscheduled: list[CalendarRoutine] = []
    owners: set[str] = set()
    for page in routines:
        fields = page.fields or {}
        if owner and fields.get("owner") != owner:
            continue
        people = fields.get("people_who_can_run_it")
        entry = CalendarRoutine(page.slug, page.title, sorted(int(m) for m in fields.get("months") or []),
                                _text(fields.get("cadence")), fields.get("owner"),
                                people if isinstance(people, int) and not isinstance(people, bool) else None,
                                _text(fields.get("last_performed")))
        if entry.owner:
            owners.add(entry.owner)
        if entry.months:
            for m in entry.months:
                if 1 <= m <= 12:
                    months[m].append(entry)
        else:
            unscheduled.append(entry)
    for items in list(months.values()) + [unscheduled]:
        items.sort(key=lambda r: (not r.at_risk, r.title.casefold()))
    return RoutineCalendar(months, unscheduled, pages.readable_titles(session, viewer, owners), tag, owner)
