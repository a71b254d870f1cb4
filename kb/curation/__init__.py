"""Curation and succession: keeping the memory current, and handing it over when people leave (PRODUCT §4.6, §4.7).

One module per job; import from the job's module:

* `verification`: whether a page is Verified, Needs review or Never verified, verifying it, asking for a review, and
  who owns and verifies it.
* `queues`: the curators' queues (needs review, unowned, orphaned, wanted, without sources...) and bulk actions.
* `watching`: watching pages and tags, following kinds, and "what changed since my last visit".
* `feed_tokens`: secret feed addresses, so feed readers (which cannot sign in) see what their owner may see.
* `risk`: knowledge at risk, most at risk first.
* `reassignment`: moving everything a departing person looks after to a successor, in one logged action.
* `handover`: the handover wizard, step by step, and the successor's confirmation.
* `summaries`: `PageSummary`, the few columns of a page that the long lists read.

Every list goes through kb.access: a page the viewer may not read never appears, and is never counted.
"""
