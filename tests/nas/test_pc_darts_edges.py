"""PC-DARTS's edge normalisation: with partial channels (pc_k > 1) each edge has a beta, softmax-
normalised over the edges into its node; they weigh the edges in the mixed sum and in the choice of
a node's two inputs, and the architect optimises them with the alphas."""
import pytest
import torch

from nasr.nas.architect import Architect
from nasr.nas.genotype import derive_genotype
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space

SPACE = get_space("darts")


# Few ops keep the second-order step (four forward/backward passes) fast.
FEW_OPS = ["none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3"]


def small_net(pc_k: int, ops=SPACE) -> SearchNetwork:
    torch.manual_seed(0)
    return SearchNetwork(1, 3, C=4, layers=3, op_names=ops, reduction="thirds", pc_k=pc_k)  # N R R


def loss_fn(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 1, 8, 8, generator=g), torch.randint(0, 3, (2,), generator=g)


def test_betas_exist_only_with_partial_channels_and_are_architecture_parameters():
    assert small_net(1).edge_weights() is None and len(small_net(1).arch_parameters()) == 2
    net = small_net(2)
    names = {n for n, _ in net.named_parameters()}
    assert {"betas_normal", "betas_reduce"} <= names
    assert len(net.arch_parameters()) == 4
    assert not any(n.startswith("betas_") for n, _ in net.named_weight_parameters())
    assert {"betas_normal", "betas_reduce"} <= set(net.state_dict())  # saved with the alphas
    normal = net.edge_weights()[0].detach()
    # Softmax per node: the edges into node i sum to 1 (2, 3, 4, 5 edges).
    sums = [float(normal[a:b].sum()) for a, b in ((0, 2), (2, 5), (5, 9), (9, 14))]
    assert sums == pytest.approx([1.0] * 4)


@pytest.mark.parametrize("unrolled", [False, True])
def test_betas_get_gradients_and_the_architect_moves_them(unrolled):
    net = small_net(2, FEW_OPS)
    net.train()
    loss_fn(net, batch()).backward()
    assert net.betas_normal.grad.abs().sum() > 0 and net.betas_reduce.grad.abs().sum() > 0
    net.zero_grad()
    before = [b.detach().clone() for b in (net.betas_normal, net.betas_reduce)]
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
    Architect(net, loss_fn, lr=0.1, unrolled=unrolled).step(batch(1), batch(2), eta=0.01, w_optimizer=w_opt)
    assert not torch.equal(before[0], net.betas_normal.detach())
    assert not torch.equal(before[1], net.betas_reduce.detach())


def test_betas_change_the_mixed_sum():
    net = small_net(2).eval()
    x = batch()[0]
    with torch.no_grad():
        out = net(x)
        net.betas_normal[0] = 3.0  # node 0 now weighs its input c_{k-2} far above c_{k-1}
        changed = net(x)
    assert not torch.allclose(out, changed)


def test_betas_change_the_derived_genotype():
    """Node 1 (edges 2, 3, 4 from inputs 0, 1, 2): by alphas alone inputs 0 and 1 are strongest;
    with PC-DARTS's edge weights favouring the edge from node 0 (input 2), that one is kept."""
    net = small_net(2)
    conv = SPACE.index("sep_conv_3x3")
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[2, conv] = 3.0
        net.alphas_normal[3, conv] = 2.5
        net.alphas_normal[4, conv] = 2.0
        net.betas_normal.zero_()
        net.betas_normal[4] = 2.0
    alphas_only = derive_genotype(net.alphas_normal.detach(), net.alphas_reduce.detach(), SPACE, "darts")
    assert sorted(j for _, j in alphas_only.normal[2:4]) == [0, 1]
    with_betas = net.genotype("darts")
    assert sorted(j for _, j in with_betas.normal[2:4]) == [0, 2]
    assert with_betas.normal[2:4] == [("sep_conv_3x3", 2), ("sep_conv_3x3", 0)]
