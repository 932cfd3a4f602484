"""The device plan: every speed setting is chosen from the device type (CUDA cases with the
capability query monkeypatched: no GPU is needed)."""
import pytest
import torch

from nasr.train.bmuf import BMUF
from nasr.utils import device as device_mod
from nasr.utils.device import backward_step, plan_device


def test_cuda_with_bf16_autocasts_bf16_without_a_scaler(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_bf16_supported", lambda: True)
    p = plan_device(torch.device("cuda"))
    assert p.amp_dtype is torch.bfloat16 and not p.grad_scaler
    assert p.pin_memory and p.non_blocking and p.cudnn_benchmark
    assert p.dist_backend == "nccl"


def test_cuda_without_bf16_autocasts_fp16_with_a_scaler(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_bf16_supported", lambda: False)
    p = plan_device("cuda:1")
    assert p.amp_dtype is torch.float16 and p.grad_scaler
    assert p.device == torch.device("cuda:1") and p.dist_backend == "nccl"
    with pytest.raises(ValueError, match="no bf16"):
        plan_device("cuda", amp="bf16")
    off = plan_device("cuda", amp="off")
    assert off.amp_dtype is None and not off.grad_scaler and off.pin_memory


def test_cpu_keeps_fp32_unless_the_config_asks_for_bf16():
    p = plan_device(torch.device("cpu"))
    assert p.amp_dtype is None and not p.grad_scaler
    assert not p.pin_memory and not p.non_blocking and not p.cudnn_benchmark
    assert p.dist_backend == "gloo"
    assert plan_device("cpu", bf16=True).amp_dtype is torch.bfloat16
    assert plan_device("cpu", amp="bf16").amp_dtype is torch.bfloat16
    assert plan_device("cpu", amp="off", bf16=True).amp_dtype is None
    with pytest.raises(ValueError, match="for CUDA"):
        plan_device("cpu", amp="fp16")
    with pytest.raises(ValueError, match="not one of"):
        plan_device("cpu", amp="half")


def test_cpu_bf16_autocast_runs_a_matmul_in_bf16():
    p = plan_device("cpu", bf16=True)
    a = torch.randn(4, 4)
    with p.autocast():
        assert (a @ a).dtype is torch.bfloat16
    with p.autocast(enabled=False):
        assert (a @ a).dtype is torch.float32


class _FakeScaler:
    """GradScaler's interface on CPU: skips the step when told the gradients overflowed."""

    def __init__(self, overflow):
        self.overflow, self.scale_value, self.stepped = overflow, 1024.0, []

    def scale(self, loss):
        return loss * self.scale_value

    def unscale_(self, opt):
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad.div_(self.scale_value)

    def get_scale(self):
        return self.scale_value

    def step(self, opt):
        self.stepped.append(opt)
        if not self.overflow:
            opt.step()

    def update(self):
        if self.overflow:
            self.scale_value /= 2


def test_backward_step_unscales_before_the_step_and_reports_a_skip():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    assert backward_step((w * 2).sum(), opt, _FakeScaler(False), [w], grad_clip=0.0)
    assert torch.allclose(w.detach(), torch.full((3,), 0.8))  # grad 2 after unscaling, not 2048
    opt.zero_grad()
    assert not backward_step((w * 2).sum(), opt, _FakeScaler(True), [w])
    assert torch.allclose(w.detach(), torch.full((3,), 0.8))


def test_a_skipped_fp16_step_still_counts_toward_the_bmuf_block():
    """Every worker must reach a block sync at the same batch, whether or not its scaler skipped."""
    model = torch.nn.Linear(2, 1)
    bmuf = BMUF(model, torch.optim.SGD(model.parameters(), lr=0.1), block_size=2)
    syncs = []
    bmuf.sync = lambda: syncs.append(bmuf.local_step) or setattr(bmuf, "local_step", 0)
    for overflow in (True, False):
        backward_step(model(torch.ones(1, 2)).sum(), bmuf, _FakeScaler(overflow), model.parameters())
    assert syncs == [2]
