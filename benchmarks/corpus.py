"""The synthetic corpus the benchmarks run on: one generator of district pages, two ways to store them.

`pages(n)` makes n pages of every kind that `kb.kinds` declares, about 2 KB of Markdown each: words drawn from a
Zipf distribution over district words and made-up names (so a search finds some pages, not all of them), headings,
a table, wiki links to other pages of the corpus (and about one in twenty to pages not written yet), tags, fields
valid for the kind (statuses are the kind's own choices), and 80 % public, 15 % staff, 5 % restricted pages.
Callers choose only where the pages go:

- `write_tree(root, n)` writes them in the content format, for an import through `kb.transfer` (what
  `scripts/bench` times: import, rebuild, saves, page views);
- `insert_pages(db, n)` puts the same pages straight into the pages table (no revisions, links or rendering), a
  large corpus for search figures in seconds (`scripts/bench --search-only`).

The same `n` and `seed` give the same pages, byte for byte, on every run.
"""
from __future__ import annotations

import bisect
import itertools
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import yaml
from sqlalchemy import insert, select

from kb import kinds
from kb.models import Page
from kb.slugs import slugify

WORDS = """
assessment writing rubric teacher teachers principal principals superintendent district school schools literacy
mathematics science coach coaching cadre leadership leader leaders partnership community practice routine
meeting meetings budget funding grant evaluation evidence pilot initiative reform curriculum standards benchmark
samples scoring release time professional development onboarding onboard induction mentor mentoring network
central office data indicators goals strategy improvement achievement students student learners english
immersion inquiry lesson lessons review after action handover successor transition turnover tenure board
policy mandate compliance calendar october spring summer institute workshop cohort grade level team teams
family families engagement equity attendance discipline climate survey interview documentation research
university college career readiness principal-supervisor instructional rounds walkthrough observation feedback
""".split()
FILLER = """
the a of and to in for with on by from as at that this which was were is are be been it its their they
into over after before during about through under between among while when where who what how why also
""".split()
TAGS = WORDS[:60] + ["writing-assessment", "teacher-leadership", "central-office", "math-coaching",
                     "new-superintendent", "community-of-practice"]
SYLLABLES = "ka lo mi ne ra so tu vi be da fe gu ho ji ku la ma no pe qui ri sa te uv wo xa yo ze".split()


def _vocabulary(size: int = 3000, seed: int = 11) -> list[str]:
    """District words mixed with made-up ones (names, places, rarer words), in the order of how common they are."""
    rng = random.Random(seed)
    made_up: set[str] = set()
    while len(made_up) < size - len(WORDS):
        made_up.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    vocab = sorted(made_up)
    rng.shuffle(vocab)
    for i, w in enumerate(WORDS):  # district words spread over ranks 3..600: some very common, most not
        vocab.insert(min(len(vocab), 3 + i * 3), w)
    return vocab


VOCAB = _vocabulary()
_CUM = list(itertools.accumulate(1.0 / r for r in range(1, len(VOCAB) + 1)))


def _word(rng: random.Random) -> str:
    if rng.random() < 0.40:
        return rng.choice(FILLER)
    return VOCAB[bisect.bisect(_CUM, rng.random() * _CUM[-1])]  # Zipf: rank r has weight 1/r


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(_word(rng) for _ in range(n)).capitalize() + "."


def _title(seed: int, number: int) -> str:
    rng = random.Random(f"title-{seed}-{number}")  # a page's title does not depend on how many pages came before
    return " ".join(_word(rng) if rng.random() < 0.5 else rng.choice(WORDS)
                    for _ in range(rng.randint(2, 6))).title() + f" {number}"


def _fields(rng: random.Random, kind_name: str, link_slug) -> dict[str, Any]:
    """Fields a writer of this kind would fill in, cleaned by kb.kinds as a save would clean them."""
    kind = kinds.KINDS[kind_name]
    fields: dict[str, Any] = {}
    if kind.status_field:
        fields[kind.status_field] = rng.choice(kind.field(kind.status_field).choices)
    status = fields.get(kind.status_field)
    start = rng.randint(1985, 2023)
    if kind_name == "initiative":
        fields.update(started=str(start), problem=_sentence(rng, 14), evidence=_sentence(rng, 12),
                      sponsors=[link_slug()])
    elif kind_name == "routine":
        fields.update(purpose=_sentence(rng, 10), cadence=rng.choice(["weekly", "monthly", "each October"]),
                      months=sorted(rng.sample(range(1, 13), 3)), people_who_can_run_it=rng.randint(1, 4),
                      steps=[_sentence(rng, 6) for _ in range(3)])
    elif kind_name == "lesson":
        fields.update(occurred=str(start), lesson=_sentence(rng, 12))
    elif kind_name == "community":
        fields.update(domain=_sentence(rng, 8), meets=rng.choice(["weekly", "monthly", "each term"]))
    elif kind_name == "partnership":
        fields.update(partner=_sentence(rng, 3).rstrip("."), started=str(start), goals=[_sentence(rng, 8)])
    elif kind_name == "leader":
        fields.update(tenures=[{"role": rng.choice(["principal", "superintendent", "coach"]),
                                "from": str(start), "hired": rng.choice(["internal", "external"])}])
    elif kind_name == "handover":
        fields.update(role=rng.choice(["principal", "superintendent", "coach"]), will_break=_sentence(rng, 12),
                      risk={"attrition": rng.randint(1, 5), "criticality": rng.randint(1, 5)})
    if status in kinds.ENDING_STATUSES and kind.field("ended"):
        fields["ended"] = str(min(2024, start + rng.randint(1, 8)))
        if kind.field("ended_reason"):
            fields["ended_reason"] = rng.choice(kind.field("ended_reason").choices)
    return kinds.validate_fields(kind_name, fields)


def _body(rng: random.Random, link_title) -> str:
    parts = ["## Summary", " ".join(_sentence(rng, rng.randint(8, 22)) for _ in range(rng.randint(2, 4)))]
    for _ in range(rng.randint(3, 6)):
        if rng.random() < 0.3:
            parts.append("## " + " ".join(rng.choice(WORDS) for _ in range(3)).title())
        text = " ".join(_sentence(rng, rng.randint(8, 22)) for _ in range(rng.randint(2, 5)))
        if rng.random() < 0.4:
            text += f" See [[{rng.choice(WORDS)}]] and **{rng.choice(WORDS)}**."
        parts.append(text)
    parts.append("See also " + ", ".join(f"[[{link_title()}]]" for _ in range(4)) + ".")
    parts.append(f"| year | note |\n|---|---|\n| {rng.randint(1985, 2023)} | {_sentence(rng, 5)} |")
    return "\n\n".join(parts) + "\n"


def pages(n: int, seed: int = 1, first: int = 1) -> Iterator[dict[str, Any]]:
    """n pages numbered from `first`: number, slug, title, kind, status, fields, tags, visibility, readers,
    sources, body."""
    titles = [_title(seed, k) for k in range(first, first + n + n // 20)]  # the last twentieth is never written
    kind_names = list(kinds.KINDS)
    for number in range(first, first + n):
        rng = random.Random(f"page-{seed}-{number}")
        kind = rng.choice(kind_names)
        fields = _fields(rng, kind, lambda: slugify(titles[rng.randrange(n)]))
        r = rng.random()
        visibility = "public" if r < 0.8 else "staff" if r < 0.95 else "restricted"
        title = titles[number - first]
        yield {
            "number": number, "slug": slugify(title), "title": title, "kind": kind,
            "status": kinds.status_of(kind, fields), "fields": fields,
            "tags": sorted(set(rng.sample(TAGS, rng.randint(0, 4)))), "visibility": visibility,
            "readers": ["reader1"] if visibility == "restricted" and rng.random() < 0.5 else [],
            "sources": ["Synthetic benchmark corpus"], "body": _body(rng, lambda: rng.choice(titles)),
        }


def write_tree(root: Path, n: int, seed: int = 1) -> list[str]:
    """Write n pages under root in the content format, one Markdown file each; return their slugs in order."""
    root.mkdir(parents=True, exist_ok=True)
    slugs = []
    for page in pages(n, seed):
        front = {key: page[key] for key in ("title", "kind", "tags", "visibility", "readers", "sources", "fields")
                 if page[key]}
        (root / f"p{page['number']:06d}.md").write_text(
            "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + page["body"],
            encoding="utf-8")
        slugs.append(page["slug"])
    return slugs


def insert_pages(db, n: int, seed: int = 1) -> None:
    """Insert n pages straight into the pages table, numbered on from the last page there."""
    base = datetime(2024, 1, 1)
    with db.writing() as session:
        first = (session.scalar(select(Page.id).order_by(Page.id.desc()).limit(1)) or 0) + 1
        batch: list[dict[str, Any]] = []
        for page in pages(n, seed, first):
            number = page.pop("number")
            batch.append(dict(page, id=number, revision=1, created_at=base - timedelta(days=400),
                              updated_at=base - timedelta(minutes=number * 7)))
            if len(batch) >= 1000:
                session.execute(insert(Page), batch)
                batch = []
        if batch:
            session.execute(insert(Page), batch)
