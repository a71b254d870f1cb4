"""Several server processes saving at once: every acknowledged save is stored, none twice, none lost."""
from __future__ import annotations

import multiprocessing as mp

from sqlalchemy import func, select

from kb.models import Page, Revision

PROCESSES = 4


def _worker(data_dir: str, url: str, token: str, base: int, label: str, barrier, results, rounds: int) -> None:
    from kb import create_app, instance

    app = create_app({"DATA_DIR": data_dir, "DATABASE_URL": url, "TESTING": True, "SEARCH_BACKGROUND": False,
                      "SECRET_KEY": "t"})
    instance.prepare(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    barrier.wait()
    acked = []
    for i in range(rounds):
        if rounds > 1:
            # Each round starts from the newest revision, so most saves succeed and some race.
            base = client.get("/api/pages/shared", headers=headers).get_json()["revision"]
        r = client.put("/api/pages/shared", json={"body": f"{label} round {i}", "base_revision": base},
                       headers=headers)
        if r.status_code in (200, 201):
            acked.append(r.get_json()["revision"])
        else:
            assert r.status_code == 409, (r.status_code, r.get_data(as_text=True))
    results.put((label, acked))


def _run(app, runner, rounds: int) -> tuple[list[int], list[int]]:
    token = runner.invoke(args=["token", "create", "contributor"]).output.strip()
    client = app.test_client()
    assert client.put("/api/pages/shared", json={"title": "Shared", "body": "start"},
                      headers={"Authorization": f"Bearer {token}"}).status_code == 201
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(app.config["DATA_DIR"], app.config["DATABASE_URL"], token, 1, f"p{i}", barrier, results, rounds))
             for i in range(PROCESSES)]
    for p in procs:
        p.start()
    acked = []
    for _ in procs:
        acked.extend(results.get(timeout=120)[1])
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    with app.extensions["kb_db"].reading() as s:
        stored = list(s.scalars(select(Revision.number).join(Page).where(Page.slug == "shared")))
    return acked, stored


def test_same_base_from_several_processes_only_one_wins(app, runner):
    acked, stored = _run(app, runner, rounds=1)
    assert acked == [2]  # the first save wins; the others got 409
    assert sorted(stored) == [1, 2]


def test_acknowledged_saves_equal_stored_revisions(app, runner):
    acked, stored = _run(app, runner, rounds=6)
    assert len(stored) == len(set(stored)), "duplicate revision numbers"
    assert sorted(acked) == sorted(n for n in stored if n > 1)
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "shared"))
        assert page.revision == max(stored) == s.scalar(select(func.count(Revision.id)))
