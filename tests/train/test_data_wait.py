"""The per-epoch data wait: the share of an epoch spent waiting for the next batch."""
import time

import torch

from nasr.train.loop import WaitClock, train_one_epoch


class SlowLoader:
    """Batches that take `delay` seconds each to arrive."""

    def __init__(self, n, delay):
        self.n, self.delay = n, delay

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            time.sleep(self.delay)
            yield torch.randn(4, 1, 8, 8), torch.randint(0, 2, (4,))


class Net(torch.nn.Module):
    def __init__(self, step_s=0.0):
        super().__init__()
        self.fc, self.step_s = torch.nn.Linear(64, 2), step_s

    def forward(self, x):
        time.sleep(self.step_s)
        return self.fc(x.flatten(1)), None


def test_a_starved_epoch_reports_its_wait_and_a_fed_one_does_not():
    net = Net(step_s=0.02)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    train_one_epoch(net, SlowLoader(1, 0.0), opt, torch.device("cpu"), epoch=0)  # autograd's first-use cost
    starved = train_one_epoch(net, SlowLoader(3, 0.5), opt, torch.device("cpu"), epoch=1)
    fed = train_one_epoch(net, SlowLoader(3, 0.0), opt, torch.device("cpu"), epoch=2)
    # loose bounds: on a loaded machine a 20 ms step has taken 180 ms
    assert starved["data_wait_frac"] > 0.6
    assert fed["data_wait_frac"] < 0.25


def test_featurize_runs_inside_the_step_on_the_batch():
    seen = []

    def featurize(x):
        seen.append(tuple(x.shape))
        return x.view(x.shape[0], 1, 8, 8)

    class Flat(SlowLoader):
        def __iter__(self):
            for _ in range(self.n):
                yield torch.randn(4, 64), torch.randint(0, 2, (4,))

    net = Net()
    train_one_epoch(net, Flat(2, 0), torch.optim.SGD(net.parameters(), lr=0.1), torch.device("cpu"), epoch=1,
                    featurize=featurize)
    assert seen == [(4, 64), (4, 64)]


def test_wait_clock_leaves_out_what_resume_skips():
    c = WaitClock()
    time.sleep(0.03)  # e.g. an evaluation between steps
    c.resume()
    c.ready()
    time.sleep(0.02)
    c.done()
    assert c.wait_s < 0.01 and c.step_s >= 0.02


class EpochDrawn(torch.utils.data.Dataset):
    """An item that depends on the dataset's epoch (as an augmentation draw does) and tells which
    process made it."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import os
        return torch.tensor([i, self.epoch, os.getpid()])


def test_epoch_loader_keeps_its_workers_and_the_per_epoch_order_and_draws():
    from torch.utils.data import DataLoader

    from nasr.train.kws import EpochLoader

    ds = EpochDrawn(10)
    loader = EpochLoader(ds, 4, True, seed=7, num_workers=1)
    pids = set()
    for epoch in (1, 2, 3):
        got = torch.cat(list(loader.at(epoch)))
        # The order a per-epoch DataLoader(shuffle, generator seeded from (seed, epoch)) gave,
        # so a resumed run sees the batches it would have seen.
        g = torch.Generator().manual_seed(7 * 100003 + epoch)
        old = torch.cat([b[:, 0] for b in DataLoader(EpochDrawn(10), 4, shuffle=True, generator=g)])
        assert got[:, 0].tolist() == old.tolist()
        assert set(got[:, 1].tolist()) == {epoch}  # the worker drew this epoch's items
        pids |= set(got[:, 2].tolist())
    assert len(pids) == 1 and pids != {__import__("os").getpid()}  # one worker, kept across epochs
    state = torch.get_rng_state()
    list(EpochLoader(ds, 4, True, seed=7).at(4))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG (dropout draws) untouched
