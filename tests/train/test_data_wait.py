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
