"""The search interface: what the rest of kb asks of a search backend, and the answers it gets back.

A backend (today `kb.search.whoosh`; the next one answers from PostgreSQL itself) implements `SearchBackend`. Views,
commands and start-up call only these methods, through `kb.search.backend_for(app)`, and read only the dataclasses
below; none of them knows how or where a backend stores its index.

Every read applies visibility inside the backend (kb.access decides): results, totals, facet counts, snippets,
suggestions and "did you mean" never reflect a page the viewer may not read. Reads never raise for any input: an
index that cannot be read gives an empty answer marked `unavailable`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, TypedDict

from markupsafe import Markup

from kb.search.query import ParsedQuery

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from kb.access import Viewer
    from kb.models import Page

FACET_NAMES = ("kind", "tag", "status", "decade")
SORTS = ("relevance", "updated")
FILTERS = ("kind", "tag", "status", "year")

Progress = Callable[[str, int, int], None]  # progress("index", done, total), for the CLI's progress bar


class SearchUnavailable(Exception):
    """The index is missing or damaged; it must be rebuilt from the database."""


@dataclass
class Hit:
    slug: str
    title: str
    kind: str
    snippet: Markup  # the page's own text, escaped, with <mark> around the matches (kb.render.highlight)
    score: float
    status: str = ""
    ended_reason: str = ""
    tags: list[str] = field(default_factory=list)
    updated: int = 0  # milliseconds since 1970
    period: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "kind": self.kind, "snippet": self.snippet,
                "score": round(self.score, 4)}


@dataclass
class SearchResults:
    query: ParsedQuery
    total: int = 0
    hits: list[Hit] = field(default_factory=list)
    facets: dict[str, dict[str, int]] = field(default_factory=lambda: {f: {} for f in FACET_NAMES})
    suggestion: str | None = None  # "did you mean": a corrected query text that gives results
    matched_all: bool = True  # False when no page had every word and pages with any of them are shown
    sort: str = "relevance"
    page: int = 1
    per_page: int = 10
    offset: int = 0
    unavailable: bool = False  # the index is being rebuilt
    estimated: bool = False  # total and facets are estimates (a phrase made of very common words)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "results": [h.as_json() for h in self.hits], "facets": self.facets,
                "suggestion": self.suggestion}


class Suggestion(TypedDict):
    """A title for search as you type."""

    slug: str
    title: str
    kind: str


@dataclass
class TriedBefore:
    """Earlier initiatives (ended and replaced first) and lessons on the same topic as some text."""

    initiatives: list[Hit] = field(default_factory=list)
    lessons: list[Hit] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.initiatives or self.lessons)

    def as_json(self) -> dict[str, Any]:
        def item(h: Hit) -> dict[str, Any]:
            return {"slug": h.slug, "title": h.title, "kind": h.kind, "status": h.status or None,
                    "ended_reason": h.ended_reason or None, "period": h.period, "snippet": h.snippet}

        return {"initiatives": [item(h) for h in self.initiatives], "lessons": [item(h) for h in self.lessons]}


@dataclass
class CheckReport:
    """Drift between database and index. Empty lists and `usable` mean they agree."""

    usable: bool = True  # False: the index is missing or damaged
    problem: str = ""
    pages: int = 0  # live pages in the database
    indexed: int = 0  # documents in the index
    missing: list[int] = field(default_factory=list)  # page ids not in the index
    stale: list[int] = field(default_factory=list)  # indexed at another revision, slug or visibility
    extra: list[int] = field(default_factory=list)  # in the index, but deleted or gone from the database
    duplicates: list[int] = field(default_factory=list)
    files: int = 0  # segments checked (for the counts in `describe`)
    damaged: list[str] = field(default_factory=list)  # index files missing or damaged: "name: what is wrong"
    queued: int = 0  # changes waiting to be indexed (0 for a backend that indexes in the save's transaction)
    repaired: bool = False
    rebuilt: bool = False

    @property
    def ok(self) -> bool:
        return self.usable and not (self.missing or self.stale or self.extra or self.duplicates or self.damaged)

    @property
    def drift(self) -> bool:
        return not self.ok

    def describe(self) -> str:
        """What `kb check` prints."""
        text = self.summary()
        if self.rebuilt:
            text += " (rebuilt from the database)"
        elif self.repaired:
            text += " (repaired)"
        if not self.ok:
            for problem in self.damaged[:20]:
                text += f"\n  damaged: {problem}"
            if len(self.damaged) > 20:
                text += f"\n  damaged: ... and {len(self.damaged) - 20} more"
            for label, ids in (("missing", self.missing), ("stale", self.stale), ("extra", self.extra)):
                if ids:
                    text += f"\n  {label}: page ids {', '.join(map(str, ids[:20]))}{' ...' if len(ids) > 20 else ''}"
        return text

    def summary(self) -> str:
        if not self.usable:
            return f"search index unusable: {self.problem}"
        if self.ok:
            return f"search index matches the database ({self.pages} pages, {self.queued} queued)"
        damage = (f"search index damaged: {len(self.damaged)} file(s) missing or damaged "
                  f"({self.files} segments checked); " if self.damaged else "")
        return (f"{damage}search index drift: {len(self.missing)} missing, {len(self.stale)} stale, {len(self.extra)} extra, "
                f"{len(self.duplicates)} duplicated ({self.pages} pages in the database, {self.indexed} indexed, "
                f"{self.queued} queued)")


class SearchBackend(Protocol):
    """One search engine behind the app, bound to one database.

    Reading (visibility applied inside; never raises):
    * `query`: one page of hits for a search box query, with totals, facets and "did you mean";
      `filters` holds `kind`, `tag`, `status`, `year` given as parameters (the box may hold them too).
    * `suggest`: titles whose words start with what was typed, for search as you type.
    * `tried_before`: earlier initiatives (ended ones first) and lessons on the topic of a title or query.

    Keeping current: `page_saved`, `page_deleted` and `page_renamed` are called inside the transaction that
    changes the page, with its session (a backend may queue the change there, or write its index entry in the same
    transaction). After the commit, `kick` lets background work pick the change up now, and `flush` does all the
    pending work in the calling thread (commands and tests, which end right away; a command passes `patience`, the
    seconds it may wait for an index another process holds, and returns only when all is indexed or that is up). `start_background` starts what a
    backend does in the background in this process, if anything (idempotent; safe after a fork).

    Repair: `rebuild` indexes every live page afresh; `check` compares database and index; `repair` fixes what a
    check found; `repair_at_start` makes a missing or damaged index usable before serving (small ones now, big
    ones in the background) and says what it did; `ready` says cheaply whether queries can be answered (for
    /healthz). `close` lets go of files, threads and connections.
    """

    name: str

    def query(self, viewer: Viewer, text: str | None, filters: Mapping[str, str] | None = None,
              sort: str = "relevance", limit: int = 10, offset: int = 0) -> SearchResults: ...

    def suggest(self, viewer: Viewer, text: str | None, limit: int = 8) -> list[Suggestion]: ...

    def tried_before(self, viewer: Viewer, title: str | None, exclude: str | None = None,
                     limit: int = 5) -> TriedBefore: ...

    def page_saved(self, session: Session, page: Page) -> None: ...

    def pages_written(self, session: Session, page_ids: list[int]) -> None:
        """Many new pages written in bulk (an import), in the same transaction."""

    def page_deleted(self, session: Session, page: Page) -> None: ...

    def page_renamed(self, session: Session, page: Page, old_slug: str) -> None: ...

    def kick(self) -> None: ...

    def flush(self, patience: float = 0.0) -> int: ...

    def start_background(self) -> None: ...

    def rebuild(self, progress: Progress | None = None) -> int: ...

    def check(self) -> CheckReport: ...

    def repair(self, report: CheckReport | None = None, progress: Progress | None = None) -> CheckReport: ...

    def repair_at_start(self) -> str: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...
