"""The candidate store on both backends (an SQLite file, a PostgreSQL server): claims, budget,
concurrent writers, abandoned candidates, schema versions and foreign databases."""
import hashlib
import multiprocessing as mp
import os
import signal
import sqlite3
import time

import pytest
import sqlalchemy as sa

from nasr.tower.store import CANDIDATES, CandidateStore, StoreError


def _claim(store, blocks, trainer="1", budget=None):
    return store.claim(lambda done, running: {"blocks": blocks, "mutation": "init"}, trainer, budget)


def _finish(store, cand, loss):
    store.finish(cand.id, loss=loss, acc=0.5, params=10, steps=5, curve=[[5, 0.5, loss]], checkpoint=None,
                 train_seconds=1.0)


def test_claim_finish_best_and_budget(store_location):
    with CandidateStore(store_location) as s:
        c1 = _claim(s, ["lstm_8"])
        c2 = _claim(s, ["rnn_8"])
        assert _claim(s, ["proj_8"], budget=2) is None  # budget counts running + done
        _finish(s, c1, 2.0)
        _finish(s, c2, 1.0)
        assert [c.id for c in s.best(2)] == [c2.id, c1.id]
        assert s.get(c1.id).curve == [[5, 0.5, 2.0]]
        c3 = _claim(s, ["proj_8"], trainer="7")
        # The trainer restarts under the same id: only its in-flight candidate is lost.
        assert s.mark_lost("7") == 1
        assert s.get(c3.id).status == "lost" and s.counts() == {"done": 2, "lost": 1}
    with CandidateStore(store_location, create=False) as s:  # reopened: everything is still there
        assert [c.blocks for c in s.candidates()] == [["lstm_8"], ["rnn_8"], ["proj_8"]]


def test_failed_candidates_use_up_the_budget(store_location):
    # Before: only running + done counted, so a setup where every candidate fails never stopped.
    with CandidateStore(store_location) as s:
        for blocks in (["lstm_8"], ["rnn_8"]):
            s.fail(_claim(s, blocks, budget=2).id, "ValueError: diverged")
        assert _claim(s, ["proj_8"], budget=2) is None
        assert s.counts() == {"failed": 2}


def _dump(location):
    """Every row of the store's tables, to show a refused store was not written."""
    engine = sa.create_engine(location if "://" in location else f"sqlite:///{location}")
    with engine.connect() as con:
        rows = [tuple(r) for t in ("tower_store_meta", "tower_candidates")
                for r in con.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1"))]
    engine.dispose()
    return rows


def test_other_schema_version_is_refused_and_untouched(store_location):
    with CandidateStore(store_location) as s:
        _claim(s, ["rnn_8"])
        s.engine.dispose()
        with s.engine.begin() as con:
            con.execute(sa.text("UPDATE tower_store_meta SET value='99' WHERE key='schema_version'"))
    before = _dump(store_location)
    digest = hashlib.sha256(open(store_location, "rb").read()).hexdigest() if "://" not in store_location else None
    with pytest.raises(StoreError, match=r"candidate store schema version 99.*reads version 2.*fix"):
        CandidateStore(store_location)
    assert _dump(store_location) == before
    if digest:
        assert hashlib.sha256(open(store_location, "rb").read()).hexdigest() == digest


def test_non_store_files_are_refused_and_untouched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(StoreError, match="not an SQLite database"):
        CandidateStore(text)
    assert text.read_text() == "hello\n"
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="not a candidate store.*users"):
        CandidateStore(other)
    assert hashlib.sha256(other.read_bytes()).hexdigest() == digest


def test_sqlite_url_and_path_name_the_same_store(tmp_path):
    with CandidateStore(tmp_path / "a.db") as s:
        _claim(s, ["rnn_8"])
    with CandidateStore(f"sqlite:///{tmp_path / 'a.db'}", create=False) as s:
        assert [c.blocks for c in s.candidates()] == [["rnn_8"]]
    with pytest.raises(StoreError, match="in-memory SQLite"):
        CandidateStore("sqlite://")


def test_server_database_keeps_its_other_tables(pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as con:
        con.execute(sa.text("CREATE TABLE users (name TEXT)"))
        con.execute(sa.text("INSERT INTO users VALUES ('ada')"))
    with CandidateStore(pg_url) as s:
        _claim(s, ["rnn_8"])
    with engine.connect() as con:
        assert con.execute(sa.text("SELECT name FROM users")).scalars().all() == ["ada"]
    # A tower_candidates table that nasr did not write is refused, not adopted.
    with engine.begin() as con:
        con.execute(sa.text("DROP TABLE tower_store_meta"))
    engine.dispose()
    with pytest.raises(StoreError, match="tower_candidates table but no tower_store_meta"):
        CandidateStore(pg_url)


def test_unusable_urls_fail_clearly_without_the_password():
    with pytest.raises(StoreError, match="no database driver for 'postgresql\\+nosuchdriver'.*fix"):
        CandidateStore("postgresql+nosuchdriver://u:pw@localhost/db")
    # Nothing listens on port 9 (discard): the message names the URL, never the password.
    with pytest.raises(StoreError, match=r"cannot read the store.*fix: check the URL") as e:
        CandidateStore("postgresql://nasr:s3cret@127.0.0.1:9/db?connect_timeout=2")
    assert "s3cret" not in str(e.value) and "nasr:***@127.0.0.1:9/db" in str(e.value)


def _writer(location, trainer, n):
    s = CandidateStore(location)
    for i in range(n):
        c = s.claim(lambda done, running: {"blocks": [f"rnn_{len(done) + len(running) + 1}"]}, trainer)
        _finish(s, c, float(i))
    s.close()


def test_two_processes_write_concurrently_without_losing_records(store_location):
    CandidateStore(store_location).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(store_location, str(t), 40)) for t in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with CandidateStore(store_location) as s:
        cands = s.candidates()
    assert len(cands) == 80 and all(c.status == "done" for c in cands)
    assert {c.trainer_id for c in cands} == {"1", "2"}
    # Each claim saw every earlier claim (the transaction serialises them): names are all distinct.
    assert len({tuple(c.blocks) for c in cands}) == 80


def _claim_and_hang(location, ready):
    s = CandidateStore(location)
    c = _claim(s, ["lstm_8"], trainer="doomed")
    with s.keep_alive(c.id):
        ready.set()
        time.sleep(600)


def test_a_killed_trainer_loses_only_its_candidate(store_location):
    # Before: the candidate stayed `running` (and its tower taken) until a trainer with the same
    # id started again, which never happens when the job runner starts trainers 1..L once.
    with CandidateStore(store_location) as s:
        _finish(s, _claim(s, ["rnn_8"]), 1.0)
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        p = ctx.Process(target=_claim_and_hang, args=(store_location, ready))
        p.start()
        assert ready.wait(60)
        assert s.counts() == {"done": 1, "running": 1}
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        seen = {}

        def propose(done, running):
            seen["running"] = [c.blocks for c in running]
            return {"blocks": ["lstm_8"], "mutation": "init"}

        c = s.claim(propose, "2")
        assert seen["running"] == []  # the dead trainer's tower is free again, and claimed
        assert s.counts() == {"done": 1, "lost": 1, "running": 1} and c.blocks == ["lstm_8"]


def test_heartbeats_keep_a_remote_candidate_and_a_late_result_is_kept(store_location):
    with CandidateStore(store_location, lease_s=0.5) as s:
        alive = _claim(s, ["rnn_8"])
        with s.keep_alive(alive.id):  # beats every 0.05 s
            time.sleep(0.3)
            first = s.get(alive.id).heartbeat
            # A loaded machine may starve the beating thread for a while (CI saw no beat in 0.3 s):
            # wait for the next beat, up to 10 s, rather than a fixed time.
            deadline = time.time() + 10.0
            while s.get(alive.id).heartbeat <= first and time.time() < deadline:
                time.sleep(0.05)
            assert s.get(alive.id).heartbeat > first
            # Another machine's candidate whose heartbeat stopped 1 s ago: its trainer is gone.
            with s.engine.begin() as con:
                con.execute(sa.update(CANDIDATES).values(host="elsewhere", heartbeat=time.time() - 1.0)
                            .where(CANDIDATES.c.id != alive.id))
                con.execute(sa.update(CANDIDATES).values(host="elsewhere").where(CANDIDATES.c.id == alive.id))
            remote = _claim(s, ["proj_8"])  # claims mark gone trainers' candidates lost first
        assert s.get(alive.id).status == "running"  # beating: kept although on another host
        time.sleep(0.6)
        _claim(s, ["svdf_8_4"])
        assert s.get(alive.id).status == "lost" and s.get(remote.id).status == "lost"
        # The trainer was slow, not gone: its result still counts.
        _finish(s, alive, 0.5)
        assert s.get(alive.id).status == "done" and s.best(1)[0].id == alive.id


def _open_tuner(location, barrier, errors):
    from nasr.tower.tune import Tuner

    barrier.wait()
    try:
        with CandidateStore(location) as s:
            Tuner(s, {"enabled": True})
    except Exception as e:  # noqa: BLE001
        errors.put(f"{type(e).__name__}: {e}")


def test_trainers_opening_the_tuner_at_once_do_not_race(store_location):
    # Two trainers creating Optuna's tables in one database at the same moment failed with
    # "table studies already exists" (seen in CI) before the creation was serialized.
    CandidateStore(store_location).close()
    ctx = mp.get_context("spawn")
    barrier, errors = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_open_tuner, args=(store_location, barrier, errors)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found and all(p.exitcode == 0 for p in procs)
    from nasr.tower.tune import tuning_summary

    with CandidateStore(store_location) as s:
        assert s.has_table("studies") and tuning_summary(s) == {"trials": 0}


def test_a_live_trainers_candidate_is_not_given_up_by_a_second_trainer_with_its_id(tmp_path):
    # Before: the second trainer marked the live trainer's candidate lost.
    import subprocess

    with CandidateStore(tmp_path / "store.db") as s:
        cand = _claim(s, ["lstm_8"], trainer="5")
        live = subprocess.Popen(["sleep", "60"])
        try:
            with s._write() as con:  # the candidate belongs to another live process of this host
                con.execute(sa.update(CANDIDATES).where(CANDIDATES.c.id == cand.id).values(pid=live.pid))
            with pytest.raises(StoreError, match=f"trainer id '5' is in use.*pid {live.pid}"):
                s.mark_lost("5")
            assert s.get(cand.id).status == "running"
        finally:
            live.kill()
            live.wait()
        assert s.mark_lost("5") == 1  # its process is gone: a restarted trainer gives it up
