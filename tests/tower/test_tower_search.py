import random

import pytest

from nasr.tower.search import SearchSettings, mutate, select_candidates, staircase_lr, train_kwargs
from nasr.tower.store import Candidate

BLOCKS = ["rnn_8", "lstm_8", "proj_8", "svdf_8_4"]


def cands(*specs):
    return [Candidate(id=i, blocks=list(b), status="done", trainer_id="1", loss=loss)
            for i, (b, loss) in enumerate(specs, 1)]


def test_first_tower_is_one_random_block():
    a, b, how = mutate([], SearchSettings(BLOCKS), random.Random(0))
    assert a is None and how == "init" and len(b) == 1 and b[0] in BLOCKS


def test_replace_until_enough_exploration_then_grow():
    s = SearchSettings(BLOCKS, max_blocks=3, explore_m=5)
    # |C| = 9: floor(9/5) = 1, |a| = 1 is not < 1 -> replace a block of the best tower.
    c = cands(*[(["rnn_8"], 2.0)] * 8, (["lstm_8"], 1.0))
    a, b, how = mutate(c, s, random.Random(0))
    assert a.blocks == ["lstm_8"] and how == "replace" and len(b) == 1
    # |C| = 10: floor(10/5) = 2 > 1 -> grow the best tower by one block.
    c = c + cands((["proj_8"], 3.0))
    a, b, how = mutate(c, s, random.Random(0))
    assert how == "grow" and b[:1] == ["lstm_8"] and len(b) == 2 and b[1] in BLOCKS


def test_depth_is_capped_at_k():
    s = SearchSettings(BLOCKS, max_blocks=2, explore_m=1)
    c = cands(*[(["rnn_8", "rnn_8"], 1.0)] + [(["proj_8"], 2.0)] * 20)
    a, b, how = mutate(c, s, random.Random(1))
    assert how == "replace" and len(b) == 2
    assert sum(x != y for x, y in zip(a.blocks, b)) <= 1


def test_mutation_avoids_towers_already_taken():
    s = SearchSettings(BLOCKS)
    c = cands((["rnn_8"], 1.0))
    taken = [["rnn_8"], ["lstm_8"], ["proj_8"]]
    for seed in range(10):
        _, b, _ = mutate(c, s, random.Random(seed), taken)
        assert b == ["svdf_8_4"]


def test_grow_falls_back_to_replace_when_every_extension_is_taken():
    # The best tower stays best and may grow, but each of its |B| extensions was trained already:
    # an untried replacement is trained instead of an extension again.
    s = SearchSettings(BLOCKS, max_blocks=3, explore_m=1)
    c = cands((["rnn_8"], 1.0), *[(["rnn_8", u], 2.0) for u in BLOCKS])
    for seed in range(10):
        a, b, how = mutate(c, s, random.Random(seed), [x.blocks for x in c])
        assert a.blocks == ["rnn_8"] and how == "replace"
        assert len(b) == 1 and b[0] in BLOCKS and b != ["rnn_8"]


def test_replace_falls_back_to_grow_when_every_replacement_is_taken():
    s = SearchSettings(BLOCKS, max_blocks=2, explore_m=5)
    c = cands((["rnn_8"], 1.0), *[([u], 2.0) for u in BLOCKS[1:]])   # |C| = 4: not yet time to grow
    a, b, how = mutate(c, s, random.Random(0), [x.blocks for x in c])
    assert how == "grow" and b[0] == "rnn_8" and len(b) == 2


def test_whole_neighbourhood_taken_trains_a_tower_again():
    s = SearchSettings(BLOCKS, max_blocks=1, explore_m=1)
    c = cands(*[([u], float(i)) for i, u in enumerate(BLOCKS)])
    a, b, how = mutate(c, s, random.Random(0), [x.blocks for x in c])
    assert a.blocks == [BLOCKS[0]] and how == "replace" and len(b) == 1 and b != a.blocks


def test_search_trains_no_tower_twice_while_untried_ones_are_in_reach():
    # One tower stays the best (the synthetic LID run's case): 30 candidates, 10 blocks, K=3, M=3.
    blocks = [f"rnn_{k}" for k in range(8, 18)]
    s = SearchSettings(blocks, max_blocks=3, explore_m=3)
    rng, done = random.Random(1), []
    for i in range(30):
        a, b, how = mutate(done, s, rng, [x.blocks for x in done])
        assert b not in [x.blocks for x in done], (i, b, how)
        loss = 0.5 if b == ["rnn_12"] else 1.0 + 0.01 * i
        done.append(Candidate(id=i + 1, blocks=b, status="done", trainer_id="1", loss=loss))


def test_select_skips_unevaluated():
    c = cands((["rnn_8"], 1.0)) + [Candidate(id=9, blocks=["x"], status="failed", trainer_id="1")]
    assert [x.id for x in select_candidates(c)] == [1]


def test_staircase_lr_decays_times_times_over_the_steps():
    # 1000 steps, 4 decays: at steps 201, 401, 601, 801; the last stretch runs at lr * 0.5**4.
    lrs = [staircase_lr(t, 1000, 1.0, 0.5, 4) for t in range(1, 1001)]
    assert lrs[0] == lrs[199] == 1.0 and lrs[200] == 0.5
    assert sorted(set(lrs), reverse=True) == [1.0, 0.5, 0.25, 0.125, 0.0625]
    assert lrs[-1] == 0.0625 and lrs.index(0.0625) == 800
    assert staircase_lr(500, 1000, 3e-3, 0.86156, 0) == 3e-3


def test_train_kwargs_take_the_schedule_from_the_hyperparameters():
    kw = train_kwargs({"lr": 1e-3, "batch_size": 20, "dropout": 0.3, "lr_decay": 0.86156, "lr_decay_times": 4})
    assert kw["lr_decay"] == pytest.approx(0.86156) and kw["lr_decay_times"] == 4 and kw["batch_size"] == 20
    assert train_kwargs({"lr": 1e-3, "batch_size": 20})["lr_decay_times"] == 0   # a store of an older search


def test_training_defaults_are_the_papers_footnote_3():
    import math
    from pathlib import Path

    import yaml

    from nasr.bin.tower_search import DEFAULTS
    from nasr.tower.tune import DEFAULTS as TUNE_DEFAULTS

    paper = {"lr": 5.24e-5, "dropout": 0.3, "batch_size": 20, "lr_decay": 0.86156, "lr_decay_times": 4}
    assert {k: DEFAULTS["train"][k] for k in paper} == paper
    root = Path(__file__).resolve().parents[2]
    lid = yaml.safe_load((root / "egs/lid/conf/tower_b1.yaml").read_text())
    kws = yaml.safe_load((root / "egs/speech_commands/conf/tower_b2.yaml").read_text())
    assert {k: lid["train"][k] for k in paper} == paper
    assert kws["train"]["lr"] == paper["lr"] and kws["train"]["dropout"] == paper["dropout"]
    # TPE's log-uniform lr range is centred (geometric mean) on the paper's lr
    for lo, hi in (TUNE_DEFAULTS["lr"], lid["tune"]["lr"], kws["tune"]["lr"]):
        assert math.sqrt(lo * hi) == pytest.approx(paper["lr"], rel=1e-6) and hi > lo
