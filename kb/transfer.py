"""Import and export of the content format: Markdown files with YAML front matter, tours as YAML.

The format is described in docs/content-format.md. An import is all or nothing: every file is read and checked
first, and the first problem aborts the whole import with the file and line named; nothing is written.
Export writes the same format, so export followed by import into an empty instance gives the same knowledge base.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from kb import pages, tours
from kb.access import Viewer
from kb.errors import ImportFailed, InvalidFields, KBError
from kb.models import Page, User
from kb.processes import die_with_parent
from kb.render import render
from kb.slugs import slugify
from kb.yamlfile import MAX_YAML_BYTES, Dumper, load_yaml, read_text

PAGE_KEYS = ("title", "slug", "kind", "tags", "visibility", "readers", "owner", "sources", "review_every",
             "verified_by", "verified_on", "fields")
SKIPPED_NAMES = {"readme.md"}
MAX_PAGE_FILE_BYTES = pages.MAX_BODY_BYTES + MAX_YAML_BYTES + 1024  # the largest body, front matter and its lines


@dataclass
class ParsedPage:
    path: str
    slug: str
    state: pages.PageState
    owner: str | None = None
    review_every: int | None = None
    verified_by: str | None = None
    verified_on: str | None = None
    html: str | None = None
    links: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    tours: int = 0
    warnings: list[str] = field(default_factory=list)


def split_front_matter(text: str, where: str) -> tuple[str, int, str]:
    """(front matter YAML, line number where it starts, body). The file must start with a '---' line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise ImportFailed(f"{where}:1", "the file must start with a '---' line opening the front matter")
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return "\n".join(lines[1:i]), 2, "\n".join(lines[i + 1:]).lstrip("\n")
    raise ImportFailed(f"{where}:1", "the front matter is never closed with a '---' line")


def _date_text(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def parse_page_file(path: Path, where: str) -> ParsedPage:
    """Read one page file; ImportFailed names the file and line of the first problem."""
    text = read_text(path, where, limit=MAX_PAGE_FILE_BYTES)
    front, first_line, body = split_front_matter(text, where)
    meta, lines = load_yaml(front, where, first_line)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ImportFailed(f"{where}:{first_line}", "the front matter must be a mapping of keys to values")

    def fail(key: str, problem: str) -> ImportFailed:
        line = lines.get(key) or lines.get(key.split(".")[0]) or first_line
        return ImportFailed(f"{where}:{line}", problem)

    for key in meta:
        if key not in PAGE_KEYS:
            raise fail(str(key), f"unknown key {key!r} (known keys: {', '.join(PAGE_KEYS)})")
    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        raise fail("title", "every page needs a title")
    slug = slugify(str(meta.get("slug") or title))
    if not slug:
        raise fail("slug" if meta.get("slug") else "title", "the title has no letters or digits to make an address")
    fields = meta.get("fields") or {}
    if isinstance(fields, dict):
        fields = {k: _normalise_dates(v) for k, v in fields.items()}
    state = pages.PageState(
        title=title, kind=meta.get("kind") or "page", fields=fields, tags=meta.get("tags") or [],
        visibility=meta.get("visibility") or "public", readers=meta.get("readers") or [],
        sources=meta.get("sources") or [], body=body)
    try:
        state = pages.clean_state(state)
    except InvalidFields as e:
        key, problem = next(iter(e.errors.items()))
        raise fail(key, f"{key} {problem}") from None
    except KBError as e:
        raise fail("title", e.message) from None
    review = meta.get("review_every")
    if review is not None and (not isinstance(review, int) or isinstance(review, bool) or review < 1):
        raise fail("review_every", "review_every must be a whole number of days")
    verified_on = meta.get("verified_on")
    if verified_on is not None:
        from kb.kinds import normalize_date

        try:
            verified_on = normalize_date(verified_on)
        except ValueError as e:
            raise fail("verified_on", f"verified_on {e}") from None
    return ParsedPage(where, slug, state, meta.get("owner"), review, meta.get("verified_by"), verified_on)


def _normalise_dates(value: Any) -> Any:
    if isinstance(value, list):
        return [_normalise_dates(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise_dates(v) for k, v in value.items()}
    return _date_text(value)


def _render_one(body: str) -> tuple[str, list[str]]:
    r = render(body)
    return r.html, list(r.links)


def find_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(page files, tour files) under root, in a stable order.

    Symbolic links are followed only where they stay inside root: a link (to a file or a folder) that leads outside
    it aborts the import with ImportFailed naming the link, so an import never reads a file outside the folder it
    was given. Hidden files and folders (names starting with '.') are not read at all."""
    real_root = os.path.realpath(root)
    page_files, tour_files = [], []
    seen_dirs, seen_files = {real_root}, set()

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == real_root or real.startswith(real_root + os.sep)

    def refuse(path: str) -> ImportFailed:
        shown = os.path.relpath(path, root.parent) if root.parent != root else path
        return ImportFailed(shown, f"is a symbolic link to {os.path.realpath(path)}, outside the import folder; "
                                   "copy the file into the folder instead")

    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in list(dirs):
            path = os.path.join(folder, name)
            if name.startswith("."):
                dirs.remove(name)
            elif os.path.islink(path):
                if not inside(path):
                    raise refuse(path)
                if os.path.realpath(path) in seen_dirs:  # a loop, or a folder already read
                    dirs.remove(name)
                    continue
            seen_dirs.add(os.path.realpath(path))
        for name in files:
            path = os.path.join(folder, name)
            if name.startswith("."):
                continue
            if os.path.islink(path) and not inside(path):
                raise refuse(path)
            if not os.path.isfile(path) or os.path.realpath(path) in seen_files:
                continue
            seen_files.add(os.path.realpath(path))
            p = Path(path)
            rel = p.relative_to(root)
            if rel.parts[0] == "tours" and p.suffix in (".yaml", ".yml"):
                tour_files.append(p)
            elif p.suffix == ".md" and p.name.lower() not in SKIPPED_NAMES:
                page_files.append(p)
    return sorted(page_files), sorted(tour_files)


def parse_tree(root: Path, progress: Callable[[int, int], None] | None = None) -> tuple[list[ParsedPage], list]:
    """Read and check every file under root. Raises ImportFailed at the first bad file."""
    if not root.is_dir():
        raise ImportFailed(str(root), "is not a folder")
    page_files, tour_files = find_files(root)
    parsed: list[ParsedPage] = []
    seen: dict[str, str] = {}
    for i, path in enumerate(page_files, 1):
        where = str(path.relative_to(root.parent)) if root.parent != root else str(path)
        p = parse_page_file(path, where)
        if p.slug in seen:
            raise ImportFailed(where, f"the page address {p.slug!r} is already used by {seen[p.slug]}")
        seen[p.slug] = where
        parsed.append(p)
        if progress:
            progress(i, len(page_files))
    tour_specs = [tours.parse_tour_file(path, str(path.relative_to(root.parent))) for path in tour_files]
    return parsed, tour_specs


def import_tree(session: Session, viewer: Viewer, root: Path, *,
                progress: Callable[[str, int, int], None] | None = None, workers: int | None = None) -> ImportReport:
    """Import every page and tour under root in the caller's transaction. All or nothing."""
    parsed, tour_specs = parse_tree(root, (lambda i, n: progress("read", i, n)) if progress else None)
    taken = pages.existing_slugs(session, [p.slug for p in parsed]) | set(
        session.scalars(select(Page.slug).where(Page.slug.in_([p.slug for p in parsed]))))
    report = ImportReport()
    batch: list[tuple[ParsedPage, str, list[str]]] = []

    def flush_new() -> None:
        try:
            pages.create_pages(session, viewer, [pages.NewPage(p.slug, p.state, html, links, f"Imported from {p.path}")
                                                 for p, html, links in batch])
        except KBError as e:
            raise ImportFailed(batch[0][0].path, e.message) from None
        report.created += len(batch)
        batch.clear()

    # Rendering (Markdown + sanitising) is the slow part and runs on every core while this process writes.
    for i, (p, (html, links)) in enumerate(zip(parsed, _rendered(parsed, workers)), 1):
        if p.slug in taken:
            _import_existing(session, viewer, p, html, links, report)
        else:
            batch.append((p, html, links))
            if len(batch) >= 500:
                flush_new()
        if progress and (i % 100 == 0 or i == len(parsed)):
            progress("import", i, len(parsed))
    if batch:
        flush_new()
    _apply_people(session, parsed, report)
    session.flush()
    report.tours = tours.apply_tour_specs(session, viewer, tour_specs)
    session.flush()
    return report


def _import_existing(session: Session, viewer: Viewer, p: ParsedPage, html: str, links: list[str],
                     report: ImportReport) -> None:
    existing = session.scalar(select(Page).where(Page.slug == p.slug))
    if existing is not None and existing.deleted_at is None and _same(existing, p.state):
        report.unchanged += 1
        return
    base = existing.revision if existing is not None and existing.deleted_at is None else None
    try:
        _, created = pages.save_page(session, viewer, p.slug, p.state, base, f"Imported from {p.path}",
                                     html=html, body_links=links)
    except KBError as e:
        raise ImportFailed(p.path, e.message) from None
    if created:
        report.created += 1
    else:
        report.updated += 1


def _apply_people(session: Session, parsed: list[ParsedPage], report: ImportReport) -> None:
    """Owners, verifiers and review intervals named in front matter."""
    from datetime import datetime

    wanted = [p for p in parsed if p.owner or p.verified_by or p.review_every]
    if not wanted:
        return
    users = {u.name: u for u in session.scalars(select(User))}
    by_slug = {pg.slug: pg for pg in session.scalars(select(Page).where(Page.slug.in_([p.slug for p in wanted])))}
    for p in wanted:
        page = by_slug[p.slug]
        for attr, name in (("owner_id", p.owner), ("verified_by_id", p.verified_by)):
            if name:
                user = users.get(name)
                if user is None:
                    report.warnings.append(f"{p.path}: no user named {name!r}; {attr.split('_')[0]} left empty")
                else:
                    setattr(page, attr, user.id)
        if p.review_every:
            page.review_every = p.review_every
        if p.verified_on and page.verified_by_id:
            page.verified_on = datetime.fromisoformat((p.verified_on + "-01-01")[:10])
            page.verified_revision = page.revision


def _same(page: Page, state: pages.PageState) -> bool:
    return pages.PageState.of(page) == state


def _rendered(parsed: list[ParsedPage], workers: int | None) -> Iterable:
    """(html, links) for each page in order, rendered on every core for big imports (by worker processes that die
    with this one)."""
    workers = workers if workers is not None else (os.cpu_count() or 1)
    bodies = [p.state.body for p in parsed]
    if workers > 1 and len(bodies) > 200:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            yield from pool.map(_render_one, bodies, chunksize=32)
    else:
        for body in bodies:
            yield _render_one(body)


def page_document(page: Page) -> str:
    """One page in the content format (front matter + body)."""
    meta: dict[str, Any] = {"title": page.title, "slug": page.slug, "kind": page.kind}
    if page.tags:
        meta["tags"] = list(page.tags)
    meta["visibility"] = page.visibility
    if page.readers:
        meta["readers"] = list(page.readers)
    if page.owner is not None:
        meta["owner"] = page.owner.name
    if page.sources:
        meta["sources"] = list(page.sources)
    if page.review_every and page.review_every != 180:
        meta["review_every"] = page.review_every
    if page.verified_by is not None and page.verified_on is not None:
        meta["verified_by"] = page.verified_by.name
        meta["verified_on"] = page.verified_on.date().isoformat()
    if page.fields:
        meta["fields"] = page.fields
    front = yaml.dump(meta, Dumper=Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    body = page.body if page.body.endswith("\n") or not page.body else page.body + "\n"
    return f"---\n{front}---\n{body}"


def export_tree(session: Session, viewer: Viewer, root: Path,
                progress: Callable[[str, int, int], None] | None = None) -> tuple[int, int]:
    """Write every page and tour the viewer may read under root. Returns (pages, tours) written."""
    from kb import access

    root.mkdir(parents=True, exist_ok=True)
    readable = list(session.scalars(access.readable_pages(viewer).order_by(Page.slug)))
    readable = access.filter_readable(viewer, readable)
    for i, page in enumerate(readable, 1):
        (root / f"{page.slug}.md").write_text(page_document(page), encoding="utf-8")
        if progress:
            progress("export", i, len(readable))
    n_tours = tours.export_tours(session, viewer, root / "tours")
    return len(readable), n_tours
