"""One way to make markup: user text becomes HTML only in kb.render, as markupsafe.Markup, and templates print it
as it is, never with |safe; everything else a template prints is escaped.

The first tests read the code: no |safe in templates, Markup made only in kb.render (with the exceptions listed
below), Markdown and bleach imported only there. The others send hostile text through every surface that shows
rendered HTML and check that the template got Markup, printed it verbatim, and that the page stays inert as a browser
parses it (html5lib, the HTML5 algorithm).
"""
from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import html5lib
import pytest
from flask import template_rendered
from markupsafe import Markup

from conftest import viewer_for
from kb import tours
from test_render import SAFE_SCHEMES, URL_ATTRIBUTES, XSS_PAYLOADS, assert_safe, browser_url, local_name

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
KB = ROOT / "kb"

# Python modules that may still make Markup outside kb/render.py, and why. Each is temporary: delete its line when
# its code stops calling Markup(), and do not add one without a reason as good.

def _python_files():
    return sorted(p for p in KB.rglob("*.py") if "__pycache__" not in p.parts)


def _where(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------------------------------------------
# The code

def test_templates_never_say_safe():
    found = []
    for path in sorted(p for p in TEMPLATES.rglob("*") if p.is_file()):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\|\s*safe\b|autoescape\s+false|\bMarkup\b", line):
                found.append(f"{_where(path)}:{n}: {line.strip()}")
    assert found == [], "rendered HTML reaches templates as Markup; print it without |safe:\n" + "\n".join(found)


def _markup_calls(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "Markup")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "Markup"))]


def test_markup_is_made_only_in_kb_render():
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # a renamed Markup would slip past the check below
            if isinstance(node, ast.ImportFrom) and any(a.name == "Markup" and a.asname for a in node.names):
                found.append(f"{_where(path)}:{node.lineno}: Markup imported under another name")
        if _where(path) in {"kb/render.py"}:
            continue
        found += [f"{_where(path)}:{line}: Markup(...)" for line in _markup_calls(tree)]
    assert found == [], "only kb.render makes Markup (render, sanitise, trusted, mark_wanted):\n" + "\n".join(found)


def test_only_kb_render_turns_text_into_html():
    """Markdown and the sanitiser are used in one module, so every piece of user text that becomes HTML goes
    through its one sanitising function."""
    found = []
    for path in _python_files():
        if _where(path) == "kb/render.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{_where(path)}:{node.lineno}: imports {n}" for n in names
                      if n.split(".")[0] in {"markdown", "bleach", "html5lib"}]
    assert found == []


# ---------------------------------------------------------------------------------------------------------------
# The surfaces

# The links first: an unclosed raw block among the payloads (<noscript>, <textarea>...) keeps what follows as text.
HOSTILE = "See [[Hidden plan]], [[Nowhere yet]] and [[Plain page]].\n\n" + "\n\n".join(XSS_PAYLOADS)
# Without wiki links the stored HTML needs no per-reader rewrite: the other way to Markup (kb.render.trusted).
UNLINKED = "\n\n".join(p for p in XSS_PAYLOADS if "[[" not in p)
HOSTILE_TITLE = 'Notes <img src=x onerror=alert(1)> & "quotes"'

# Templates that print HTML made by kb.render, and where in their context it is.
# Page views print stored fragments made by templates/wiki/_stored.html (field panel, text, backlinks) around the
# sanitised text; they hold more elements than the sanitiser allows in user text.
STORED_FRAGMENTS = {"wiki/view.html"}

RENDERED_HTML = {
    "wiki/view.html": lambda c: [c["content"], c["backlinks"]],
    "wiki/revision.html": lambda c: [c["html"]],
    "tours/index.html": lambda c: list(c["descriptions"].values()),
    "tours/overview.html": lambda c: [c["description"]],
    "tours/stop.html": lambda c: [c["note"], c["html"]],
    "tours/binder.html": lambda c: [c["description"]] + [v for s in c["stops"] for v in (s["note"], s["html"])],
    "tours/edit.html": lambda c: [c["description_preview"]] + [row["preview"] for row in c["rows"]],
}


@pytest.fixture
def hostile(app, make_page):
    """Pages, a leader, an initiative and a tour full of hostile text; returns (page slug, tour slug)."""
    make_page("Plain page", body="Nothing to see.")
    make_page("Hidden plan", visibility="restricted", as_user="curator", body="Secret.")
    slug = make_page(HOSTILE_TITLE, body=HOSTILE, sources=['<script>alert("source")</script>'])
    make_page("Unlinked notes", body=UNLINKED)
    make_page('Leader <script>alert(1)</script>', kind="leader", fields={"tenures": [
        {"role": '<b onmouseover="alert(1)">Chief</b>', "from": "2001", "to": "2004",
         "left_because": "<img src=x onerror=alert(1)>"}]})
    make_page('Pilot "><svg onload=alert(1)>', kind="initiative",
              fields={"status": "ended", "started": "2002", "ended": "2003", "ended_reason": "leader-change"})
    data = {"title": "Hostile tour", "description": HOSTILE, "audience": ["superintendent"], "minutes": 5,
            "stops": [{"page": slug, "note": HOSTILE, "question": "<script>alert('q')</script>?"},
                      {"page": "plain-page", "note": "[[Hidden plan]] <iframe src=x></iframe>"}]}
    with app.extensions["kb_db"].writing() as s:
        tour = tours.save_tour(s, viewer_for(app, "curator"), tours.clean_spec(data, ""), "test").slug
    return slug, tour


@pytest.fixture
def rendered(app):
    """The templates rendered during a test, with their contexts."""
    seen = []

    def record(sender, template, context, **extra):
        seen.append((template.name, context))

    template_rendered.connect(record, app)
    yield seen
    template_rendered.disconnect(record, app)


FORBIDDEN_IN_PAGES = {"iframe", "object", "embed", "base", "frame", "frameset", "applet", "style", "math"}


def assert_inert(document: str, where: str) -> None:
    """The whole page as a browser parses it: no handler, inline style or script, no dangerous element or URL.
    The site's own scripts are files under /static/."""
    root = html5lib.parse(document, treebuilder="etree", namespaceHTMLElements=False)
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        tag = local_name(el.tag)
        assert tag not in FORBIDDEN_IN_PAGES, f"<{tag}> in {where}"
        if tag == "script":
            assert el.get("src", "").startswith("/static/") and not (el.text or "").strip(), f"inline script in {where}"
        if tag == "meta":
            assert (el.get("http-equiv") or "").lower() != "refresh", f"meta refresh in {where}"
        for raw, value in el.attrib.items():
            name = local_name(raw)
            assert not name.startswith("on"), f"{name}= on <{tag}> in {where}"
            assert name != "style", f"style= on <{tag}> in {where}"
            if name in URL_ATTRIBUTES or name.endswith("href"):
                scheme = re.match(r"([a-z][a-z0-9+.\-]*):", browser_url(value))
                assert scheme is None or scheme.group(1) in SAFE_SCHEMES, f"{name}={value!r} in {where}"


SURFACES = [
    ("reader", "/wiki/{page}"),
    ("reader", "/wiki/{page}/revisions/1"),
    ("reader", "/wiki/unlinked-notes"),
    ("reader", "/wiki/unlinked-notes/revisions/1"),
    ("reader", "/tours"),
    ("reader", "/tours/{tour}"),
    ("reader", "/tours/{tour}/stops/1"),
    ("reader", "/tours/{tour}/stops/2"),
    ("reader", "/tours/{tour}/print"),
    ("curator", "/tours/{tour}/edit"),
    ("reader", "/timeline"),
    ("reader", "/search?q=alert"),
]


@pytest.mark.parametrize("user,path", SURFACES, ids=[p for _, p in SURFACES])
def test_hostile_text_stays_inert_on_every_surface(client, auth, hostile, rendered, user, path):
    page, tour = hostile
    auth.login(user)
    url = path.format(page=page, tour=tour)
    for attempt in ("first", "again"):  # the second page view may come from the stored rendering
        rendered.clear()
        r = client.get(url)
        assert r.status_code == 200, url
        text = r.get_data(as_text=True)
        assert_inert(text, f"{url} ({attempt})")
        for name, context in rendered:
            for html in RENDERED_HTML.get(name, lambda c: [])(context):
                assert isinstance(html, Markup), f"{name} got {type(html).__name__}, not Markup"
                if name in STORED_FRAGMENTS:  # template output around sanitised text: inert, not only allowlisted
                    assert_inert(str(html), f"{name} on {url}")
                else:
                    assert_safe(str(html), f"{name} on {url}")
                assert str(html) in text, f"{name} did not print its rendered HTML as it is"


def test_every_template_that_prints_rendered_html_was_checked(client, auth, hostile, rendered):
    page, tour = hostile
    auth.login("curator")
    for _, path in SURFACES:
        assert client.get(path.format(page=page, tour=tour)).status_code == 200
    assert set(RENDERED_HTML) <= {name for name, _ in rendered}


def test_rendered_html_for_a_reader_marks_hidden_links_wanted(client, auth, hostile, rendered):
    page, tour = hostile
    auth.login("reader")
    client.get(f"/tours/{tour}/stops/2")
    [note] = [c["note"] for name, c in rendered if name == "tours/stop.html"]
    assert isinstance(note, Markup) and 'class="wikilink wanted" href="/wiki/hidden-plan"' in note


def test_the_preview_is_sanitised(client, auth, hostile):
    auth.login("contributor")
    r = client.post("/preview", data={"body": HOSTILE})
    assert r.status_code == 200
    html = json.loads(r.get_data(as_text=True))["html"]
    assert_safe(html, "/preview")
    assert 'class="wikilink wanted" href="/wiki/hidden-plan"' in html


def test_the_timeline_picture_alone_is_inert(client, auth, hostile):
    auth.login("reader")
    r = client.get("/timeline.svg")
    svg = ET.fromstring(r.data)  # well-formed XML
    for el in svg.iter():
        tag = local_name(el.tag)
        assert tag not in {"script", "foreignObject", "iframe", "style"}
        assert not any(local_name(a).startswith("on") for a in el.attrib), el.attrib
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any("Leader <script>alert(1)</script>" in (t or "") for t in titles)  # shown as text
