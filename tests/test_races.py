"""Writes that race: several server processes doing the same write at the same moment, on this test's database
(SQLite, and PostgreSQL on the second leg). One wins, the others get a 4xx that says why; never a 5xx, nothing
acknowledged is lost, nothing is stored twice.

Each race starts PROCESSES processes (as several hosts or gunicorn workers would be), lets them all reach a barrier,
then runs one job in each and compares what they were told with what the database holds.
"""
from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conftest import PASSWORD
from kb import accounts
from kb.models import Invitation, Page, Revision, Tour, TourRead, TourRevision, User, Watch

PROCESSES = 4


def _worker(job: str, url: str, data_dir: str, args: dict, barrier, results) -> None:
    from kb import create_app

    app = create_app({"DATA_DIR": data_dir, "DATABASE_URL": url, "TESTING": True, "SEARCH_BACKGROUND": False,
                      "SECRET_KEY": args["secret_key"], "WTF_CSRF_ENABLED": False})
    if "free_failures" in args:
        # Past the free failures, wait an hour: what reaches the password check no longer depends on timing.
        free = args["free_failures"]
        accounts._wait_after = lambda kind, failures: timedelta(hours=1 if failures >= free[kind] else 0)
    try:
        barrier.wait(timeout=60)
        results.put(JOBS[job](app, args))
    except BaseException as e:  # reported, so the test fails with the reason instead of waiting for a result
        results.put(("crash", repr(e)))
        raise
    finally:
        app.extensions["kb_db"].dispose()


def _race(app, job: str, args: dict, processes: int = PROCESSES) -> list:
    ctx = mp.get_context("forkserver")  # a clean process that imported kb once, forked for each worker: quick
    ctx.set_forkserver_preload(["kb", "kb.web", "kb.pages", "kb.tours", "kb.accounts", "kb.curation.verification"])
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, app.config["DATABASE_URL"], app.config["DATA_DIR"],
                                               {**args, "n": i, "secret_key": app.config["SECRET_KEY"]},
                                               barrier, results)) for i in range(processes)]
    for p in procs:
        p.start()
    out = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    crashes = [o for o in out if isinstance(o, tuple) and o and o[0] == "crash"]
    assert not crashes, crashes
    assert all(p.exitcode == 0 for p in procs)
    return out


def _api(app, method: str, path: str, token: str, **kw):
    r = getattr(app.test_client(), method)(path, headers={"Authorization": f"Bearer {token}"}, **kw)
    return r.status_code, (r.get_json(silent=True) or {})


# --- the jobs, run in each process --------------------------------------------------------------------------------

def _job_create_page(app, args):
    status, body = _api(app, "put", "/api/pages/same-address", args["token"],
                        json={"title": "Same address", "body": f"written by {args['n']}"})
    return status, body.get("revision"), body.get("details")


def _job_save_from_base(app, args):
    status, body = _api(app, "put", "/api/pages/shared", args["token"],
                        json={"body": f"saved by {args['n']}", "base_revision": args["base"]})
    return status, body.get("revision"), body.get("details")


def _job_wrong_passwords(app, args):
    client = app.test_client()
    statuses = []
    for _ in range(args["tries"]):
        r = client.post("/login", data={"name": "reader", "password": "wrong password!!"},
                        environ_base={"REMOTE_ADDR": "198.51.100.9"})
        statuses.append(r.status_code)
    return statuses


def _job_save_tour(app, args):
    from kb import tours
    from kb.errors import KBError

    from conftest import viewer_for

    spec = tours.clean_spec({"title": "Raced tour", "stops": [{"page": "shared", "note": f"by {args['n']}"}]}, "")
    try:
        with app.extensions["kb_db"].writing() as s:
            tours.save_tour(s, viewer_for(app, "curator"), spec, base_revision=args.get("base"),
                            slug=args.get("slug"), creating=args.get("creating", False))
        return "saved"
    except KBError as e:
        return type(e).__name__


def _job_mark_read(app, args):
    status, _ = _api(app, "post", "/api/tours/raced-tour/progress", args["token"], json={"stop": 1})
    return status


def _job_accept_invitation(app, args):
    r = app.test_client().post(f"/invite/{args['secret']}",
                               data={"password": f"a new password {args['n']}", "confirm_password":
                                     f"a new password {args['n']}", "display_name": "New"})
    return r.status_code


def _job_watch(app, args):
    client = app.test_client()
    client.set_cookie("session", args["cookie"])  # signed in once before the race (parallel sign-ins are throttled)
    return client.post("/curate/watch", data={"page": "shared", "on": "1"}).status_code


def _job_verify(app, args):
    from kb.curation import verification
    from kb.errors import KBError
    from kb.models import utcnow

    from conftest import viewer_for

    try:
        with app.extensions["kb_db"].writing() as s:
            page = s.scalar(select(Page).where(Page.slug == "shared"))
            verification.verify(s, viewer_for(app, "curator"), page, utcnow())
        return "verified"
    except KBError as e:
        return type(e).__name__


JOBS = {name[5:]: f for name, f in globals().items() if name.startswith("_job_")}


# --- the races ----------------------------------------------------------------------------------------------------

@pytest.fixture
def token(runner):
    return runner.invoke(args=["token", "create", "contributor"]).output.strip()


@pytest.fixture
def shared(app, token):
    status, body = _api(app, "put", "/api/pages/shared", token, json={"title": "Shared", "body": "start"})
    assert status == 201
    return body["revision"]


def test_creates_of_one_address_give_one_201_and_409s(app, token):
    out = _race(app, "create_page", {"token": token})
    statuses = sorted(status for status, _, _ in out)
    assert statuses == [201] + [409] * (PROCESSES - 1), out
    assert all(details for status, _, details in out if status == 409), "a 409 carries the diff"
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "same-address"))
        assert page.revision == 1
        assert s.scalar(select(func.count(Revision.id)).where(Revision.page_id == page.id)) == 1
        winner = next(n for n, (status, _, _) in enumerate(out) if status == 201)
        assert page.body.startswith("written by")
        assert winner is not None


def test_saves_from_one_base_give_one_winner_and_409s_with_the_diff(app, token, shared):
    out = _race(app, "save_from_base", {"token": token, "base": shared})
    assert sorted(status for status, _, _ in out) == [200] + [409] * (PROCESSES - 1), out
    assert all("saved by" in (details or {}).get("diff", "") for status, _, details in out if status == 409)
    with app.extensions["kb_db"].reading() as s:
        stored = sorted(s.scalars(select(Revision.number).join(Page).where(Page.slug == "shared")))
    assert stored == [1, 2]


def test_parallel_wrong_passwords_reach_the_check_no_more_often_than_allowed(app):
    free = {"account": 3, "address": 100}
    out = _race(app, "wrong_passwords", {"tries": 2, "free_failures": free})
    statuses = [s for run in out for s in run]
    assert set(statuses) <= {401, 429}, statuses  # no 500
    assert statuses.count(401) == free["account"], statuses  # each failure counted once, none lost
    with app.extensions["kb_db"].reading() as s:
        counted = s.scalar(select(accounts.SignInFailure.failures)
                           .where(accounts.SignInFailure.key == "account:reader"))
    assert counted == free["account"]


def test_saves_of_one_tour_from_one_base_give_one_winner(app, shared):
    assert _race(app, "save_tour", {"creating": True}).count("saved") == 1
    with app.extensions["kb_db"].reading() as s:
        tour = s.scalar(select(Tour).where(Tour.slug == "raced-tour"))
        assert tour.revision == 1
    out = _race(app, "save_tour", {"slug": "raced-tour", "base": 1})
    assert sorted(out) == ["EditConflict"] * (PROCESSES - 1) + ["saved"], out
    with app.extensions["kb_db"].reading() as s:
        assert sorted(s.scalars(select(TourRevision.number).where(TourRevision.tour_id == tour.id))) == [1, 2]


def test_one_stop_marked_read_at_once_is_one_read(app, runner, shared):
    assert _race(app, "save_tour", {"creating": True}, processes=1) == ["saved"]
    reader_token = runner.invoke(args=["token", "create", "reader"]).output.strip()
    assert _race(app, "mark_read", {"token": reader_token}) == [200] * PROCESSES
    with app.extensions["kb_db"].reading() as s:
        assert s.scalar(select(func.count(TourRead.id))) == 1


def test_one_invitation_used_at_once_makes_one_account(app):
    with app.extensions["kb_db"].writing() as s:
        secret = accounts.create_invitation(s, None, "newcomer", "reader")
    out = _race(app, "accept_invitation", {"secret": secret})
    assert all(status < 500 for status in out), out
    assert sum(1 for status in out if status in (200, 302, 303)) == 1, out
    with app.extensions["kb_db"].reading() as s:
        assert s.scalar(select(func.count(User.id)).where(User.name == "newcomer")) == 1
        assert s.scalar(select(Invitation.used_at)) is not None


def test_watching_one_page_at_once_leaves_one_watch(app, shared):
    client = app.test_client()
    assert client.post("/login", data={"name": "reader", "password": PASSWORD}).status_code == 302
    out = _race(app, "watch", {"cookie": client.get_cookie("session").value})
    assert all(status < 500 for status in out), out
    with app.extensions["kb_db"].reading() as s:
        assert s.scalar(select(func.count(Watch.id))) == 1


def test_one_page_verified_at_once_is_verified(app, shared):
    """Verification lives in kb/curation/verification.py: each request records who verified which revision; the last one stands."""
    assert _race(app, "verify", {}) == ["verified"] * PROCESSES
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "shared"))
        assert page.verified_revision == page.revision == 1
        assert s.scalar(select(func.count(accounts.AuditEntry.id)).where(accounts.AuditEntry.action == "page.verify")) \
            == PROCESSES


def _job_finish_handover(app, args):
    from kb.curation import handover
    from kb.errors import KBError
    from kb.models import Draft

    from conftest import viewer_for

    viewer = viewer_for(app, "contributor")
    try:
        with app.extensions["kb_db"].writing() as s:
            draft = Draft(user_id=viewer.user_id, kind="handover", step=6,
                          data={"title": "Handover: Superintendent", "visibility": "staff", "role": "Superintendent",
                                "body": f"from {args['n']}"})
            s.add(draft)
            s.flush()
            return handover.finish_handover(s, viewer, draft).page.slug
    except KBError as e:
        return type(e).__name__


JOBS["finish_handover"] = _job_finish_handover


def test_handovers_with_one_title_finished_at_once_are_all_saved(app):
    out = _race(app, "finish_handover", {})
    assert all(o.startswith("handover-superintendent") for o in out), out  # never a 5xx; on SQLite -2, -3, ...
    assert len(set(out)) == PROCESSES
