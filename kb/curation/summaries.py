"""Pages as the curation lists read them: `PageSummary`, a few columns of each page instead of whole pages.

It earns its place because a curation list can hold every page of the wiki (the never-verified queue does until
someone checks them, and /curate works out every queue for its counts): loading each as a whole database object,
with fields, tags, readers and sources decoded, spent most of the time of those pages on data the lists never show.
The queues (kb.curation.queues) and knowledge at risk (kb.curation.risk) read summaries; verification accepts
either a page or a summary.
"""
from __future__ import annotations

import json
from typing import Iterable

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from kb import access
from kb.access import Viewer
from kb.models import Page, User


def in_chunks(items: list, size: int = 500) -> Iterable[list]:
    """The items a few hundred at a time, for IN (...) queries the database accepts."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


class NotLoaded(RuntimeError):
    """A list read a column of a page that the list did not load."""


# What the curation lists read of a page. A list can hold every page (each one is "never verified" until someone
# checks it), so it reads these columns rather than whole pages: no ORM object per page, and no decoding of fields,
# tags or sources it does not use. `fields` or `sources` are added for the lists that need them. The readers list
# comes as its JSON text and is decoded only if read: kb.access reads it only for a restricted page that the viewer's
# role does not open by itself, and it was the costliest column to decode for every page of a long list.
_SUMMARY_COLUMNS = (Page.id, Page.slug, Page.title, Page.kind, Page.status, Page.visibility,
                    cast(Page.readers, String).label("readers_json"), Page.deleted_at, Page.owner_id,
                    Page.updated_at, Page.revision, Page.review_every, Page.verified_on, Page.verified_revision)
_EXTRA_COLUMNS = {"fields": Page.fields, "sources": Page.sources}


class PageSummary:
    """A page in a curation list: the columns above, its owner (a User, or None) and, if loaded, fields or sources.

    It carries what kb.access.can_read_page reads (visibility, readers, deleted_at) and what the lists and their
    templates show. Reading anything else raises NotLoaded, not AttributeError: templates turn a missing attribute
    into an empty string, and a list that starts to use another column must fail loudly, not print nothing.
    """

    __slots__ = (*(c.key for c in _SUMMARY_COLUMNS), "owner", *_EXTRA_COLUMNS)

    def __init__(self, id, slug, title, kind, status, visibility, readers_json, deleted_at, owner_id, updated_at,
                 revision, review_every, verified_on, verified_revision, owner=None):
        self.id, self.slug, self.title, self.kind, self.status = id, slug, title, kind, status
        self.visibility, self.readers_json, self.deleted_at = visibility, readers_json, deleted_at
        self.owner_id, self.updated_at, self.revision, self.review_every = owner_id, updated_at, revision, review_every
        self.verified_on, self.verified_revision, self.owner = verified_on, verified_revision, owner

    @property
    def readers(self) -> list[str] | None:
        return None if self.readers_json is None else json.loads(self.readers_json)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: an attribute this summary does not have, or did not load.
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotLoaded(f"curation lists do not load a page's {name!r}; add it to the list's query")

    def __repr__(self) -> str:
        return f"<PageSummary {self.id} {self.slug!r}>"


def summaries(session: Session, viewer: Viewer, *where, extra: Iterable[str] = ()) -> list[PageSummary]:
    """Readable pages matching `where`, by title, as PageSummary (with the `extra` columns named)."""
    extra = tuple(extra)
    q = (access.readable_pages(viewer).with_only_columns(*_SUMMARY_COLUMNS, *(_EXTRA_COLUMNS[e] for e in extra))
         .where(*where).order_by(func.lower(Page.title)))
    n = len(_SUMMARY_COLUMNS)
    if extra:
        found = []
        for row in session.execute(q):
            p = PageSummary(*row[:n])
            for name, value in zip(extra, row[n:]):
                setattr(p, name, value)
            found.append(p)
    else:
        found = [PageSummary(*row) for row in session.execute(q)]
    found = access.filter_readable(viewer, found)
    owner_ids = list({p.owner_id for p in found} - {None})
    owners: dict[int, User] = {}
    for chunk in in_chunks(owner_ids):
        owners.update((u.id, u) for u in session.scalars(select(User).where(User.id.in_(chunk))))
    for p in found:
        p.owner = owners.get(p.owner_id)
    return found

