
import pytest
import torch

from nasr.tower.blocks import BlockError, build_block, canonical_name, load_block_set, parse_block_name
from nasr.tower.tower import (TowerNet, common_prefix, load_tower, parse_tower, save_tower, tower_params,
                              tower_str, transfer)
from nasr.utils.io import FormatError


@pytest.mark.parametrize("name,out", [("rnn_8", 8), ("lstm_6", 6), ("proj_5", 5), ("svdf_7_3", 7)])
def test_blocks_shapes_and_causality(name, out):
    torch.manual_seed(0)
    block = build_block(name, 4)
    x = torch.randn(2, 10, 4)
    y = block(x)
    assert y.shape == (2, 10, out) and block.out_dim == out
    # Causal: changing frames after t=5 leaves outputs up to t=5 unchanged (padding is harmless).
    x2 = x.clone()
    x2[:, 6:] = 100.0
    assert torch.allclose(block(x2)[:, :6], y[:, :6], atol=1e-6)


def test_unknown_block_lists_known_kinds():
    with pytest.raises(BlockError, match="unknown block 'gru_64'.*lstm.*proj.*rnn.*svdf"):
        build_block("gru_64", 4)
    with pytest.raises(BlockError, match="svdf takes 2"):
        parse_block_name("svdf_64")
    assert canonical_name(["svdf", 256, 16]) == "svdf_256_16"


def test_param_count_matches_module():
    for blocks in (["lstm_8", "svdf_6_4", "proj_5"], ["rnn_7", "rnn_7"]):
        net = TowerNet(blocks, 4, 3)
        assert tower_params(blocks, 4, 3) == sum(p.numel() for p in net.parameters())


def test_tower_json_round_trip_and_list_form(tmp_path):
    p = tmp_path / "tower.json"
    save_tower(p, ["svdf_256_16", ["rnn", 256]], loss=1.5)
    blocks, meta = load_tower(p)
    assert blocks == ["svdf_256_16", "rnn_256"] and meta == {"loss": 1.5}
    assert parse_tower('[["svdf", 256, 16], ["proj", 128]]')[0] == ["svdf_256_16", "proj_128"]
    assert tower_str(blocks) == "SVDF256-16, RNN256"


def test_bad_tower_json_names_file_and_line(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"blocks": [\n "lstm_8",\n "lstm_8" "x"\n]}')
    with pytest.raises(FormatError, match=r"t.json:3: tower JSON does not parse"):
        load_tower(p)
    p.write_text('{"blocks": [\n "lstm_8",\n "conv_8"\n]}')
    with pytest.raises(FormatError, match=r"t.json:3: block 2: unknown block 'conv_8'"):
        load_tower(p)


def test_block_set_yaml_errors(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("name: x\nblocks:\n  - lstm_8\n  - lstn_8\n")
    with pytest.raises(FormatError, match=r"b.yaml:4: unknown block 'lstn_8'"):
        load_block_set(p)
    p.write_text("name: x\nblocks: [lstm_8, rnn_4]\n")
    assert load_block_set(p) == ("x", ["lstm_8", "rnn_4"])


def test_length_aware_pooling_ignores_padding():
    torch.manual_seed(0)
    net = TowerNet(["lstm_6", "proj_4"], 3, 2).eval()
    x = torch.randn(1, 5, 3)
    padded = torch.cat([x, torch.randn(1, 4, 3)], dim=1)
    assert torch.allclose(net(x, torch.tensor([5])), net(padded, torch.tensor([5])), atol=1e-6)
    assert not torch.allclose(net(padded, torch.tensor([5])), net(padded, torch.tensor([9])))


def test_transfer_copies_common_prefix_only():
    torch.manual_seed(0)
    a = TowerNet(["lstm_6", "rnn_5", "proj_4"], 3, 2)
    b = TowerNet(["lstm_6", "rnn_5", "svdf_4_2"], 3, 2)
    before = {k: v.clone() for k, v in b.state_dict().items()}
    assert common_prefix(a.block_names, b.block_names) == 2
    assert transfer(a.state_dict(), a.block_names, b) == 2
    sa, sb = a.state_dict(), b.state_dict()
    for k in sb:
        if k.startswith(("blocks.0.", "blocks.1.")):
            assert torch.equal(sb[k], sa[k])
        else:
            assert torch.equal(sb[k], before[k])
    # A block after a mismatch is not transferred even if its name matches (its input differs).
    c = TowerNet(["rnn_6", "rnn_5"], 3, 2)
    assert transfer(a.state_dict(), a.block_names, c) == 0


def test_dropout_between_blocks_only_not_after_the_last():
    # footnote 3: "dropout between blocks, 0.3". With p near 1 any dropout in the path shows.
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    one = TowerNet(["proj_4"], 3, 2, dropout=0.9)
    with torch.no_grad():
        evaluated = one.eval()(x)
        trained = one.train()(x)
    assert torch.equal(trained, evaluated), "dropout after the last block (or on the input)"
    two = TowerNet(["proj_4", "proj_4"], 3, 2, dropout=0.9).train()
    with torch.no_grad():
        assert not torch.equal(two(x), two.eval()(x)), "no dropout between the two blocks"
