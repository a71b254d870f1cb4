"""The bundled corpus in content/: it imports cleanly, every page is sourced, kinds are covered, links resolve.

Fidelity to the five source documents ("seeds") is checked too: every source names a seed and one of its sections,
and no run of more than 20 words is copied from a seed unless it is inside quotation marks. The seeds live outside
the repository, in a `shared/seeds` folder beside it (or beside a folder above it); the checks that read them are
skipped, with a reason, when that folder is absent.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kb import kinds, pages, render, transfer
from kb.cli import system_viewer
from kb.models import Link, Page, Tour

CONTENT = Path(__file__).resolve().parent.parent / "content"


def _find_seeds() -> Path | None:
    for parent in Path(__file__).resolve().parents[1:]:
        candidate = parent / "shared" / "seeds"
        if candidate.is_dir() and any(candidate.glob("*.txt")):
            return candidate
    return None


SEEDS = _find_seeds()
needs_seeds = pytest.mark.skipif(
    SEEDS is None, reason="the source documents (a shared/seeds folder beside the repository) are not here")

# How a source line names each seed (by its title), and the seed's section and subsection headings. A source must
# name one seed and at least one of that seed's headings.
SEED_TITLES = {
    "000": "Learning Partnership Documentation",
    "001": "School Districts as Learning Systems",
    "002": "Partners at Every Level",
    "003": "Fresno-Long Beach Learning Partnership",
    "004": "cross-case organizational analysis of K-20 partnership",
}
SEED_SECTIONS = {
    "000": [
        "Acknowledgements", "Overview", "The Learning Partnership's Conception", "TLP's Elements",
        "TLP's co-design principle", "Documentation", "TLP Implementation and Outcomes in Minneapolis",
        "District context challenges", "District outcomes",
        "Lessons for the Field: Implementing an ambitious district reform vision",
        "Lessons for the Field: Co-design partnership as a change strategy",
        "Lessons for the Field: national capacity for a district reform initiative",
    ],
    "001": [
        "Introduction", "Districts as Social Learning Systems: A Guiding Framework", "Practice grounds learning",
        "Communities of practice mediate professional learning",
        "Organization learning systems coordinate community knowledge",
        "Problems of Practice in District Learning: Proposed Research Areas",
        "I. Building Evidence-based Practice in School Systems", "Multiple meanings and sources of evidence",
        "Using data to focus and evaluate improvement efforts", "Implementing research-based programs and practices",
        "Using evidence from practice to create new knowledge",
        "Evidence-based system practice: professional community and system levels",
        "Developing evidence-based practice in communities of practice",
        "Creating systems for knowledge sharing across professional communities",
        "II. Developing and Managing Partnerships for System Learning",
        "Selecting partners strategically", "Forming partnerships at the right strategic moment",
        "Working strategically with multiple partners", "Collaboration on reform design, evaluation, and scale up",
        "Diagnosing district learning needs and assessing progress", "Spreading learning throughout the system",
        "Partnership staging", "Sustaining learning practices", "Determining longevity and role changes",
        "III. Sustaining System Learning Amidst Leadership Churn", "Leadership turnover effects on system learning",
        "Strategies for managing leader turnover", "Learning from the knowledge stored in communities of practice",
        "Spreading practice-based leadership knowledge throughout the system", "Planning leadership succession",
        "Conclusions and Recommendations", "Design principles", "Substantive Research Foci", "Research activities",
        "Next Steps", "Appendix: Informants for Research Agenda on School Districts as Learning Systems",
    ],
    "002": [
        "How Partnerships Work", "Partners in Action", "Build relationships", "Make time", "Develop leadership",
        "Pursue a path", "Keep on keeping on", "Engage stakeholders", "Demand accountability",
    ],
    "003": [
        "Series Overview", "A New Trend – Districts Learning Together", "The Fresno-Long Beach Learning Partnership",
        "About the Series", "Key Lessons from the Partnership", "Identifying common goals and metrics",
        "Building a Partnership team", "Developing relationships and trust", "Acknowledging multiple models for learning",
        "Deepening the culture of evidence-based practice", "Implications",
    ],
    "004": [
        "RETA MSP proposal language", "Introduction", "SCALE overview", "Our thesis", "Our evidence", "Our work",
        "Lit Review Findings: What is a partnership?", "Literature Review overview", "Preliminary findings",
        "View from the Field: Case Methods", "Multi-case development overview", "Case overview",
        "View from the field: The Case of Middle School Immersion Science Partnership in LA",
        "Step 2: Work practices", "Work Practice #2: Curriculum Development",
        "Case Findings: Partnership Changes with Tasks", "Initial Conclusions", "Questions for consideration",
        "Partnership Typology",
    ],
}
COPY_LIMIT = 20  # words; a longer run shared with a seed must be inside quotation marks


def _norm(text: str) -> str:
    """Lower case, one kind of dash and apostrophe, punctuation to spaces, single spaces."""
    text = text.lower().replace("’", "'").replace("‘", "'").replace("–", "-").replace("—", "-")
    text = re.sub(r"[^\w\s']|_", " ", text).replace("'", "")
    return " ".join(text.split())


def _seed_texts() -> dict[str, str]:
    return {path.name[:3]: path.read_text(encoding="utf-8") for path in sorted(SEEDS.glob("*.txt"))}


_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
_WIKI = re.compile(r"\[\[([^\[\]|]*)\|?([^\[\]]*)\]\]")
_BLOCK_START = re.compile(r"\s*([-*+]|\d+\.|#+|\|)\s")


def _unquoted_segments(text: str) -> list[str]:
    """The prose of text outside quotation marks, cut at quotations, paragraphs, list items, headings and table rows."""
    text = _WIKI.sub(lambda m: m.group(2) or m.group(1), text)
    text = _QUOTED.sub("\n\n", text)
    segments: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        current: list[str] = []
        for line in block.split("\n"):
            if _BLOCK_START.match(line) and current:
                segments.append(" ".join(current))
                current = []
            current.append(line)
        if current:
            segments.append(" ".join(current))
    return segments


def _field_strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _field_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _field_strings(v)]
    return [value] if isinstance(value, str) else []
MIN_PER_KIND = {"initiative": 10, "routine": 12, "community": 10, "lesson": 28, "leader": 5, "partnership": 6}
MIN_PAGES = 99  # the bundled corpus; raise it when pages are added
MIN_TOURS = 5


@pytest.fixture(scope="module")
def parsed():
    return transfer.parse_tree(CONTENT)


@pytest.fixture
def imported(app):
    db = app.extensions["kb_db"]
    with db.writing() as s:
        report = transfer.import_tree(s, system_viewer(s), CONTENT)
    return app, report


def test_the_corpus_imports_cleanly(imported):
    app, report = imported
    assert report.created >= MIN_PAGES and not report.warnings
    assert report.tours >= MIN_TOURS


def test_every_page_cites_its_sources(parsed):
    page_list, _ = parsed
    unsourced = [p.path for p in page_list if not p.state.sources]
    assert unsourced == []
    seeds = ("Learning Partnership", "Learning Systems", "Partners at Every Level", "Fresno", "SCALE", "Partnership")
    for p in page_list:
        assert any(any(word in s for word in seeds) for s in p.state.sources), p.path


def test_every_source_names_a_seed_and_a_section(parsed):
    page_list, _ = parsed
    titles = {seed: _norm(title) for seed, title in SEED_TITLES.items()}
    problems = []
    for p in page_list:
        for source in p.state.sources:
            text = _norm(source)
            named = [seed for seed, title in titles.items() if title in text]
            if len(named) != 1:
                problems.append(f"{p.path}: names {len(named)} seeds: {source}")
                continue
            seed = named[0]
            if "section" not in text or not any(_norm(s) in text for s in SEED_SECTIONS[seed]):
                problems.append(f"{p.path}: names no section of seed {seed}: {source}")
    assert problems == [], "\n".join(problems)


@needs_seeds
def test_the_section_list_matches_the_seeds():
    texts = {seed: _norm(text) for seed, text in _seed_texts().items()}
    assert set(texts) >= set(SEED_SECTIONS)
    for seed, sections in SEED_SECTIONS.items():
        assert _norm(SEED_TITLES[seed]) in texts[seed], seed
        missing = [s for s in sections if _norm(s) not in texts[seed]]
        assert missing == [], f"seed {seed} has no heading {missing}"


@needs_seeds
def test_no_long_run_is_copied_from_a_seed_outside_quotation_marks(parsed):
    page_list, _ = parsed
    n = COPY_LIMIT + 1
    runs: dict[tuple[str, ...], str] = {}
    for seed, text in _seed_texts().items():
        words = _norm(text).split()
        for i in range(len(words) - n + 1):
            runs.setdefault(tuple(words[i:i + n]), seed)
    copied = []
    for p in page_list:
        texts = [p.state.title, p.state.body, *_field_strings(p.state.fields or {})]
        for text in texts:
            for segment in _unquoted_segments(text):
                words = _norm(segment).split()
                for i in range(len(words) - n + 1):
                    seed = runs.get(tuple(words[i:i + n]))
                    if seed:
                        copied.append(f"{p.path} (seed {seed}): ...{' '.join(words[i:i + n])}...")
                        break
    assert copied == [], "runs of more than 20 words copied without quotation marks:\n" + "\n".join(copied)


def test_every_wiki_link_and_link_field_resolves(parsed):
    page_list, tour_specs = parsed
    slugs = {p.slug for p in page_list}
    broken = []
    for p in page_list:
        for target in render.wiki_link_targets(p.state.body):
            if target not in slugs:
                broken.append(f"{p.path}: [[{target}]]")
        for name, target in kinds.field_links(p.state.kind, p.state.fields or {}):
            if target not in slugs:
                broken.append(f"{p.path}: field {name} -> {target}")
    for tour in tour_specs:
        for i, stop in enumerate(tour.stops, 1):
            for target in render.wiki_link_targets(stop.note or ""):
                if target not in slugs:
                    broken.append(f"{tour.where}: stop {i} note [[{target}]]")
    assert broken == [], "\n".join(broken)


READING_HEADING = "## What this suggests"
READING_MARK = "*The wiki's reading of the sources, not a finding of theirs.*"


def test_the_wikis_reading_is_marked_as_such(parsed):
    """Interpretation sits under 'What this suggests', which says it is ours; the old 'Why it matters' headings are gone."""
    page_list, _ = parsed
    for p in page_list:
        body = p.state.body
        assert "## Why it matters" not in body, f"{p.path}: use '{READING_HEADING}' for the wiki's reading"
        for part in body.split(READING_HEADING + "\n")[1:]:
            assert part.lstrip("\n").startswith(READING_MARK), f"{p.path}: '{READING_HEADING}' without its mark"


def test_an_ending_marked_other_tells_its_story(parsed):
    page_list, _ = parsed
    for p in page_list:
        fields = p.state.fields or {}
        if p.state.kind == "initiative" and fields.get("ended_reason") == "other":
            assert (fields.get("ended_story") or "").strip(), f"{p.path}: ended_reason other needs an ended_story"


def test_no_sponsor_without_a_leader_page(parsed):
    """Sponsors feed a leader's 'initiatives started'; each must be a leader page, never a guess left dangling."""
    page_list, _ = parsed
    kinds_by_slug = {p.slug: p.state.kind for p in page_list}
    for p in page_list:
        for sponsor in (p.state.fields or {}).get("sponsors") or []:
            assert kinds_by_slug.get(sponsor) == "leader", f"{p.path}: sponsor {sponsor} is not a leader page"


def test_each_kind_has_enough_pages(parsed):
    page_list, _ = parsed
    counts = {k: 0 for k in kinds.KINDS}
    for p in page_list:
        counts[p.state.kind] += 1
    for kind, minimum in MIN_PER_KIND.items():
        assert counts[kind] >= minimum, f"{kind}: {counts[kind]} pages, need {minimum}"
    assert counts["page"] >= 26
    assert 1 <= counts["handover"]
    assert len(page_list) >= MIN_PAGES


def test_handover_examples_are_labelled_as_worked_examples(parsed):
    page_list, _ = parsed
    for p in page_list:
        if p.state.kind == "handover":
            assert "example" in p.state.title.lower() and "example" in p.state.body.lower()


def test_tour_stops_point_to_pages_in_the_corpus(parsed):
    page_list, tour_specs = parsed
    slugs = {p.slug for p in page_list}
    assert len(tour_specs) >= MIN_TOURS
    for tour in tour_specs:
        assert tour.stops, tour.where
        for i, stop in enumerate(tour.stops, 1):
            assert stop.page in slugs, f"{tour.where}: stop {i} names missing page {stop.page}"
            assert stop.note.strip(), f"{tour.where}: stop {i} has no curator's note"


def test_at_most_five_percent_of_links_are_wanted(imported):
    app, _ = imported
    with app.extensions["kb_db"].reading() as s:
        total = s.scalar(select(func.count(Link.id)))
        viewer = system_viewer(s)
        wanted = sum(n for _, n in pages.wanted_pages(s, viewer, limit=10_000))
    assert total > 200
    assert wanted / total <= 0.05, f"{wanted} of {total} links point to missing pages"


def test_front_matter_dates_parse(parsed):
    page_list, _ = parsed
    for p in page_list:
        kind = kinds.KINDS[p.state.kind]
        for f in kind.fields:
            value = (p.state.fields or {}).get(f.name)
            if f.type == "date" and value:
                kinds.normalize_date(value)
            if f.type == "tenures":
                for t in value or []:
                    for key in ("from", "to"):
                        if t.get(key):
                            kinds.normalize_date(t[key])


def test_the_writing_assessment_case_says_it_is_an_amalgam(imported):
    app, _ = imported
    with app.extensions["kb_db"].reading() as s:
        case = s.scalar(select(Page).where(Page.slug == "writing-assessment-case"))
        assert case is not None and "amalgam" in case.body.lower()
        assert s.scalar(select(func.count(Tour.id))) >= MIN_TOURS
