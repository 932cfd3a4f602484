from collections import Counter

import pytest

from nasr.bin import random_genotype as cli
from nasr.nas.genotype import Genotype
from nasr.nas.random_genotype import random_genotype
from nasr.nas.spaces import get_space


def test_same_seed_same_cells_other_seed_other_cells():
    a, b = random_genotype("nas1", 1), random_genotype("nas1", 1)
    assert a == b
    assert random_genotype("nas1", 2) != a


def test_draws_cover_the_space_uniformly_and_never_none():
    ops = Counter()
    inputs_node3 = Counter()
    for seed in range(400):
        g = random_genotype("nas2", seed)
        assert g.space == "nas2" and g.normal_concat == [2, 3, 4, 5]
        for cell in (g.normal, g.reduce):
            ops.update(op for op, _ in cell)
            assert cell[6][1] != cell[7][1]  # two distinct inputs per node
            inputs_node3.update(j for _, j in cell[6:8])
    assert "none" not in ops
    assert set(ops) == set(get_space("nas2")) - {"none"}
    # 400 x 16 edges over 7 ops: each about 914; uniform within a loose band
    assert min(ops.values()) > 780 and max(ops.values()) < 1050
    assert set(inputs_node3) == {0, 1, 2, 3, 4}


def test_caps_hold_in_both_cells():
    caps = {"avg_pool_3x3": 1, "max_pool_3x3": 0}
    for seed in range(200):
        g = random_genotype("nas1", seed, max_ops=caps, max_ops_reduce=caps)
        for cell in (g.normal, g.reduce):
            n = Counter(op for op, _ in cell)
            assert n["avg_pool_3x3"] <= 1 and n["max_pool_3x3"] == 0


def test_impossible_caps_and_unknown_ops_are_errors():
    with pytest.raises(ValueError, match="unknown ops"):
        random_genotype("nas1", 1, max_ops={"conv_9x9": 1})
    everything = {op: 0 for op in get_space("nas1")}
    with pytest.raises(ValueError, match="raise the caps"):
        random_genotype("nas1", 1, max_ops=everything)


def test_cli_reads_space_and_caps_from_the_search_config(tmp_path):
    conf = tmp_path / "search_nas2.yaml"
    conf.write_text("space: nas2\nmodel: {steps: 3, multiplier: 3}\n")
    profile = tmp_path / "synth.yaml"
    profile.write_text("search_nas2:\n  max_ops: {conv_3x3: 0, conv_5x5: 0}\n")
    out = tmp_path / "exp" / "genotype.json"
    assert cli.main(["--config", str(conf), "--profile", str(profile), "--seed", "3", "--out", str(out)]) == 0
    g = Genotype.load(out)
    assert g.space == "nas2" and len(g.normal) == 6 and g.normal_concat == [2, 3, 4]
    assert not {"conv_3x3", "conv_5x5"} & {op for op, _ in g.normal}
