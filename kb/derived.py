"""Derived facts: what a page shows about the pages that link to it, worked out and never typed in (a leader's
initiatives, a community's routines, an initiative's lessons and what carries it on). The relations are declared in
kb.kinds.DERIVED; this module only works them out. The wiki's page view and the tours both show them.
"""
from __future__ import annotations

from typing import Any

from kb import kinds


def worked_out(kind_name: str, fields: dict[str, Any], linked: dict[str, list]) -> list[tuple[kinds.Derived, list]]:
    """Every derived fact of a page of this kind with these fields, empty ones included, as (declaration, pages).

    `linked` is pages.backlinks_by_field for the page: the readable pages linking here, by the field they link
    through ("body" for the text), so the facts follow every edit of those pages and respect visibility. Through one
    field, pages come in the order given (by title); through several or any, merged and by title ignoring case.
    """
    out = []
    for fact in kinds.DERIVED:
        if fact.on != kind_name:
            continue
        sources = [linked.get(name, []) for name in fact.via] if fact.via else list(linked.values())
        found = [p for ps in sources for p in ps if p.kind in fact.from_kinds]
        if len(fact.via) != 1:
            found = sorted({p.slug: p for p in found}.values(), key=lambda p: p.title.lower())
        given = fields.get(fact.unless) if fact.unless else None
        if given:
            given = set(given) if isinstance(given, list) else {given}
            found = [p for p in found if p.slug not in given]
        out.append((fact, found))
    return out


def derived_facts(page, linked: dict[str, list]) -> list[tuple[str, list]]:
    """The derived facts a page shows, as (label, pages), leaving out those with no pages."""
    return [(fact.label, found) for fact, found in worked_out(page.kind, page.fields or {}, linked) if found]
