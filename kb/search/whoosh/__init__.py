"""The embedded search backend: a Whoosh index in `DATA_DIR/index`, kept true to the database.

The database is the truth; the index is derived and can be thrown away at any time. Nothing outside this package
imports Whoosh or knows how the index is stored.

* `backend`: `WhooshBackend`, the `kb.search.SearchBackend` the app uses.
* `documents`: the schema and the index document of a page.
* `columns`: compact arrays written beside each Whoosh segment (postings, positions, lengths, facet values), which
  the query engine reads through memory maps instead of decoding Whoosh's pickled posting blocks.
* `engine`: the index as one process sees it (`SearchIndex`, the current build, a warm view of it).
* `view`: the vectorised query engine over one view (`_View`): document sets, scores, facets, visibility.
* `queries`: `search`, `suggest` and `tried_before` over a `SearchIndex`, and snippets.
* `maintenance`: the index queue and its worker, full rebuilds, `check` and `repair`, start-up repair.
* `internals`: every use of Whoosh's private internals, each with the test that guards it.

Importing the package patches Whoosh (see `internals`). The names below are the backend's own tools, for its
tests and benchmarks; the rest of kb goes through `kb.search`.
"""
from kb.search.whoosh import internals
from kb.search.whoosh import columns

internals.install()
columns.install_capture()

from kb.search.whoosh.backend import WhooshBackend  # noqa: E402
from kb.search.whoosh.documents import BOOSTS, SCHEMA, strip_markdown  # noqa: E402
from kb.search.whoosh.engine import (POINTER, IndexDamaged, IndexMissing, IndexUnavailable, SearchIndex,  # noqa: E402
                                     open_index)
from kb.search.whoosh.maintenance import (MERGE_AT, RebuildReport, Worker, check, ensure_index,  # noqa: E402
                                          merge_segments, process_queue, queue_length, rebuild, repair)
from kb.search.whoosh.queries import FACET_NAMES, search, suggest, tried_before  # noqa: E402


def index_for(app) -> SearchIndex:
    """The index of an app whose search backend is this one."""
    return app.extensions["kb_search"].index


__all__ = [
    "BOOSTS", "FACET_NAMES", "MERGE_AT", "POINTER", "SCHEMA", "IndexDamaged", "IndexMissing", "IndexUnavailable",
    "RebuildReport", "SearchIndex", "Worker", "WhooshBackend", "check", "ensure_index", "index_for",
    "merge_segments", "open_index", "process_queue", "queue_length", "rebuild", "repair", "search",
    "strip_markdown", "suggest", "tried_before",
]
