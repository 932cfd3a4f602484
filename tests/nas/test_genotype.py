import json

import pytest
import torch

from nasr.nas.genotype import DARTS_V2, Genotype, derive_genotype, num_edges
from nasr.nas.spaces import get_space
from nasr.utils.io import FormatError

OPS = get_space("darts")


def test_json_round_trip(tmp_path):
    path = tmp_path / "g.json"
    DARTS_V2.save(path)
    d = json.loads(path.read_text())
    assert list(d) == ["space", "normal", "normal_concat", "reduce", "reduce_concat"]
    assert d["normal"][0] == ["sep_conv_3x3", 0]
    assert Genotype.load(path) == DARTS_V2
    assert Genotype.from_dict(DARTS_V2.to_dict()) == DARTS_V2


def test_unknown_op_error_names_file_op_and_allowed(tmp_path):
    path = tmp_path / "bad.json"
    text = DARTS_V2.to_json().replace('["sep_conv_3x3", 1], ["sep_conv_3x3", 1]',
                                      '["sep_conv_3x3", 1], ["sep_conv_9x9", 1]')
    assert "sep_conv_9x9" in text
    path.write_text(text)
    with pytest.raises(FormatError) as e:
        Genotype.load(path)
    msg = str(e.value)
    assert str(path) in msg and "sep_conv_9x9" in msg and "dil_sep_conv_5x5" in msg
    assert f"{path}:3:" in msg  # the "normal" line


def test_op_outside_the_declared_space_is_rejected():
    d = DARTS_V2.to_dict()
    d["space"] = "asr_revised"  # has no skip_connect
    with pytest.raises(FormatError, match="skip_connect.*asr_revised"):
        Genotype.from_dict(d, source="x.json")


def test_bad_json_and_bad_indices(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "space": "nas1",\n  "normal": [[\n')
    with pytest.raises(FormatError, match=r"broken.json:\d+: not valid JSON"):
        Genotype.load(path)
    d = DARTS_V2.to_dict()
    d["normal"][0] = ["sep_conv_3x3", 2]  # node 0 can only read the two cell inputs
    with pytest.raises(FormatError, match="node 0 can only read inputs 0..1"):
        Genotype.from_dict(d)
    d = DARTS_V2.to_dict()
    d["reduce_concat"] = [2, 3, 9]
    with pytest.raises(FormatError, match="reduce_concat"):
        Genotype.from_dict(d)
    d = DARTS_V2.to_dict()
    d["space"] = "nope"
    with pytest.raises(FormatError, match="unknown op space"):
        Genotype.from_dict(d)


def _alphas(strong):
    """Alphas where `strong` = {edge: {op: value}} and everything else is 0."""
    a = torch.zeros(num_edges(4), len(OPS))
    for e, ops in strong.items():
        for op, v in ops.items():
            a[e, OPS.index(op)] = v
    return a


def test_derive_picks_top2_edges_and_ignores_none():
    # node 0: edges 0,1; node 1: edges 2,3,4; node 2: edges 5..8; node 3: edges 9..13
    a = _alphas({
        0: {"sep_conv_3x3": 2.0}, 1: {"none": 9.0, "max_pool_3x3": 1.0},
        2: {"none": 9.0}, 3: {"dil_sep_conv_5x5": 3.0}, 4: {"skip_connect": 2.5},
        5: {"avg_pool_3x3": 1.0}, 6: {"sep_conv_5x5": 4.0}, 7: {"none": 20.0}, 8: {"dil_sep_conv_3x3": 3.0},
        9: {"max_pool_3x3": 5.0}, 13: {"sep_conv_3x3": 6.0},
    })
    g = derive_genotype(a, a, OPS, "darts")
    assert g.normal[:2] == [("sep_conv_3x3", 0), ("max_pool_3x3", 1)]
    # node 1: edge 2 is dominated by `none`, so its strength is tiny: inputs 1 and 2 win
    assert g.normal[2:4] == [("dil_sep_conv_5x5", 1), ("skip_connect", 2)]
    assert g.normal[4:6] == [("sep_conv_5x5", 1), ("dil_sep_conv_3x3", 3)]
    assert g.normal[6:8] == [("sep_conv_3x3", 4), ("max_pool_3x3", 0)]
    assert g.normal_concat == [2, 3, 4, 5]
    assert all(op != "none" for op, _ in g.normal + g.reduce)


def test_derive_respects_max_ops():
    a = _alphas({
        0: {"avg_pool_3x3": 3.0, "sep_conv_3x3": 2.0}, 1: {"avg_pool_3x3": 2.0, "dil_sep_conv_3x3": 1.0},
        3: {"avg_pool_3x3": 4.0}, 4: {"sep_conv_5x5": 3.5},
        5: {"avg_pool_3x3": 5.0}, 6: {"max_pool_3x3": 4.5},
        9: {"avg_pool_3x3": 6.0}, 10: {"skip_connect": 5.5},
    })
    free = derive_genotype(a, a, OPS, "darts")
    assert sum(op == "avg_pool_3x3" for op, _ in free.normal) == 5
    g = derive_genotype(a, a, OPS, "darts", max_ops={"avg_pool_3x3": 2})
    assert sum(op == "avg_pool_3x3" for op, _ in g.normal) == 2
    # the two strongest avg pools (edges 9 and 5) survive; the weakest (edge 1) became its next op
    assert ("avg_pool_3x3", 0) in g.normal[6:8] and ("avg_pool_3x3", 0) in g.normal[4:6]
    assert g.normal[:2] == [("sep_conv_3x3", 0), ("dil_sep_conv_3x3", 1)]
    # the reduction cell is capped only when asked
    assert sum(op == "avg_pool_3x3" for op, _ in g.reduce) == 5
    with pytest.raises(ValueError, match="unknown ops"):
        derive_genotype(a, a, OPS, "darts", max_ops={"avg_pool_9x9": 1})


def test_derive_with_per_edge_op_lists():
    ops = {"normal": [["none", "sep_conv_3x3", "max_pool_3x3"]] * 14,
           "reduce": [["skip_connect", "dil_sep_conv_3x3", "avg_pool_3x3"]] * 14}
    a = torch.zeros(14, 3)
    a[:, 2] = 1.0
    g = derive_genotype(a, a, ops, "darts")
    assert {op for op, _ in g.normal} == {"max_pool_3x3"}
    assert {op for op, _ in g.reduce} == {"avg_pool_3x3"}


def test_dot_contains_every_op_and_files_are_written(tmp_path):
    from nasr.nas.draw import draw_genotype, genotype_to_dot

    for cell, edges in (("normal", DARTS_V2.normal), ("reduce", DARTS_V2.reduce)):
        dot = genotype_to_dot(DARTS_V2, cell)
        assert dot.startswith("digraph")
        for op, _ in edges:
            assert f'label="{op}"' in dot
        assert dot.count("->") == len(edges) + 4
        assert '"c_{k-2}"' in dot and '"c_{k-1}"' in dot and '"c_{k}"' in dot
        for node in range(4):
            assert f'"{node}"' in dot
    written = draw_genotype(DARTS_V2, tmp_path / "darts_v2")
    assert (tmp_path / "darts_v2_normal.dot").read_text() == genotype_to_dot(DARTS_V2, "normal")
    assert written["reduce"][0] == tmp_path / "darts_v2_reduce.dot"
    with pytest.raises(ValueError, match="normal' or 'reduce"):
        genotype_to_dot(DARTS_V2, "both")


def test_a_missing_graphviz_is_said_once_with_the_install_hint(tmp_path, monkeypatch, caplog):
    import logging
    import shutil

    from nasr.nas import draw

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(draw, "_said_no_dot", False)
    caplog.set_level(logging.WARNING, logger="nasr.nas.draw")
    for k in range(3):  # e.g. one drawing per seed or stage
        written = draw.draw_genotype(DARTS_V2, tmp_path / f"g{k}")
        assert [p.suffix for p in written["normal"]] == [".dot"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "apt-get install graphviz" in said[0] and "not on PATH" in said[0]


def test_search_alphas_go_to_one_tensorboard_run_as_heatmaps(tmp_path):
    """One run per experiment: the alphas are an image per cell, not a run per op and edge."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from nasr.bin.search import log_alphas
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space

    net = SearchNetwork(1, 3, 4, 3, get_space("nas1"), reduction="thirds")
    writer = SummaryWriter(str(tmp_path / "tensorboard"))
    for epoch in (1, 2):
        log_alphas(writer, net, epoch)
    writer.close()
    runs = {p.parent for p in (tmp_path / "tensorboard").rglob("events.out.tfevents.*")}
    assert runs == {tmp_path / "tensorboard"}
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["alphas/normal", "alphas/reduce"]
    assert [e.step for e in events.Images("alphas/normal")] == [1, 2]
