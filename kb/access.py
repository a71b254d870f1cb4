"""Who may see and do what. Every read path asks this module; nothing else decides visibility.

A page the viewer may not read must behave exactly like a page that does not exist, so callers use
`readable_pages()` / `get_readable_page()` (which return nothing for a hidden page) rather than checking afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from sqlalchemy import Boolean, Select, String, cast, false, literal, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from kb.models import Page, SlugRedirect

ROLE_RANK = {"reader": 1, "contributor": 2, "curator": 3, "admin": 4}


@dataclass(frozen=True)
class Viewer:
    """The person asking: anonymous (user_id None) or a signed-in user with a role."""

    user_id: int | None = None
    name: str | None = None
    role: str | None = None
    anonymous_read: bool = False

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None

    def at_least(self, role: str) -> bool:
        return self.signed_in and ROLE_RANK.get(self.role or "", 0) >= ROLE_RANK[role]

    @property
    def may_read_site(self) -> bool:
        return self.signed_in or self.anonymous_read

    @property
    def sees_restricted(self) -> bool:
        return self.at_least("curator")

    @property
    def may_edit(self) -> bool:
        return self.at_least("contributor")

    @property
    def may_curate(self) -> bool:
        return self.at_least("curator")

    @property
    def is_admin(self) -> bool:
        return self.at_least("admin")

    @cached_property
    def _levels(self) -> tuple[str, ...]:
        # Worked out once per viewer: lists check thousands of pages against it.
        if not self.may_read_site:
            return ()
        if self.sees_restricted:
            return ("public", "staff", "restricted")
        if self.signed_in:
            return ("public", "staff")
        return ("public",)

    def visible_levels(self) -> tuple[str, ...]:
        """Visibility levels this viewer reads without being named as a reader."""
        return self._levels


def can_read(viewer: Viewer, visibility: str, readers: Iterable[str] = ()) -> bool:
    """May this viewer read a page with this visibility and readers list?"""
    if visibility in viewer.visible_levels():
        return True
    return visibility == "restricted" and viewer.signed_in and viewer.name in (readers or ())


def can_read_page(viewer: Viewer, page: Page) -> bool:
    # The readers list is read only when the viewer's levels do not open the page by themselves: long lists pass
    # page summaries that decode it only when asked (kb.curation.summaries.PageSummary).
    if page.deleted_at is not None:
        return False
    return page.visibility in viewer.visible_levels() or can_read(viewer, page.visibility, page.readers)


def can_edit_page(viewer: Viewer, page: Page | None) -> bool:
    """Contributors edit what they can read, except restricted pages: only curators edit those.

    A named reader may read a restricted page but not edit it, or they could make it public or add readers.
    """
    if not viewer.may_edit:
        return False
    if page is None:
        return True
    if page.visibility == "restricted" and not viewer.may_curate:
        return False
    return can_read_page(viewer, page)


def may_set_visibility(viewer: Viewer, visibility: str) -> bool:
    return visibility != "restricted" or viewer.may_curate


class _contains_text(FunctionElement):
    """`haystack` contains `needle`, case-sensitively, on every database (LIKE ignores case on SQLite)."""

    type = Boolean()
    inherit_cache = True
    name = "kb_contains_text"


@compiles(_contains_text)
def _contains_text_default(element, compiler, **kw):
    haystack, needle = list(element.clauses)
    return f"(strpos({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)}) > 0)"


@compiles(_contains_text, "sqlite")
def _contains_text_sqlite(element, compiler, **kw):
    haystack, needle = list(element.clauses)
    return f"(instr({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)}) > 0)"


def _named_reader(name: str, entity=Page):
    """True for restricted pages whose readers list holds exactly this name.

    `readers` is stored as JSON text such as '["ana", "reader"]'. An entry equal to the name appears as '"name"'
    right after '[' or ', '; inside a longer entry its quotes would be escaped ('\\"'), so it cannot match there.
    """
    import json

    quoted = json.dumps(name)
    text = cast(entity.readers, String)
    return (entity.visibility == "restricted") & or_(_contains_text(text, literal("[" + quoted)),
                                                   _contains_text(text, literal(", " + quoted)))


def page_clause(viewer: Viewer, entity=Page):
    """A SQL condition on `Page` (or an alias of it) that is true exactly for the pages this viewer may read."""
    levels = viewer.visible_levels()
    if not viewer.may_read_site:
        return false()
    if "restricted" in levels:
        cond = true()
    else:
        cond = entity.visibility.in_(levels)
        if viewer.signed_in and viewer.name:
            cond = or_(cond, _named_reader(viewer.name, entity))
    return cond & entity.deleted_at.is_(None)


def readable_pages(viewer: Viewer) -> Select:
    """`select(Page)` restricted to what the viewer may read."""
    return select(Page).where(page_clause(viewer))


def filter_readable(viewer: Viewer, pages: Iterable[Page]) -> list[Page]:
    return [p for p in pages if can_read_page(viewer, p)]


def get_readable_page(session: Session, viewer: Viewer, slug: str, follow_redirects: bool = True) -> Page | None:
    """The page at `slug` (or the page it was renamed to) if the viewer may read it; otherwise None."""
    page = session.scalar(select(Page).where(Page.slug == slug))
    if page is None and follow_redirects:
        redirect = session.get(SlugRedirect, slug)
        if redirect is not None:
            page = session.get(Page, redirect.page_id)
    if page is None or not can_read_page(viewer, page):
        return None
    return page
