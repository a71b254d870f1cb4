"""Tours in a real browser (headless Chromium through Playwright): following a tour from the keyboard, reordering
stops as a curator, and printing the transition binder to PDF.

The app runs with CSRF protection on, as in production, on a werkzeug server in a thread (conftest's LiveServer),
driven by the session's Chromium (conftest's `chromium`).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
import zlib

import pytest
from conftest import PASSWORD, LiveServer, viewer_for
from kb import pages, tours

pytestmark = pytest.mark.browser


@pytest.fixture
def site(make_app):
    """A running app with CSRF on and a three-stop tour; yields (base URL, app)."""
    app = make_app(WTF_CSRF_ENABLED=True)
    admin = viewer_for(app, "admin")
    with app.extensions["kb_db"].writing() as s:
        for title, kind, fields, body, sources in (
            ("Writing assessment", "initiative", {"status": "sustained", "started": "1998"},
             "Teachers built rubrics and **scored together**.", ["Seed 001, section III"]),
            ("Leadership churn", "page", {}, "Superintendents stay 2.5 to 4 years.", ["Research agenda, introduction"]),
            ("Scoring routine", "routine", {"cadence": "each June"}, "Benchmark papers first.", []),
        ):
            pages.save_page(s, admin, None, pages.PageState(title=title, kind=kind, fields=fields, body=body,
                                                            sources=sources), None)
        tours.save_tour(s, viewer_for(app, "curator"), tours.clean_spec({
            "title": "First weeks", "audience": ["reader"], "minutes": 20, "description": "Read these **first**.",
            "stops": [{"page": "writing-assessment", "note": "Teachers *loved* it.", "question": "Who scored?"},
                      {"page": "leadership-churn", "note": "Why leaders leave."},
                      {"page": "scoring-routine", "note": "The routine that carried it."}]}, ""))
    server = LiveServer(app)
    yield server.base, app
    server.stop()


def sign_in(chromium, base: str, name: str):
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/")
    return context, page, errors


def test_follow_a_tour_from_start_to_end_with_the_keyboard(chromium, site):
    base, _ = site
    context, page, errors = sign_in(chromium, base, "reader")
    try:
        assert "First weeks" in page.locator(".home-tour").inner_text()  # the home page suggests the tour
        page.goto(f"{base}/tours")
        page.get_by_role("link", name=re.compile("^Start")).click()
        page.wait_for_url(f"{base}/tours/first-weeks/stops/1")
        assert "Teachers loved it." in page.locator(".curator-note").inner_text()
        assert "Who scored?" in page.locator(".curator-note").inner_text()
        assert "scored together" in page.locator(".page-body").inner_text()
        assert page.locator(".field-panel").is_visible()

        for number, title in ((1, "Writing assessment"), (2, "Leadership churn"), (3, "Scoring routine")):
            assert page.locator("h1").inner_text() == title
            assert f"Stop {number} of 3" in page.locator(".tour-bar").inner_text()
            assert page.locator("#tour-progress").get_attribute("value") == str(number - 1)
            if number == 2:
                # The arrow keys move between stops; the stop already read says so.
                page.keyboard.press("ArrowLeft")
                page.wait_for_url(f"{base}/tours/first-weeks/stops/1")
                assert "Read" in page.locator(".tour-nav").inner_text()
                page.keyboard.press("ArrowRight")
                page.wait_for_url(f"{base}/tours/first-weeks/stops/2")
            page.locator("#mark-read").focus()
            page.keyboard.press("Enter")
            page.wait_for_url(f"{base}/tours/first-weeks/stops/{number + 1}" if number < 3
                              else f"{base}/tours/first-weeks")

        assert "You have read every stop" in page.locator("main").inner_text()
        assert page.locator("#tour-progress").get_attribute("value") == "3"
        assert page.locator(".stop-status--read").count() == 3
        page.goto(f"{base}/")
        assert page.locator(".home-tour").count() == 0  # nothing left to continue
        assert errors == []
    finally:
        context.close()


def test_a_curator_reorders_stops_previews_a_note_and_adds_a_stop_by_title(chromium, site):
    base, app = site
    with app.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer_for(app, "admin"), None, pages.PageState(title="Knowledge activists"), None)
    context, page, errors = sign_in(chromium, base, "curator")
    try:
        # Title suggestions come from the search engine's /api/suggest; answer for it here so the test is about
        # the editor alone.
        page.route(re.compile(r".*/api/suggest\?.*"), lambda route: route.fulfill(json={"suggestions": [
            {"slug": "leadership-churn", "title": "Leadership churn", "kind": "page"},
            {"slug": "knowledge-activists", "title": "Knowledge activists", "kind": "page"}]}))
        page.goto(f"{base}/tours/first-weeks/edit")
        titles = lambda: page.locator("[data-stop-row] [data-stop-title]").all_inner_texts()  # noqa: E731
        assert titles() == ["Writing assessment", "Leadership churn", "Scoring routine"]

        move_up = page.get_by_role("button", name="Move “Scoring routine” up")
        move_up.click()
        assert titles() == ["Writing assessment", "Scoring routine", "Leadership churn"]
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Move “Scoring routine” up"
        page.keyboard.press("Enter")  # keep going from the keyboard: it is now the first stop
        assert titles() == ["Scoring routine", "Writing assessment", "Leadership churn"]
        assert page.locator("[data-stop-number]").all_inner_texts() == ["Stop 1", "Stop 2", "Stop 3"]
        assert page.get_by_role("button", name="Move “Scoring routine” up").is_disabled()
        assert "not saved yet" in page.locator("#unsaved-note").inner_text()

        note = page.locator("textarea[name=stop_note]").first
        note.fill("The routine *carried* it.")
        page.locator("#note-preview-2 em", has_text="carried").wait_for()

        page.locator("#add_page").type("know")
        page.wait_for_selector("#add-stop-suggestions li")
        # Stops already in the tour are not offered again.
        offered = page.locator("#add-stop-suggestions li").all_inner_texts()
        assert len(offered) == 1 and offered[0].startswith("Knowledge activists")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Added a stop")
        assert titles() == ["Scoring routine", "Writing assessment", "Leadership churn", "Knowledge activists"]
        assert page.evaluate("document.activeElement.name") == "stop_note"  # ready to write the new note

        page.get_by_role("button", name="Remove the stop “Leadership churn”").click()
        assert titles() == ["Scoring routine", "Writing assessment", "Knowledge activists"]
        page.fill("#comment", "routine first")
        page.get_by_role("button", name="Save tour").click()
        page.wait_for_url(f"{base}/tours/first-weeks")
        assert page.locator(".stop-item__title").all_inner_texts() == [
            "Scoring routine", "Writing assessment", "Knowledge activists"]
        with app.extensions["kb_db"].reading() as s:
            tour = tours.get_tour(s, "first-weeks")
            assert tour.revision == 2 and tour.stops[0].note == "The routine *carried* it."
        assert errors == []
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------------------------
# Reading the text of a PDF

def pdf_text(data: bytes) -> str:
    """The PDF's text: poppler's pdftotext when installed, else the small reader below."""
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()
    return pdf_text_without_poppler(data)


def pdf_text_without_poppler(data: bytes) -> str:
    """Text of a PDF as Chromium (Skia) writes it: Type0 fonts with ToUnicode maps and hex glyph strings."""
    objects = {int(n): body for n, body in re.findall(rb"(\d+) 0 obj(.*?)endobj", data, re.S)}

    def stream(body: bytes) -> bytes:
        m = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
        if not m:
            return b""
        return zlib.decompress(m.group(1)) if b"/FlateDecode" in body[:m.start()] else m.group(1)

    def to_unicode(cmap: bytes) -> dict[int, str]:
        table: dict[int, str] = {}
        for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
            for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                table[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
        for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
            for lo, hi, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                for k, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                    table[code] = chr(int(dst, 16) + k)
        return table

    fonts = {n: to_unicode(stream(objects[int(m.group(1))])) for n, body in objects.items()
             if (m := re.search(rb"/ToUnicode (\d+) 0 R", body))}
    out: list[str] = []
    for body in objects.values():
        contents = re.search(rb"/Contents (\d+) 0 R", body)
        if not re.search(rb"/Type /Page\b(?!s)", body) or not contents:
            continue
        names = {name: fonts.get(int(ref), {}) for name, ref in re.findall(rb"/(\w+) (\d+) 0 R", body)}
        font: dict[int, str] = {}
        for token in re.finditer(rb"/(\w+) [\d.]+ Tf|<([0-9A-Fa-f]*)>|\bET\b", stream(objects[int(contents.group(1))])):
            if token.group(1):
                font = names.get(token.group(1), {})
            elif token.group(2) is not None:
                glyphs = token.group(2).decode()
                out.append("".join(font.get(int(glyphs[i:i + 4], 16), "") for i in range(0, len(glyphs), 4)))
            else:
                out.append("\n")
        out.append("\f")
    return "".join(out)


def squeeze(text: str) -> str:
    """Compare text regardless of line breaks, spacing and ligatures (ﬁ)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def test_print_the_binder_to_pdf_with_every_stop(chromium, site):
    base, _ = site
    context, page, errors = sign_in(chromium, base, "reader")
    try:
        page.goto(f"{base}/tours/first-weeks/print")
        assert page.get_by_role("button", name="Print or save as PDF").is_visible()
        pdf = page.pdf(format="A4")
        text = pdf_text(pdf)
        for title in ("Writing assessment", "Leadership churn", "Scoring routine"):
            assert squeeze(title) in squeeze(text), title
        for part in ("Transition binder", "Read these first.", "Contents", "Teachers loved it.",
                     "scored together", "each June", "Seed 001, section III", "Research agenda, introduction"):
            assert squeeze(part).lower() in squeeze(text).lower(), part
        # Navigation is hidden in print, and each stop starts a new page (cover, contents, 3 stops, sources).
        for hidden in ("Recent changes", "Sign out", "Print or save as PDF", "Back to the tour"):
            assert squeeze(hidden) not in squeeze(text), hidden
        pages_text = [p for p in text.split("\f") if p.strip()]
        assert len(pages_text) >= 6
        assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == len(pages_text)
        for number, title in enumerate(("Writing assessment", "Leadership churn", "Scoring routine"), 1):
            starts = squeeze(f"Stop {number} of 3").lower()
            assert any(squeeze(p).lower().startswith(starts) and squeeze(title) in squeeze(p) for p in pages_text), \
                f"stop {number} does not start a page"
        assert errors == []
    finally:
        context.close()


def test_the_pdf_reader_without_poppler_finds_every_title(chromium, site):
    """The fallback reader must stay good enough to stand in for pdftotext where poppler is not installed."""
    base, _ = site
    context, page, _ = sign_in(chromium, base, "reader")
    try:
        page.goto(f"{base}/tours/first-weeks/print")
        pdf = page.pdf(format="A4")
    finally:
        context.close()
    text = pdf_text_without_poppler(pdf)
    for title in ("First weeks", "Writing assessment", "Leadership churn", "Scoring routine", "Seed 001, section III"):
        assert squeeze(title) in squeeze(text), title
