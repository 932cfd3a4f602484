import hashlib
import multiprocessing as mp
import sqlite3

import pytest

from nasr.tower.store import CandidateStore, StoreError


def _claim(store, blocks, trainer="1", budget=None):
    return store.claim(lambda done, running: {"blocks": blocks, "mutation": "init"}, trainer, budget)


def test_claim_finish_best_and_budget(tmp_path):
    with CandidateStore(tmp_path / "a.db") as s:
        c1 = _claim(s, ["lstm_8"])
        c2 = _claim(s, ["rnn_8"])
        assert _claim(s, ["proj_8"], budget=2) is None  # budget counts running + done
        s.finish(c1.id, loss=2.0, acc=0.5, params=10, steps=5, curve=[[5, 0.5, 2.0]], checkpoint=None,
                 train_seconds=1.0)
        s.finish(c2.id, loss=1.0, acc=0.6, params=10, steps=5, curve=[], checkpoint=None, train_seconds=1.0)
        assert [c.id for c in s.best(2)] == [c2.id, c1.id]
        assert s.get(c1.id).curve == [[5, 0.5, 2.0]]
        c3 = _claim(s, ["proj_8"], trainer="7")
        # The trainer restarts under the same id: only its in-flight candidate is lost.
        assert s.mark_lost("7") == 1
        assert s.get(c3.id).status == "lost" and s.counts() == {"done": 2, "lost": 1}


def test_failed_candidates_use_up_the_budget(tmp_path):
    # Before: only running + done counted, so a setup where every candidate fails never stopped.
    with CandidateStore(tmp_path / "a.db") as s:
        for blocks in (["lstm_8"], ["rnn_8"]):
            s.fail(_claim(s, blocks, budget=2).id, "ValueError: diverged")
        assert _claim(s, ["proj_8"], budget=2) is None
        assert s.counts() == {"failed": 2}


def test_other_schema_version_is_refused_and_untouched(tmp_path):
    path = tmp_path / "a.db"
    CandidateStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE tower_store_meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match=r"a.db: candidate store schema version 99.*reads version 1.*fix"):
        CandidateStore(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


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


def _writer(path, trainer, n):
    s = CandidateStore(path)
    for i in range(n):
        c = s.claim(lambda done, running: {"blocks": [f"rnn_{len(done) + len(running) + 1}"]}, trainer)
        s.finish(c.id, loss=float(i), acc=0.0, params=1, steps=1, curve=[], checkpoint=None, train_seconds=0.0)
    s.close()


def test_two_processes_write_concurrently_without_losing_records(tmp_path):
    path = tmp_path / "a.db"
    CandidateStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), str(t), 40)) for t in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = CandidateStore(path)
    cands = s.candidates()
    assert len(cands) == 80 and all(c.status == "done" for c in cands)
    assert {c.trainer_id for c in cands} == {"1", "2"}
    # Each claim saw every earlier claim (the transaction serialises them): names are all distinct.
    assert len({tuple(c.blocks) for c in cands}) == 80


def _open_tuner(path, barrier, errors):
    from nasr.tower.tune import Tuner

    barrier.wait()
    try:
        Tuner(path, {"enabled": True})
    except Exception as e:  # noqa: BLE001
        errors.put(f"{type(e).__name__}: {e}")


def test_trainers_opening_the_tuner_at_once_do_not_race(tmp_path):
    # Two trainers creating Optuna's tables in one file at the same moment failed with
    # "table studies already exists" (seen in CI) before the creation was serialized.
    path = tmp_path / "store.db"
    CandidateStore(path).close()
    ctx = mp.get_context("spawn")
    barrier, errors = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_open_tuner, args=(path, barrier, errors)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found and all(p.exitcode == 0 for p in procs)
