"""Full-text search: the Whoosh index, kept true to the database, and the queries people run against it.

The database is the truth; the index under `DATA_DIR/index` is derived and can be thrown away at any time.

* `documents`: the schema and the index document of a page.
* `columns`: compact arrays written beside each Whoosh segment (postings, positions, lengths, facet values), which
  the query engine reads through memory maps instead of decoding Whoosh's pickled posting blocks.
* `engine`: the index as one process sees it (`SearchIndex`, the current generation, a warm `_View`) and the
  vectorised document sets and scores.
* `queries`: `search` (words, "phrases", -exclusions, `kind:` `tag:` `status:` `year:` filters, facets, snippets,
  "did you mean"), `suggest` (titles, for search as you type) and `tried_before` (earlier initiatives and
  lessons on a topic).
* `maintenance`: the index queue and its worker, full rebuilds, `check` and `repair`, start-up repair.

Visibility is applied before anything is counted: every document set is intersected with the set of documents the
viewer may read (decided by kb.access.can_read), so results, totals, facet counts, snippets, suggestions and
corrections never reflect a page the viewer may not read.
"""
from kb.search.documents import (BOOSTS, EXCERPT_CHARS, FACET_NAMES, SCHEMA, STEM, TEXT_FIELDS, analyse,
                                 analyse_word, document_for, page_stamp, strip_markdown)
from kb.search.engine import (INDEX_NAME, POINTER, IndexDamaged, IndexMissing, IndexUnavailable, SearchIndex,
                              open_index)
from kb.search.maintenance import (MAX_SEGMENTS, MERGE_AT, QUEUE_BATCH, REBUILD_PROCS, SYNC_REBUILD_LIMIT,
                                   CheckReport, RebuildReport, Worker, add_to_index, check, check_app_index,
                                   ensure_index, index_for, init_app, kick, merge_segments, process_queue,
                                   queue_length, rebuild, rebuild_app_index, remove_from_index, repair,
                                   repair_at_start)
from kb.search.queries import (MAX_QUERY_CHARS, MAX_TERMS, PHRASE_BUDGET, PHRASE_EXACT, SORTS, Hit, ParsedQuery,
                               SearchResults, TriedBefore, parse_query, parse_year, search, snippet, snippet_for,
                               suggest, tried_before)

__all__ = [
    "SCHEMA", "SearchIndex", "open_index", "index_for", "document_for", "strip_markdown", "parse_query",
    "ParsedQuery", "search", "SearchResults", "Hit", "suggest", "tried_before", "TriedBefore", "snippet",
    "add_to_index", "remove_from_index", "process_queue", "queue_length", "rebuild", "RebuildReport", "check",
    "repair", "CheckReport", "ensure_index", "Worker", "init_app", "kick", "IndexUnavailable", "rebuild_app_index",
    "check_app_index", "repair_at_start", "parse_year", "SORTS", "FACET_NAMES", "BOOSTS", "EXCERPT_CHARS", "STEM", "TEXT_FIELDS",
    "analyse", "analyse_word", "page_stamp", "INDEX_NAME", "POINTER", "IndexDamaged", "IndexMissing", "MAX_SEGMENTS",
    "MERGE_AT", "QUEUE_BATCH", "REBUILD_PROCS", "SYNC_REBUILD_LIMIT", "merge_segments", "MAX_QUERY_CHARS",
    "MAX_TERMS", "PHRASE_BUDGET", "PHRASE_EXACT", "snippet_for",
]
