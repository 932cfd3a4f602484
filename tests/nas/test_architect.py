import torch
import torch.nn.functional as F

from nasr.nas.architect import Architect
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space


def loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _setup(seed=0):
    torch.manual_seed(seed)
    net = SearchNetwork(1, 3, 4, 3, get_space("darts"), reduction="thirds")
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(4, 1, 12, 8, generator=g), torch.tensor([0, 1, 2, 1]))
    valid = (torch.randn(4, 1, 12, 8, generator=g), torch.tensor([2, 0, 1, 1]))
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    return net, train, valid, w_opt


def test_first_order_step_moves_alphas_against_the_validation_gradient():
    net, train, valid, w_opt = _setup()
    arch = Architect(net, loss_fn, lr=3e-4, weight_decay=1e-3)
    before = [a.detach().clone() for a in net.arch_parameters()]
    weights_before = [p.detach().clone() for p in net.weight_parameters()]
    grads = torch.autograd.grad(loss_fn(net, valid), net.arch_parameters())
    arch.step(train, valid, eta=0.05, w_optimizer=w_opt)
    for a0, a1, g in zip(before, net.arch_parameters(), grads):
        g = g + 1e-3 * a0  # Adam's (L2) weight decay
        delta = a1.detach() - a0
        big = g.abs() > 1e-6
        assert big.sum() > 10
        # Adam's first step is -lr * g / |g|: exactly the sign of the gradient, size lr
        torch.testing.assert_close(delta[big], -3e-4 * g[big].sign(), rtol=1e-3, atol=1e-7)
    # weights are not touched, and no weight gradients are left behind
    for w0, w1 in zip(weights_before, net.weight_parameters()):
        assert torch.equal(w0, w1) and w1.grad is None


def test_second_order_step_runs_restores_weights_and_differs_from_first_order():
    net1, train, valid, w_opt1 = _setup()
    net2, _, _, w_opt2 = _setup()
    # a weight step first, so the unrolled step sees momentum buffers
    for net, opt in ((net1, w_opt1), (net2, w_opt2)):
        opt.zero_grad()
        loss_fn(net, train).backward()
        opt.step()
    first = Architect(net1, loss_fn, lr=3e-3)
    second = Architect(net2, loss_fn, lr=3e-3, unrolled=True)
    w_before = [p.detach().clone() for p in net2.weight_parameters()]
    a_before = [a.detach().clone() for a in net2.arch_parameters()]
    first.step(train, valid, eta=0.05, w_optimizer=w_opt1)
    loss = second.step(train, valid, eta=0.05, w_optimizer=w_opt2)
    assert loss > 0
    for w0, w1 in zip(w_before, net2.weight_parameters()):
        torch.testing.assert_close(w0, w1, rtol=0, atol=1e-6)  # the finite differences undo exactly
    assert any(not torch.equal(a0, a1) for a0, a1 in zip(a_before, net2.arch_parameters()))
    diff = sum((a1 - a2).abs().sum() for a1, a2 in zip(net1.arch_parameters(), net2.arch_parameters()))
    assert diff > 0
    # a second call reuses the cached unrolled network
    unrolled = second._unrolled_model
    second.step(train, valid, eta=0.05, w_optimizer=w_opt2)
    assert second._unrolled_model is unrolled
