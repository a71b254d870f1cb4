"""Visibility: one layer decides who reads what, and a page you may not read looks exactly like a missing one.

The canary pages are restricted; each has a word found nowhere else ("quokkaplume") in its title and body, and a slug
that does not contain it. Every read path the app has is asked for them, as anonymous (with anonymous reading off
and on), as a reader and as a contributor: single-page paths must answer exactly as for a page that does not exist,
and list, search, feed, tour, timeline and curation paths must never mention the canary. A path whose route is not
registered (a part not built yet) is skipped, naming it.
"""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select
from werkzeug.exceptions import MethodNotAllowed, NotFound

from conftest import PASSWORD, _make_app, _password_hash, viewer_for
from kb import access, pages, search
from kb.access import Viewer
from kb.models import Page, User, utcnow

CANARY = "quokkaplume"
STAFF_WORD = "numbatglow"  # on a staff page: hidden from anonymous visitors only

# Restricted canary pages: (slug, title, kind, fields, tags, body). Slugs avoid the word so that an echo of the
# address a user typed is not mistaken for a leak; the slug itself must still never appear on list paths.
CANARIES = [
    ("program-notes-x7", "Quokkaplume Initiative", "initiative",
     {"status": "ended", "started": "2003", "ended": "2005", "ended_reason": "leader-change",
      "sponsors": ["public-leader"], "carried_by": ["public-routine"], "problem": "quokkaplume problem"},
     ["quokkaplume"], "The quokkaplume plan. See [[Open Target]] and [[Quokkaplume Plans]]."),
    ("routine-notes-x7", "Quokkaplume Routine", "routine",
     {"months": [10], "cadence": "each October quokkaplume", "people_who_can_run_it": 1, "owner": "open-target"},
     ["quokkaplume"], "The quokkaplume routine."),
    ("leader-notes-x7", "Quokkaplume Leader", "leader",
     {"tenures": [{"role": "superintendent", "from": "1997", "to": "2001"}], "priorities": ["quokkaplume"]},
     [], "The quokkaplume leader."),
]
STAFF_PAGE = ("staff-notes-x7", "Numbatglow Staff Notes", "page", {}, ["numbatglow"], "numbatglow body [[Open Target]]")
MAIN = CANARIES[0][0]


def twin(slug: str) -> str:
    """A slug of the same shape that names no page."""
    return slug.replace("x7", "y8")


# --- the read paths ----------------------------------------------------------------------------------------

# Paths about one page: asked for a hidden page they must answer exactly as for a missing one.
SINGLE_PATHS = [
    "/wiki/{slug}",
    "/wiki/{slug}/raw",
    "/wiki/{slug}/history",
    "/wiki/{slug}/revisions/1",
    "/wiki/{slug}/diff?from=1&to=1",
    "/wiki/{slug}/edit",
    "/wiki/{slug}/rename",
    "/api/pages/{slug}",
    "/api/pages/{slug}/revisions",
    "/api/pages/{slug}/revisions/1",
    "/curate/page/{slug}",
    "/new?title={slug}",
]

# Paths that list, count, search, link or summarise pages: they must never mention a hidden page.
LIST_PATHS = [
    "/",
    "/wiki",
    "/wiki?kind=initiative",
    "/wiki?kind=routine",
    "/wiki?kind=leader",
    "/wiki?status=ended",
    "/wiki/open-target",           # backlinks ("what links here")
    "/wiki/public-leader",         # derived facts: initiatives a leader sponsored
    "/wiki/public-routine",        # derived facts: initiatives a routine carries
    "/api/pages",
    "/api/pages?kind=initiative",
    "/api/pages/open-target",      # backlinks in the API
    "/api/pages/public-leader",
    "/search?q=initiative",
    "/search?q=kind:initiative",
    "/search?q=ended",
    "/api/search?q=initiative",    # facets with counts
    "/api/search?q=",
    "/api/search?q=kind:routine",
    "/api/suggest?q=q",
    "/recent",
    "/recent.atom",
    "/changes",
    "/curate",
    "/curate/risk",
    "/curate/people",
    "/api/curation",               # wanted, orphaned, unowned... lists
    "/tours",
    "/tours/public-tour",
    "/tours/public-tour/stops/1",
    "/tours/public-tour/stops/2",
    "/tours/public-tour/stops/3",
    "/tours/public-tour/print",
    "/tours/public-tour/history",
    "/tours/public-tour/revisions/1",
    "/tours/public-tour/readers",
    "/tours/public-tour/edit",
    "/api/tours",
    "/api/tours/public-tour",
    "/timeline",
    "/timeline.svg",
    "/api/timeline",
    "/calendar",
    "/api/calendar",
    "/admin/deleted",
]

# Paths that echo what the user asked for: asking for the hidden word must look exactly like asking for a word that
# is nowhere in the knowledge base ({word} is replaced by the canary word, or part of it, and by a twin word).
QUERY_PATHS = [
    "/wiki?tag={word}",
    "/api/pages?tag={word}",
    "/search?q={word}",
    "/search?q={part}",            # stemming and prefixes
    "/search?q={misspelt}",        # "did you mean" must not suggest a hidden word
    "/search?q=kind:initiative {word}",
    "/search?q=tag:{word}",
    "/api/search?q={word}",
    "/api/search?q={misspelt}",
    "/api/search?q=tag:{word}",
    "/api/suggest?q={part}",
    "/api/suggest?q={word}",
    "/new?kind=initiative&title={word}",   # "tried before" on creating a page
]
TWIN_WORD = "zqxjvbnmkwy"  # as long as the canary word, and in no page


def query(template: str, word: str) -> str:
    return template.format(word=word, part=word[:5], misspelt=word[:-1] + ("x" if word[-1] != "x" else "y"))


# JSON list paths whose whole answer must be the same with and without the hidden pages (counts included).
STABLE_JSON = ["/api/pages", "/api/pages?kind=initiative", "/api/pages?tag=quokkaplume", "/api/search?q=initiative",
               "/api/search?q=", "/api/suggest?q=quok", "/api/timeline", "/api/calendar"]
# For search only the counts and facets are compared: scores may move with the size of the index.
SEARCH_KEYS = ("total", "facets", "suggestion")

VIEWERS = ["anonymous", "anonymous-read", "reader", "contributor"]


def route_missing(app, path: str) -> bool:
    adapter = app.url_map.bind("localhost")
    try:
        adapter.match(path.split("?")[0], method="GET")
    except (NotFound, MethodNotAllowed):
        return True
    except Exception:  # a redirect (e.g. a trailing slash) still means the route exists
        return False
    return False


def require_route(app, path: str) -> None:
    """A leak test of an address that no longer exists would check nothing: a renamed route fails it."""
    if route_missing(app, path):
        pytest.fail(f"no route for {path.split('?')[0]}: update the path in this test if it was renamed")


# --- building the world ------------------------------------------------------------------------------------


def save(app, as_user: str, slug: str, title: str, kind: str = "page", fields=None, tags=None, visibility="public",
         readers=None, body: str = "") -> None:
    viewer = viewer_for(app, as_user)
    with app.extensions["kb_db"].writing() as s:
        existing = s.scalar(select(Page).where(Page.slug == slug))
        pages.save_page(s, viewer, slug, pages.PageState(title=title, kind=kind, fields=fields or {}, tags=tags or [],
                                                         visibility=visibility, readers=readers or [], body=body),
                        existing.revision if existing else None, "test")
    search.kick(app)


def add_named_reader(app, name: str = "named") -> None:
    with app.extensions["kb_db"].writing() as s:
        s.add(User(name=name, role="reader", display_name="Named Reader", password_hash=_password_hash(PASSWORD)))


def save_public_world(app) -> None:
    save(app, "admin", "open-target", "Open Target", body="A public page everyone may read.")
    save(app, "admin", "public-leader", "Public Leader", "leader",
         {"tenures": [{"role": "superintendent", "from": "2001", "to": "2006"}]}, body="A public leader.")
    save(app, "admin", "public-routine", "Public Routine", "routine", {"months": [9], "cadence": "each September"},
         body="A public routine.")
    save(app, "admin", "public-initiative", "Public Initiative", "initiative",
         {"status": "active", "started": "2002", "sponsors": ["public-leader"]}, ["literacy"],
         body="A public initiative. [[Open Target]] [[Public Wanted Page]]")


def save_staff_page(app) -> None:
    slug, title, kind, fields, tags, body = STAFF_PAGE
    save(app, "curator", slug, title, kind, fields, tags, "staff", [], body)


def save_canaries(app, readers=("named",)) -> None:
    for slug, title, kind, fields, tags, body in CANARIES:
        save(app, "curator", slug, title, kind, fields, tags, "restricted", list(readers), body)


def save_tour(app, staff_stop: bool = True) -> None:
    """A public tour whose second stop is the canary (its note names it) and third the staff page."""
    from kb import tours

    viewer = viewer_for(app, "curator")
    stops = [tours.StopSpec("open-target", "Start here.", "What do you see?"),
             tours.StopSpec(MAIN, "quokkaplume note", "quokkaplume question?")]
    if staff_stop:
        stops.append(tours.StopSpec(STAFF_PAGE[0], "numbatglow note", ""))
    stops.append(tours.StopSpec("public-routine", "Then this.", ""))
    spec = tours.TourSpec("", "public-tour", "Public Tour", "A tour for everyone.", ["superintendent"], None, stops)
    with app.extensions["kb_db"].writing() as s:
        tours.save_tour(s, viewer, spec, "test")


class World:
    """One app with the canaries, signed-in clients per viewer, and the stable answers from before the canaries."""

    def __init__(self, app):
        self.app = app
        self.clients = {}
        self.before: dict[tuple[str, str], object] = {}

    def client(self, who: str):
        if who not in self.clients:
            c = self.app.test_client()
            if who not in ("anonymous", "anonymous-read"):
                r = c.post("/login", data={"name": who, "password": PASSWORD})
                assert r.status_code == 302, f"could not sign in as {who}"
            self.clients[who] = c
        return self.clients[who]

    def get(self, who: str, path: str):
        self.app.config["ANONYMOUS_READ"] = who == "anonymous-read"
        try:
            return self.client(who).get(path)
        finally:
            self.app.config["ANONYMOUS_READ"] = False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    app = _make_app(tmp_path_factory.mktemp("access"))
    add_named_reader(app)
    save_public_world(app)
    save_staff_page(app)
    w = World(app)
    for who in VIEWERS:
        for path in STABLE_JSON:
            r = w.get(who, path)
            w.before[(who, path)] = (r.status_code, stable_json(path, r))
    save_canaries(app)
    save_tour(app)
    yield w
    app.extensions["kb_db"].dispose()


# --- how answers are compared ------------------------------------------------------------------------------

_CSRF = re.compile(r'((?:name="csrf_token" value|name="csrf-token" content)=")[^"]*"')
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")


def normalise(text: str, *slugs: str) -> str:
    text = _CSRF.sub(r'\1X"', text)
    text = _TIME.sub("TIME", text)
    for slug in slugs:
        for form in (slug, slug.replace("-", " "), slug.replace("-", "+"), slug.replace("-", "%20")):
            text = re.sub(re.escape(form), "SLUG", text, flags=re.I)
    return text


def stable_json(path: str, response):
    if response.mimetype != "application/json":
        return response.get_data(as_text=True)
    data = response.get_json()
    if path.startswith("/api/search") and isinstance(data, dict):
        return {k: data.get(k) for k in SEARCH_KEYS}
    return data


def forbidden_words(who: str) -> list[str]:
    words = [CANARY] + [c[0] for c in CANARIES]
    if who.startswith("anonymous"):
        words += [STAFF_WORD, STAFF_PAGE[0]]
    return words


def hidden_slugs(who: str) -> list[str]:
    slugs = [c[0] for c in CANARIES]
    if who.startswith("anonymous"):
        slugs.append(STAFF_PAGE[0])
    return slugs


def assert_looks_missing(w: World, who: str, template: str, slug: str) -> None:
    hidden_path, missing_path = template.format(slug=slug), template.format(slug=twin(slug))
    hidden, missing = w.get(who, hidden_path), w.get(who, missing_path)
    assert hidden.status_code == missing.status_code, (
        f"{who}: {hidden_path} answered {hidden.status_code}, a missing page {missing.status_code}")
    assert hidden.mimetype == missing.mimetype
    body_hidden = normalise(hidden.get_data(as_text=True), slug, twin(slug))
    body_missing = normalise(missing.get_data(as_text=True), slug, twin(slug))
    assert body_hidden == body_missing, f"{who}: {hidden_path} does not look like a missing page"
    location = normalise(hidden.headers.get("Location", ""), slug, twin(slug))
    assert location == normalise(missing.headers.get("Location", ""), slug, twin(slug))
    for word in [CANARY, STAFF_WORD] if who.startswith("anonymous") else [CANARY]:
        assert word not in hidden.get_data(as_text=True).lower(), f"{who}: {hidden_path} shows {word!r}"


def assert_query_finds_nothing(w: World, who: str, template: str) -> None:
    hidden_path, missing_path = query(template, CANARY), query(template, TWIN_WORD)
    hidden, missing = w.get(who, hidden_path), w.get(who, missing_path)
    assert hidden.status_code == missing.status_code, f"{who}: {hidden_path} answered differently from {missing_path}"

    def clean(text: str) -> str:
        text = normalise(text)
        for template_ in ("{misspelt}", "{word}", "{part}"):
            for word in (CANARY, TWIN_WORD):
                text = re.sub(re.escape(query(template_, word)), "WORD", text, flags=re.I)
        return text

    assert clean(hidden.get_data(as_text=True)) == clean(missing.get_data(as_text=True)), (
        f"{who}: {hidden_path} does not look like asking for a word nobody wrote")
    for slug in hidden_slugs(who):
        assert slug not in hidden.get_data(as_text=True), f"{who}: {hidden_path} shows {slug}"


def assert_never_mentions(w: World, who: str, path: str) -> None:
    r = w.get(who, path)
    assert r.status_code < 500, f"{who}: {path} crashed ({r.status_code}), so it could not be checked"
    text = r.get_data(as_text=True).lower()
    for word in forbidden_words(who):
        assert word.lower() not in text, f"{who}: {path} ({r.status_code}) mentions {word!r}"
    assert "quokkaplume" not in r.headers.get("Location", "").lower()


# --- the canary tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", VIEWERS)
@pytest.mark.parametrize("template", SINGLE_PATHS)
def test_hidden_page_answers_like_a_missing_page(world, template, who):
    require_route(world.app, template.format(slug=MAIN))
    for slug in hidden_slugs(who):
        assert_looks_missing(world, who, template, slug)


@pytest.mark.parametrize("who", VIEWERS)
@pytest.mark.parametrize("path", LIST_PATHS)
def test_hidden_page_never_appears_in_lists_searches_feeds_tours_or_timelines(world, path, who):
    require_route(world.app, path)
    assert_never_mentions(world, who, path)


@pytest.mark.parametrize("who", VIEWERS)
@pytest.mark.parametrize("template", QUERY_PATHS)
def test_asking_for_the_hidden_word_looks_like_asking_for_a_word_nobody_wrote(world, template, who):
    require_route(world.app, query(template, CANARY))
    assert_query_finds_nothing(world, who, template)


@pytest.mark.parametrize("who", VIEWERS)
@pytest.mark.parametrize("path", STABLE_JSON)
def test_hidden_pages_change_no_count_or_list_in_the_api(world, path, who):
    require_route(world.app, path)
    r = world.get(who, path)
    assert (r.status_code, stable_json(path, r)) == world.before[(who, path)], (
        f"{who}: {path} changed when restricted pages were added")


@pytest.mark.parametrize("who", ["named", "curator", "admin"])
@pytest.mark.parametrize("template", ["/wiki/{slug}", "/wiki/{slug}/raw", "/wiki/{slug}/history",
                                      "/wiki/{slug}/diff?from=1&to=1", "/api/pages/{slug}",
                                      "/api/pages/{slug}/revisions"])
def test_named_reader_and_curators_read_the_restricted_page(world, template, who):
    r = world.get(who, template.format(slug=MAIN))
    assert r.status_code == 200
    assert CANARY in r.get_data(as_text=True).lower()


@pytest.mark.parametrize("who", ["named", "curator"])
@pytest.mark.parametrize("path", ["/wiki?tag=quokkaplume", "/api/pages", "/wiki/open-target",
                                  "/search?q=quokkaplume", "/api/search?q=quokkaplume", "/tours/public-tour"])
def test_named_reader_and_curators_find_the_restricted_page_in_lists(world, path, who):
    require_route(world.app, path)
    r = world.get(who, path)
    assert r.status_code == 200
    assert "quokkaplume" in r.get_data(as_text=True).lower()


def test_reader_sees_staff_page_that_anonymous_visitors_do_not(world):
    assert world.get("reader", f"/wiki/{STAFF_PAGE[0]}").status_code == 200
    listed = world.get("reader", "/api/pages").get_json()["pages"]
    assert STAFF_PAGE[0] in [p["slug"] for p in listed]


# --- a page that becomes restricted disappears everywhere at once --------------------------------------------


def test_page_moved_from_public_to_restricted_disappears_from_every_path_at_once(app, client, auth):
    add_named_reader(app)
    save_public_world(app)
    slug, title = "program-notes-x7", "Quokkaplume Initiative"
    fields = dict(CANARIES[0][3])
    save(app, "curator", slug, title, "initiative", fields, ["quokkaplume"], "public", [], CANARIES[0][5])
    save_tour(app, staff_stop=False)
    auth.login("reader")
    w = World(app)
    w.clients["reader"] = client
    seen = ["/wiki/program-notes-x7", "/wiki?tag=quokkaplume", "/api/pages", "/recent", "/api/search?q=quokkaplume",
            "/timeline", "/wiki/open-target"]
    for path in seen:
        require_route(app, path)
        assert CANARY in w.get("reader", path).get_data(as_text=True).lower(), f"{path} should show the public page"

    save(app, "curator", slug, title, "initiative", fields, ["quokkaplume"], "restricted", ["named"], CANARIES[0][5])

    for template in SINGLE_PATHS:
        require_route(app, template.format(slug=slug))
        assert_looks_missing(w, "reader", template, slug)
    for template in QUERY_PATHS:
        require_route(app, query(template, CANARY))
        assert_query_finds_nothing(w, "reader", template)
    for path in LIST_PATHS:
        require_route(app, path)
        r = w.get("reader", path)
        text = r.get_data(as_text=True).lower()
        assert CANARY not in text and slug not in text, f"{path} still shows the page after it was restricted"


# --- the layer itself, without HTTP --------------------------------------------------------------------------

READER = Viewer(10, "reader", "reader")
CONTRIBUTOR = Viewer(11, "contributor", "contributor")
CURATOR = Viewer(12, "curator", "curator")
ADMIN = Viewer(13, "admin", "admin")
NAMED = Viewer(14, "named", "reader")
ANON = Viewer()
ANON_READ = Viewer(anonymous_read=True)


@pytest.mark.parametrize("viewer, visibility, readers, expected", [
    (ANON, "public", [], False),
    (ANON_READ, "public", [], True),
    (ANON_READ, "staff", [], False),
    (ANON_READ, "restricted", ["named"], False),
    (READER, "public", [], True),
    (READER, "staff", [], True),
    (READER, "restricted", [], False),
    (READER, "restricted", ["named"], False),
    (NAMED, "restricted", ["named"], True),
    (NAMED, "restricted", ["Named"], False),
    (NAMED, "restricted", ["named2", "xnamed"], False),
    (NAMED, "staff", ["named"], True),
    (CONTRIBUTOR, "restricted", [], False),
    (CURATOR, "restricted", [], True),
    (ADMIN, "restricted", [], True),
])
def test_can_read_follows_the_visibility_rules(viewer, visibility, readers, expected):
    assert access.can_read(viewer, visibility, readers) is expected


def test_sql_clause_agrees_with_can_read_for_every_viewer_and_page(app):
    """The SQL filter (used by lists, counts and joins) and the Python check decide exactly the same."""
    cases = [("public", []), ("staff", []), ("restricted", []), ("restricted", ["reader"]),
             ("restricted", ["Reader"]), ("restricted", ["reader2"]), ("restricted", ["xreader"]),
             ("restricted", ["re_der"]), ("restricted", ["re%er"]), ("restricted", ["curator", "reader"]),
             ("restricted", ['a", "reader']), ("restricted", ['reader", "x']), ("restricted", ['"reader"']),
             ("restricted", ["contributor"])]
    viewers = [viewer_for(app, n) for n in ("admin", "curator", "contributor", "reader")] + [ANON, ANON_READ]
    with app.extensions["kb_db"].writing() as s:
        for i, (visibility, readers) in enumerate(cases):
            s.add(Page(slug=f"p{i}", title=f"P{i}", kind="page", visibility=visibility, readers=readers, revision=1))
        s.add(Page(slug="gone", title="Gone", kind="page", visibility="public", readers=[], revision=1,
                   deleted_at=utcnow()))
    with app.extensions["kb_db"].reading() as s:
        everything = list(s.scalars(select(Page)))
        for viewer in viewers:
            by_sql = {p.slug for p in s.scalars(access.readable_pages(viewer))}
            by_python = {p.slug for p in everything if access.can_read_page(viewer, p)}
            assert by_sql == by_python, f"{viewer.name or 'anonymous'}: {by_sql ^ by_python}"
            assert "gone" not in by_sql


def test_get_readable_page_hides_old_slugs_of_hidden_pages(app, make_page, client, auth):
    make_page("Secret Handover", visibility="restricted", body="quokkaplume")
    with app.extensions["kb_db"].writing() as s:
        page = s.scalar(select(Page).where(Page.slug == "secret-handover"))
        pages.rename(s, viewer_for(app, "curator"), page, "Renamed Handover", page.revision)
    with app.extensions["kb_db"].reading() as s:
        assert access.get_readable_page(s, viewer_for(app, "reader"), "secret-handover") is None
        assert access.get_readable_page(s, viewer_for(app, "curator"), "secret-handover").slug == "renamed-handover"
    auth.login("reader")
    hidden, missing = client.get("/wiki/secret-handover"), client.get("/wiki/secret-handoveq")
    assert hidden.status_code == missing.status_code == 404
    assert "renamed" not in hidden.get_data(as_text=True).lower()


def test_only_curators_edit_restricted_pages_even_named_contributors(app, make_page):
    make_page("Handover Notes", visibility="restricted", readers=["contributor"], body="private")
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "handover-notes"))
        contributor, curator = viewer_for(app, "contributor"), viewer_for(app, "curator")
        assert access.can_read_page(contributor, page)
        assert not access.can_edit_page(contributor, page)  # or they could make it public
        assert access.can_edit_page(curator, page)
        assert not access.may_set_visibility(contributor, "restricted")


def test_named_contributor_cannot_unrestrict_a_page_through_the_api(app, make_page, client, auth):
    make_page("Handover Notes", visibility="restricted", readers=["contributor"], body="private")
    auth.login("contributor")
    r = client.put("/api/pages/handover-notes", json={"visibility": "public", "base_revision": 1})
    assert r.status_code == 403 and r.get_json()["error"] == "You are not allowed to do that."
    with app.extensions["kb_db"].reading() as s:
        assert s.scalar(select(Page.visibility).where(Page.slug == "handover-notes")) == "restricted"


def test_readers_list_names_are_exact_in_json(app):
    """A user named like part of another name, or in another case, is not a named reader."""
    with app.extensions["kb_db"].writing() as s:
        s.add(Page(slug="p", title="P", kind="page", visibility="restricted", readers=["reader-two", "READER"],
                   revision=1))
    with app.extensions["kb_db"].reading() as s:
        assert list(s.scalars(access.readable_pages(viewer_for(app, "reader")))) == []
    assert json.dumps("reader") == '"reader"'


def test_link_to_a_hidden_page_looks_like_a_link_to_a_missing_page(app, make_page, client, auth):
    make_page("Secret Plan", visibility="restricted", body="quokkaplume")
    make_page("Public Notes", body="See [[Secret Plan]] and [[Secrex Plan]].")
    auth.login("reader")
    html = client.get("/wiki/public-notes").get_data(as_text=True)
    hidden = re.search(r"<a [^>]*>Secret Plan</a>", html).group(0)
    missing = re.search(r"<a [^>]*>Secrex Plan</a>", html).group(0)
    assert re.sub("secret", "X", hidden, flags=re.I) == re.sub("secrex", "X", missing, flags=re.I)
    with app.extensions["kb_db"].reading() as s:
        wanted = dict(pages.wanted_pages(s, viewer_for(app, "reader")))
    assert ("secret-plan" in wanted) == ("secrex-plan" in wanted)
