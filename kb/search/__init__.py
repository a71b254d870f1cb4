"""Full-text search behind one small interface.

* `backend`: the `SearchBackend` protocol every search engine implements (query, suggest, tried_before; page_saved,
  page_deleted, page_renamed; kick, flush; rebuild, check, repair, repair_at_start), and the answers it gives
  (`SearchResults`, `Hit`, `Suggestion`, `TriedBefore`, `CheckReport`).
* `query`: reading what people type (`parse_query`), the same for every backend.
* `whoosh`: the embedded engine and today's only one, a Whoosh index in `DATA_DIR/index` kept current through the
  database's index queue. Nothing outside it imports Whoosh.

The app holds one backend: `init_app(app)` binds it as `app.extensions["kb_search"]` and `backend_for(app)` returns
it; views, commands and start-up call its methods. `kick(app)` runs after a commit that changed pages, and decides
from the settings whether the index is brought up to date now or by the background worker.

Visibility is applied inside the backend, before anything is counted (kb.access decides), so results, totals,
facet counts, snippets, suggestions and corrections never reflect a page the viewer may not read.
"""
from __future__ import annotations

import logging

from kb.search.backend import (FACET_NAMES, FILTERS, SORTS, CheckReport, Hit, SearchBackend, SearchResults,
                               SearchUnavailable, Suggestion, TriedBefore)
from kb.search.query import MAX_QUERY_CHARS, ParsedQuery, parse_query, parse_year

log = logging.getLogger(__name__)

EXTENSION = "kb_search"


def init_app(app) -> None:
    """Bind the search backend to the app (it opens nothing yet) and start its background work on the first
    request. Settings (kb.config): SEARCH_BACKGROUND, SEARCH_WORKER, SEARCH_SYNC_REBUILD_LIMIT."""
    from kb.search.whoosh import WhooshBackend

    backend = WhooshBackend(app.extensions["kb_db"], app.config["DATA_DIR"],
                            sync_rebuild_limit=app.config["SEARCH_SYNC_REBUILD_LIMIT"])
    app.extensions[EXTENSION] = backend
    app.extensions["kb_db"].search = backend  # saves tell it of each change in their own transaction
    app.before_request(lambda: _start_background(app))


def backend_for(app) -> SearchBackend:
    """The app's search backend."""
    return app.extensions[EXTENSION]


def _background_allowed(app) -> bool:
    worker = app.config.get("SEARCH_WORKER")
    return bool(app.config.get("SEARCH_BACKGROUND", True) and (True if worker is None else worker))


def _start_background(app) -> None:
    if _background_allowed(app):
        backend_for(app).start_background()


def kick(app, background: bool | None = None) -> None:
    """Called after a commit that changed pages; never raises.

    Where this process runs background work (a server), the backend is only woken and brings the index up to date
    right after the response, so saving does not wait for the index; otherwise (tests, commands) the work is done
    here (`flush`).
    """
    backend = backend_for(app)
    if background is None:
        worker = app.config.get("SEARCH_WORKER")
        background = bool(not app.testing if worker is None else worker)
    if background and not _background_allowed(app):
        background = False  # nobody else would do it
    if not background:
        backend.flush()
    try:
        _start_background(app)
        backend.kick()
    except Exception:
        log.exception("could not wake the search index worker")


def repair_at_start(app) -> str:
    """Before serving: make a missing or damaged index usable (see SearchBackend.repair_at_start)."""
    return backend_for(app).repair_at_start()


__all__ = [
    "FACET_NAMES", "FILTERS", "MAX_QUERY_CHARS", "SORTS", "CheckReport", "Hit", "ParsedQuery", "SearchBackend",
    "SearchResults", "SearchUnavailable", "Suggestion", "TriedBefore", "backend_for", "init_app", "kick",
    "parse_query", "parse_year", "repair_at_start",
]
