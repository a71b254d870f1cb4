"""Markdown -> safe HTML: the one place user text becomes markup (PRODUCT §4.1 wiki links, §8 security).

Every surface that shows user text as HTML (page, preview, diff, tour notes, feeds, exports) calls `render`,
or `sanitise` for HTML that did not come from Markdown. Raw HTML is allowed through Markdown only so that the
allowlist below can decide what survives; anything else is escaped and shown as text, never executed.

What comes out is `markupsafe.Markup`, so templates print it as it is and never mark anything safe; anything that is
not Markup is escaped by the template. `sanitise` is the one function that turns user text into Markup. HTML this
module produced and someone stored as text (the HTML cached per revision) becomes Markup again only through
`trusted`, and the wanted-link rewrite (`mark_wanted`) works on such HTML and returns Markup too.
"""
from __future__ import annotations

import html
import re
import threading
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote
from xml.etree.ElementTree import Element

import bleach
import markdown
from markupsafe import Markup
from bleach.html5lib_shim import Filter
from markdown.extensions import Extension
from markdown.extensions.toc import TocExtension, slugify_unicode
from markdown.inlinepatterns import InlineProcessor
from markdown.util import AtomicString

from kb.slugs import slugify

ALLOWED_TAGS = frozenset({
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "a", "em", "strong", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td",
    "img", "sup", "sub", "div", "span", "abbr",
})
ALLOWED_ATTRIBUTES = {
    "a": ["href", "title", "class", "id", "rel"],
    "img": ["src", "alt", "title"],
    "th": ["align"], "td": ["align"],
    "h1": ["id"], "h2": ["id"], "h3": ["id"], "h4": ["id"], "h5": ["id"], "h6": ["id"],
    "li": ["id"], "sup": ["id"],
    "div": ["id", "class"], "span": ["class"], "code": ["class"], "pre": ["class"],
    "ol": ["start"],
    "abbr": ["title"],  # an abbreviation without its expansion is pointless; title cannot run script
}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})  # bleach also keeps relative URLs
EXTERNAL_REL = "nofollow noopener"

# Priority 185: after code spans (190), so `[[x]]` in code stays literal, and before backslash escapes (180),
# so `[[target\|label]]` (needed inside table cells, where a bare | splits the cell) still reaches us.
_WIKI_LINK_PRIORITY = 185
# A backslash before [[ opts out of linking, as it does for every other Markdown construct.
WIKI_LINK_RE = r"(?<!\\)\[\[([^\[\]\n]+)\]\]"
_PIPE = re.compile(r"\\?\|")


@dataclass(frozen=True)
class Rendered:
    """What a page shows, and which pages it links to (for backlinks and the wanted-pages queue)."""

    html: Markup  # sanitised HTML
    links: tuple[str, ...]  # slugs of wiki-link targets in document order, de-duplicated


def _split_wiki_link(inner: str) -> tuple[str, str]:
    """`target|label` or `Title` -> (target, label); an empty label falls back to the target."""
    parts = _PIPE.split(inner, maxsplit=1)
    target = parts[0].strip()
    label = parts[1].strip() if len(parts) > 1 else ""
    return target, label or target


class _WikiLinkProcessor(InlineProcessor):
    """Turns [[...]] into <a class="wikilink">; the state is per render call, set by `render`."""

    def __init__(self, pattern: str, md: markdown.Markdown) -> None:
        super().__init__(pattern, md)
        self.links: list[str] = []

    def handleMatch(self, m: re.Match, data: str):  # noqa: N802 (Markdown's name)
        target, label = _split_wiki_link(m.group(1))
        slug = slugify(target)
        if not slug:
            # Nothing to link to: show what the user typed, untouched by other inline patterns.
            return AtomicString(m.group(0)), m.start(0), m.end(0)
        self.links.append(slug)
        el = Element("a")
        # Every link is written as existing; whether it leads anywhere depends on the reader (see mark_wanted).
        el.set("class", "wikilink")
        el.set("href", "/wiki/" + quote(slug, safe=""))
        # AtomicString: the label is shown as typed (escaped by the serialiser), not parsed for more Markdown.
        el.text = AtomicString(label)
        return el, m.start(0), m.end(0)


class _WikiLinkExtension(Extension):
    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's name)
        md.wikilinks = _WikiLinkProcessor(WIKI_LINK_RE, md)
        md.inlinePatterns.register(md.wikilinks, "kb_wikilink", _WIKI_LINK_PRIORITY)


def _new_markdown() -> markdown.Markdown:
    return markdown.Markdown(
        extensions=[
            "tables", "fenced_code", "footnotes", "sane_lists",
            # slugify_unicode: headings in any script get ids (the ASCII default would give "_1" for 東京).
            TocExtension(marker="[TOC]", slugify=slugify_unicode),
            _WikiLinkExtension(),
        ],
        # align="..." rather than the default style="text-align: ...", which the allowlist would drop.
        extension_configs={"tables": {"use_align_attribute": True}},
        output_format="html",
    )


class _ExternalLinkFilter(Filter):
    """Marks links that leave the site rel="nofollow noopener" (runs in bleach's one parse, no second pass)."""

    _NOISE = re.compile(r"[\x00-\x20\x7f-\xa0\s]+")  # what browsers ignore in a URL, as bleach strips it
    _EXTERNAL = re.compile(r"https?:|[/\\]{2}")  # absolute, or scheme-relative //host (and \\host)

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] == "StartTag" and token["name"] == "a":
                href = token["data"].get((None, "href"))
                if href and self._EXTERNAL.match(self._NOISE.sub("", href).lower()):
                    token["data"][(None, "rel")] = EXTERNAL_REL
            yield token


def _new_cleaner() -> bleach.Cleaner:
    return bleach.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        protocols=ALLOWED_PROTOCOLS,
        strip=False,  # escape disallowed tags so the author sees them, rather than silently dropping text
        strip_comments=True,
        filters=[_ExternalLinkFilter],
    )


# Building a Markdown instance costs more than converting a page, and neither it nor bleach's Cleaner is
# thread-safe, so each thread keeps one of each.
_local = threading.local()


def _markdown() -> markdown.Markdown:
    md = getattr(_local, "md", None)
    if md is None:
        md = _local.md = _new_markdown()
    return md


def _cleaner() -> bleach.Cleaner:
    cleaner = getattr(_local, "cleaner", None)
    if cleaner is None:
        cleaner = _local.cleaner = _new_cleaner()
    return cleaner


def sanitise(html_text: str) -> Markup:
    """Clean HTML against the allowlist; the last step of `render`, and for any other user HTML.

    The one sanitiser: every piece of user text that becomes HTML passes through here."""
    return Markup(_cleaner().clean(html_text or ""))


def trusted(html_from_store: str) -> Markup:
    """HTML that `render` (or `sanitise`) produced earlier and was stored as text, such as the HTML cached per
    revision, as Markup again.

    Only for HTML this module produced and stored: it is not cleaned again, so text from anywhere else (a form, a
    file, a request) must go through `render` or `sanitise` instead."""
    return Markup(html_from_store or "")


def render(text: str) -> Rendered:
    """Markdown -> sanitised HTML, every wiki link written as a link to its page (mark_wanted marks missing ones)."""
    md = _markdown()
    wiki = md.wikilinks
    wiki.links = []
    try:
        md.reset()
        body = md.convert(text or "")
        links = tuple(dict.fromkeys(wiki.links))
    finally:
        wiki.links = []
    return Rendered(html=sanitise(body), links=links)


_WANTED_TITLE = "Page not written yet"


def mark_wanted(html: str, wanted: Iterable[str]) -> Markup:
    """Mark the wiki links to these slugs as wanted, in HTML that `render` produced with every link existing.

    HTML is cached once per revision for everyone; whether a link leads anywhere depends on who is reading (a
    page they may not read must look like a page not written yet), so this runs per reader on the cached HTML.
    It only adds a class and a title to anchors that `render` wrote itself, so the result is `trusted` markup.
    """
    html = str(html)  # Markup's own replace() would escape the anchors written here
    for slug in wanted:
        href = "/wiki/" + quote(slug, safe="")
        html = html.replace(f'<a class="wikilink" href="{href}">',
                            f'<a class="wikilink wanted" href="{href}" title="{_WANTED_TITLE}">')
    return trusted(html)


# Mirrors what Markdown treats as code, so the cheap scan agrees with `render`: fenced blocks (fence at the
# start of a line, closed by the same fence) and code spans (matching backtick runs within one paragraph).
_FENCED_CODE = re.compile(r"^(?P<fence>~{3,}|`{3,})[^\n]*\n.*?(?<=\n)(?P=fence)[ ]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(?<!\\)(`+)(?:(?!\n[ \t]*\n).)+?(?<!`)\1(?!`)", re.S)
_WIKI_LINK = re.compile(WIKI_LINK_RE)


def wiki_link_targets(text: str) -> list[str]:
    """Slugs of the [[...]] links in text, cheaply (no full render), de-duplicated in order.

    Ignores links in fenced code and code spans, as `render` does; indented code blocks are not detected.
    """
    text = _CODE_SPAN.sub("", _FENCED_CODE.sub("", text or ""))
    slugs = (slugify(_split_wiki_link(m.group(1))[0]) for m in _WIKI_LINK.finditer(text))
    return list(dict.fromkeys(s for s in slugs if s))


# The HTML here is bleach's output: every attribute value is quoted, so a quoted ">" cannot end a tag early.
_TAG = re.compile(r"""<(/?)([a-zA-Z0-9]+)(?:[^>"']|"[^"]*"|'[^']*')*>""")
_BLOCK_TAGS = frozenset({
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol", "li", "dl", "dt",
    "dd", "table", "thead", "tbody", "tr", "th", "td", "div",
})
# Navigation, not content: the table of contents repeats the headings; footnote markers are numbers and arrows.
_NOT_CONTENT = re.compile(
    r'<div class="toc">.*?</div>'
    r'|<sup id="fnref[^"]*"><a class="footnote-ref"[^>]*>.*?</a></sup>'
    r'|<a class="footnote-backref"[^>]*>.*?</a>', re.S)
_SPACES = re.compile(r"\s+")


def plain_text(text: str) -> str:
    """Markdown -> plain text for search snippets and feeds. Not HTML: escape it when putting it in a page."""
    body = _NOT_CONTENT.sub("", str(render(text).html))
    # Block boundaries become spaces so words of adjacent paragraphs/cells do not run together.
    body = _TAG.sub(lambda m: " " if m.group(2).lower() in _BLOCK_TAGS else "", body)
    return _SPACES.sub(" ", html.unescape(body)).strip()


def highlight(text: str, spans: Iterable[tuple[int, int]] = ()) -> Markup:
    """Plain text as HTML, for search snippets: escaped, with <mark> around each (start, end) span of `text` that
    matched the query. Spans come in order; one that overlaps the one before or runs past the text is left out."""
    from markupsafe import Markup

    out, pos = [], 0
    for start, end in spans:
        if start < pos or end > len(text):
            continue
        out.append(html.escape(text[pos:start]))
        out.append("<mark>" + html.escape(text[start:end]) + "</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return Markup("".join(out))
