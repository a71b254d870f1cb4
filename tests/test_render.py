"""kb.render: Markdown becomes safe HTML, wiki links resolve, and no XSS payload survives.

Safety is judged the way a browser would see the output: it is parsed with html5lib (the HTML5 parsing
algorithm browsers use), parsed again after a serialise round trip (as `innerHTML` would), and the trees are
inspected. Nothing here searches the output string for "<script".
"""
import re
import threading
import unicodedata
from urllib.parse import unquote

import html5lib
import pytest

from markupsafe import Markup

from kb.render import (
    ALLOWED_ATTRIBUTES, ALLOWED_TAGS, Rendered, mark_wanted, plain_text, render, sanitise, trusted,
    wiki_link_targets,
)

# ---------------------------------------------------------------------------------------------------------
# How the output is inspected

FORBIDDEN_ELEMENTS = {
    "script", "iframe", "object", "embed", "svg", "math", "meta", "base", "form", "input", "button", "style",
    "link", "noscript", "frame", "frameset", "applet", "template", "textarea", "select", "xmp", "noembed",
}
SAFE_SCHEMES = {"http", "https", "mailto"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "background", "poster", "xlink:href", "srcset"}
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")


def parse(html):
    """The fragment as a browser builds it inside the page's <div>: an ElementTree element."""
    return html5lib.parseFragment(html, container="div", treebuilder="etree", namespaceHTMLElements=False)


def reparse(html):
    """Parse, serialise and parse again: what survives an innerHTML round trip (mutation XSS)."""
    walker = html5lib.getTreeWalker("etree")
    serialized = html5lib.serializer.HTMLSerializer().render(walker(parse(html)))
    return parse(serialized)


def local_name(name):
    return name.rsplit("}", 1)[-1].lower()


def elements(root):
    return [el for el in root.iter() if isinstance(el.tag, str) and el is not root]


def find_all(html, tag):
    return [el for el in elements(parse(html)) if local_name(el.tag) == tag]


def text_of(html):
    return "".join(parse(html).itertext())


def browser_url(value):
    """A URL as a browser reads it: control characters, whitespace and invisible format characters dropped."""
    return "".join(
        ch for ch in value
        if ord(ch) > 0x20 and not ch.isspace() and unicodedata.category(ch) not in {"Cc", "Cf", "Zs", "Zl", "Zp"}
    ).lower()


def assert_safe_tree(root, source):
    for el in elements(root):
        tag = local_name(el.tag)
        assert tag not in FORBIDDEN_ELEMENTS, f"<{tag}> element from {source!r}"
        assert tag in ALLOWED_TAGS, f"<{tag}> is outside the allowlist ({source!r})"
        for raw_name, value in el.attrib.items():
            name = local_name(raw_name)
            assert not name.startswith("on"), f"{name}= on <{tag}> from {source!r}"
            assert name != "style", f"style= on <{tag}> from {source!r}"
            assert name in ALLOWED_ATTRIBUTES.get(tag, ()), f"{tag}[{name}] outside the allowlist ({source!r})"
            if name in URL_ATTRIBUTES or name.endswith("href"):
                scheme = _SCHEME.match(browser_url(value))
                assert scheme is None or scheme.group(1) in SAFE_SCHEMES, f"{name}={value!r} from {source!r}"


def assert_safe(html, source):
    assert_safe_tree(parse(html), source)
    assert_safe_tree(reparse(html), source)


# ---------------------------------------------------------------------------------------------------------
# XSS payloads: each goes through render() and through sanitise() directly.

XSS_PAYLOADS = [
    # Dangerous schemes in Markdown inline links
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;avascript:alert(1))",
    "[x](&#0000106&#0000097vascript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](java\nscript:alert(1))",
    "[x](java\u200bscript:alert(1))",
    "[x](\u00a0javascript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](DaTa:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox(1))",
    "[x](VbScRiPt:msgbox(1))",
    # ... in images
    "![x](javascript:alert(1))",
    "![x](JAVASCRIPT:alert(1) \"title\")",
    "![x](&#x6A;avascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![x](vbscript:msgbox(1))",
    # ... in reference links and images
    "[x][r]\n\n[r]: javascript:alert(1)",
    "[x][r]\n\n[r]: JaVaScRiPt:alert(1) \"t\"",
    "[x][r]\n\n[r]: &#106;avascript:alert(1)",
    "![x][r]\n\n[r]: data:text/html,<script>alert(1)</script>",
    "[x][r]\n\n[r]: vbscript:msgbox(1)",
    "<javascript:alert(1)>",
    # ... in raw HTML links
    '<a href="javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#14;javascript:alert(1)">x</a>',
    '<a href="javas&Tab;cript:alert(1)">x</a>',
    '<a href=" java\u200bscript:alert(1)">x</a>',
    '<a href="http://ok.example" onclick="alert(1)" style="color:red">x</a>',
    # Raw dangerous elements
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(1)">go</button></form>',
    "<input autofocus onfocus=alert(1)>",
    "<style>@import 'http://evil.example/x.css';</style>",
    '<link rel="stylesheet" href="http://evil.example/x.css">',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<div style="width: expression(alert(1))">x</div>',
    '<td background="javascript:alert(1)">x</td>',
    '<abbr title="x" onmouseover="alert(1)">x</abbr>',
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    # Mutation XSS: markup that changes meaning when parsed again
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<svg></p><style><a id=\"</style><img src=1 onerror=alert(1)>\">",
    '<noembed><img title="</noembed><img src=x onerror=alert(1)>"></noembed>',
    '<textarea><img title="</textarea><img src=x onerror=alert(1)>"></textarea>',
    '<xmp><img title="</xmp><img src=x onerror=alert(1)>"></xmp>',
    "<!--><img src=x onerror=alert(1)>-->",
    "<![CDATA[><img src=x onerror=alert(1)>]]>",
    '<select><template><style><!--</style><a rel="--></style></template></select><img src onerror=alert(1)>">',
    # Attribute syntax of extensions that are deliberately not enabled (attr_list, md_in_html)
    'Paragraph\n{: onclick="alert(1)" }',
    "# Heading {: onmouseover=alert(1) style=color:red }",
    "![x](y){onerror=alert(1)}",
    '<div markdown="1" onclick="alert(1)">*x*</div>',
    # Wiki links carrying HTML or quotes
    '[[x" onmouseover="alert(1)|y]]',
    '[[y|x" onmouseover="alert(1)]]',
    "[[<img src=x onerror=alert(1)>]]",
    "[[a|<script>alert(1)</script>]]",
    "[[javascript:alert(1)]]",
    "[[x' onmouseover='alert(1)]]",
]


@pytest.mark.parametrize("unsafe", [
    "<script>alert(1)</script>",
    '<img src="x" onerror="alert(1)">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<p style="color:red">x</p>',
    '<a href="http://ok.example" target="_top">x</a>',
    "<svg><a>x</a></svg>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
])
def test_the_safety_check_rejects_what_a_browser_would_run(unsafe):
    """The payload tests pass only if nothing unsafe survives; that means something only if this check fails on
    unsafe HTML (including what turns unsafe when parsed again)."""
    with pytest.raises(AssertionError):
        assert_safe(unsafe, unsafe)


def as_reader_sees(text: str, exists: bool) -> str:
    """render, then (for a reader to whom no linked page exists) mark_wanted, as the page view does."""
    rendered = render(text)
    return rendered.html if exists else mark_wanted(rendered.html, rendered.links)


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
@pytest.mark.parametrize("exists", [True, False], ids=["existing", "wanted"])
def test_payload_is_neutralised_by_render(payload, exists):
    assert_safe(as_reader_sees(payload, exists), payload)


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_payload_is_neutralised_by_sanitise(payload):
    assert_safe(sanitise(payload), payload)


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_payload_is_neutralised_inside_markdown_structures(payload):
    text = f"# Title\n\n> {payload}\n\n- item {payload}\n\n| a |\n|---|\n| {payload} |\n\nNote[^n]\n\n[^n]: {payload}"
    assert_safe(render(text).html, payload)


def test_disallowed_tags_are_shown_as_text_not_run():
    html = render("Before <script>alert(1)</script> after").html
    assert find_all(html, "script") == []
    assert "<script>alert(1)</script>" in text_of(html)


def test_event_handler_is_dropped_but_allowed_tag_kept():
    html = render('<abbr title="Professional Learning Community" onclick="alert(1)">PLC</abbr>').html
    [abbr] = find_all(html, "abbr")
    assert abbr.attrib == {"title": "Professional Learning Community"}


# ---------------------------------------------------------------------------------------------------------
# Markdown features


def test_table_renders_with_alignment_attributes_not_styles():
    html = render("| Year | Leader |\n|:-----|-------:|\n| 2002 | Ms. A |\n").html
    cells = find_all(html, "th") + find_all(html, "td")
    assert [c.text for c in find_all(html, "td")] == ["2002", "Ms. A"]
    assert [c.get("align") for c in cells] == ["left", "right", "left", "right"]
    assert all("style" not in c.attrib for c in cells)


def test_fenced_code_keeps_wiki_link_syntax_literal():
    rendered = render("```python\nx = '[[Not A Link]]'\n```\n\n[[Real Link]]")
    [code] = find_all(rendered.html, "code")
    assert code.get("class") == "language-python"
    assert "[[Not A Link]]" in code.text
    assert find_all(rendered.html, "a")[0].get("href") == "/wiki/real-link"
    assert rendered.links == ("real-link",)


def test_code_span_keeps_wiki_link_syntax_literal():
    rendered = render("Write `[[Page Title]]` to link.")
    assert find_all(rendered.html, "code")[0].text == "[[Page Title]]"
    assert find_all(rendered.html, "a") == []
    assert rendered.links == ()


def test_footnotes_link_both_ways():
    html = render("The assessment held the community together.[^1]\n\n[^1]: Seed 001, section III.").html
    [ref] = [a for a in find_all(html, "a") if a.get("class") == "footnote-ref"]
    [note] = find_all(html, "li")
    assert ref.get("href") == "#" + note.get("id")
    assert "Seed 001, section III." in "".join(note.itertext())
    [back] = [a for a in find_all(html, "a") if a.get("class") == "footnote-backref"]
    assert back.get("href") == "#" + find_all(html, "sup")[0].get("id")


def test_footnotes_do_not_leak_into_the_next_render():
    render("Text[^a]\n\n[^a]: First page's note.")
    html = render("Second page, no notes.").html
    assert "First page" not in text_of(html)
    assert find_all(html, "li") == []


def test_toc_marker_lists_headings_that_have_ids():
    html = render("[TOC]\n\n# Why it started\n\n## How it ended\n").html
    [toc] = [d for d in find_all(html, "div") if d.get("class") == "toc"]
    targets = [a.get("href") for a in toc.iter("a")]
    ids = ["#" + h.get("id") for h in find_all(html, "h1") + find_all(html, "h2")]
    assert targets == ids == ["#why-it-started", "#how-it-ended"]


def test_headings_in_any_script_get_ids():
    [h1] = find_all(render("# 東京の学校").html, "h1")
    assert h1.get("id") == "東京の学校"


def test_sane_lists_keep_start_number():
    [ol] = find_all(render("3. third\n4. fourth").html, "ol")
    assert ol.get("start") == "3"


def test_allowed_inline_html_survives():
    html = render("H<sub>2</sub>O, x<sup>2</sup>, <del>old</del>, <span class=\"note\">n</span>").html
    assert [len(find_all(html, t)) for t in ("sub", "sup", "del", "span")] == [1, 1, 1, 1]


def test_markdown_attribute_syntax_is_not_interpreted():
    html = render("# Heading {: #custom .cls }").html
    [h1] = find_all(html, "h1")
    assert h1.get("id") != "custom" and "class" not in h1.attrib


def test_bare_urls_are_not_linkified():
    html = render("See https://example.org/page for more.").html
    assert find_all(html, "a") == []


# ---------------------------------------------------------------------------------------------------------
# Links


def test_wiki_link_to_existing_page():
    [a] = find_all(render("See [[Writing Assessment]].").html, "a")
    assert a.get("class") == "wikilink"
    assert a.get("href") == "/wiki/writing-assessment"
    assert a.text == "Writing Assessment"
    assert "title" not in a.attrib


def test_mark_wanted_marks_only_the_named_links():
    html = render("See [[Writing Assessment]] and [[Budget Cycle|the budget]].").html
    a, b = find_all(mark_wanted(html, ["writing-assessment"]), "a")
    assert a.get("class") == "wikilink wanted" and a.get("title") == "Page not written yet"
    assert a.get("href") == "/wiki/writing-assessment"  # the missing-page view offers to write it
    assert b.get("class") == "wikilink" and "title" not in b.attrib


def test_mark_wanted_leaves_user_written_links_alone():
    html = render('[a lookalike](/wiki/writing-assessment) and [[Writing Assessment]]').html
    first, second = find_all(mark_wanted(html, ["writing-assessment"]), "a")
    assert first.get("class") is None
    assert second.get("class") == "wikilink wanted"


def test_mark_wanted_works_on_stored_text_and_on_markup_alike():
    html = render("See [[Writing Assessment]].").html
    from_store = str(html)  # as the per-revision cache gives it back
    marked = [mark_wanted(h, ["writing-assessment"]) for h in (html, from_store)]
    assert all(type(m) is Markup for m in marked)
    assert marked[0] == marked[1] and 'class="wikilink wanted"' in marked[0]


def test_slug_and_label_link():
    [a] = find_all(render("[[writing-assessment|the 2002 writing assessment]]").html, "a")
    assert a.get("href") == "/wiki/writing-assessment"
    assert a.text == "the 2002 writing assessment"


def test_wiki_link_with_escaped_pipe_works_inside_a_table():
    html = render("| Initiative |\n|---|\n| [[writing-assessment\\|Writing Assessment]] |\n").html
    [a] = find_all(html, "a")
    assert (a.get("href"), a.text) == ("/wiki/writing-assessment", "Writing Assessment")


@pytest.mark.parametrize("title, slug", [
    ("東京 学校", "東京-学校"),
    ("École Ōsaka", "école-ōsaka"),
    ("Школа №5", "школа-no5"),  # NFKC: № is "No"
    ("🎉 Launch Party", "launch-party"),
])
def test_non_latin_and_emoji_titles(title, slug):
    for exists in (True, False):
        rendered = render(f"[[{title}]]")
        [a] = find_all(as_reader_sees(f"[[{title}]]", exists), "a")
        assert a.text == title
        href = a.get("href")
        assert href.isascii(), "non-ASCII must be percent-encoded"
        assert href.startswith("/wiki/") and unquote(href.removeprefix("/wiki/")) == slug
        assert ("wanted" in a.get("class")) is not exists
        assert rendered.links == (slug,)


@pytest.mark.parametrize("text", ["[[!!!]]", "[[🎉]]", "[[|label]]", "[[ ]]"])
def test_wiki_link_without_a_slug_is_plain_text(text):
    rendered = render(text)
    assert find_all(rendered.html, "a") == []
    assert text_of(rendered.html).strip() == text
    assert rendered.links == ()


def test_wiki_link_label_is_text_not_markup():
    [a] = find_all(render("[[page|<b>bold</b> & *stars*]]").html, "a")
    assert a.text == "<b>bold</b> & *stars*"
    assert list(a) == []


def test_backslash_escapes_a_wiki_link():
    rendered = render("Type \\[[Page Title]] to link.")
    assert find_all(rendered.html, "a") == []
    assert "[[Page Title]]" in text_of(rendered.html)
    assert rendered.links == ()


def test_links_are_in_document_order_without_duplicates():
    text = "[[Zebra]] then [[apple]] then [[ZEBRA]] then [[zebra|again]]\n\n# H\n\n- [[Mango]]\n- [[Apple]]"
    assert render(text).links == ("zebra", "apple", "mango")


AGREEMENT_DOCUMENTS = [
    "[[Zebra]] then [[apple]] then [[ZEBRA]] and [[zebra|again]]",
    "```\n[[In Fence]]\n```\n\n~~~\n[[Tilde Fence]]\n~~~\n\n[[After Fence]]",
    "Code `[[In Span]]` and ``[[Double `tick`]]`` and [[Outside]]",
    "| A | B |\n|---|---|\n| [[Cell One]] | [[cell-two\\|Two]] |",
    "[[!!!]] [[東京 学校]] [[🎉 Party]] \\[[Escaped]] [[Real|label]]",
    "> quote [[Quoted]]\n\n1. [[Listed]]\n\nNote[^1]\n\n[^1]: see [[Footnoted]]",
]


@pytest.mark.parametrize("text", AGREEMENT_DOCUMENTS)
def test_wiki_link_targets_agrees_with_render(text):
    assert wiki_link_targets(text) == list(render(text).links)


def test_external_links_get_rel_nofollow_noopener():
    html = render("[a](https://example.org) [b](http://example.org) <https://example.net> "
                  '<a href="https://x.example" rel="opener">c</a> [d](//example.com/x)').html
    assert [a.get("rel") for a in find_all(html, "a")] == ["nofollow noopener"] * 5


def test_internal_and_mailto_links_have_no_rel():
    html = render("[[Page]] [rel](/wiki/other) [anchor](#section) [mail](mailto:office@district.example)").html
    anchors = find_all(html, "a")
    assert [a.get("href") for a in anchors] == [
        "/wiki/page", "/wiki/other", "#section", "mailto:office@district.example"]
    assert all("rel" not in a.attrib for a in anchors)


def test_dangerous_link_keeps_its_text_but_loses_its_href():
    [a] = find_all(render("[click me](javascript:alert(1))").html, "a")
    assert a.text == "click me" and "href" not in a.attrib


# ---------------------------------------------------------------------------------------------------------
# Other entry points and shared state


def test_sanitise_keeps_allowed_markup_and_escapes_the_rest():
    html = sanitise('<p id="x">ok <em>yes</em></p><marquee>no</marquee>')
    assert [local_name(el.tag) for el in elements(parse(html))] == ["p", "em"]
    assert "<marquee>no</marquee>" in text_of(html)


def test_plain_text_has_words_without_markup():
    text = plain_text("[TOC]\n\n# Why\n\nTeachers *loved* it &amp; scored together.[^1]\n\n"
                      "| A | B |\n|---|---|\n| one | two |\n\n[^1]: Seed 001.")
    assert text == "Why Teachers loved it & scored together. A B one two Seed 001."


def test_plain_text_keeps_escaped_markup_as_literal_text():
    assert plain_text("a <script>x</script> b") == "a <script>x</script> b"


def test_html_comes_out_as_markup_and_plain_text_does_not():
    """Templates print Markup as it is and escape everything else, so the type says what is safe to print."""
    assert type(render("*x*").html) is Markup
    assert type(sanitise("<em>x</em>")) is Markup
    assert type(plain_text("*x* <b>")) is str


def test_trusted_gives_stored_html_back_unchanged():
    html = render("A [[Link]] & <em>more</em>").html
    again = trusted(str(html))
    assert type(again) is Markup and again == html
    assert trusted(None) == Markup("")


def test_empty_input():
    assert render("") == Rendered(html="", links=())
    assert wiki_link_targets("") == []
    assert plain_text("") == ""


def test_renders_in_parallel_threads_match_sequential_renders():
    documents = [f"# Page {i}\n\n[[Link {i}]] and [[Shared]][^n]\n\n[^n]: note {i}" for i in range(40)]
    expected = [render(d) for d in documents]
    results = [None] * len(documents)

    def work(offset):
        for i in range(offset, len(documents), 4):
            results[i] = render(documents[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected
