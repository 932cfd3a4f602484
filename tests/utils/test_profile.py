"""count_params / count_macs against hand-computed counts."""
import pytest
from torch import nn

from nasr.utils.profile import count_macs, count_params, format_count, profile


def test_conv2d_macs_are_analytic():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, stride=2)
    # Output 8 x 16 x 10 from 3 x 32 x 20 with stride 2; each output does 3*3*3 multiply-adds.
    assert count_macs(conv, (3, 32, 20)) == 8 * 16 * 10 * 3 * 3 * 3


def test_dilated_conv_macs_depend_on_output_only():
    conv = nn.Conv2d(4, 4, kernel_size=3, padding=4, dilation=4, bias=False)
    assert count_macs(conv, (4, 10, 10)) == 4 * 10 * 10 * 4 * 9


def test_linear_macs_are_analytic():
    assert count_macs(nn.Linear(45, 12), (45,)) == 45 * 12


def test_conv1d_and_grouped_conv_macs():
    assert count_macs(nn.Conv1d(40, 24, 3, padding=1), (40, 101)) == 24 * 101 * 40 * 3
    depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
    assert count_macs(depthwise, (16, 8, 8)) == 16 * 8 * 8 * 9


class WithAux(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(10, 5)
        self.auxiliary_head = nn.Linear(10, 5)
        self.frozen = nn.Linear(10, 2)
        self.frozen.weight.requires_grad_(False)
        self.frozen.bias.requires_grad_(False)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        out = self.body(self.drop(x))
        # Like DARTS: the auxiliary head runs only in training.
        aux = self.auxiliary_head(x) if self.training else None
        return out, aux


def test_count_params_excludes_prefixes_and_frozen():
    model = WithAux()
    assert count_params(model) == 55
    assert count_params(model, exclude=()) == 110
    assert count_params(model, exclude=("body", "auxiliary")) == 0


def test_count_macs_runs_in_eval_mode_and_restores_it():
    model = WithAux().train()
    assert count_macs(model, (10,)) == 50  # auxiliary head skipped in eval
    assert model.training
    model.eval()
    count_macs(model, (10,))
    assert not model.training


def test_profile_and_bad_shape():
    assert profile(nn.Linear(4, 3), (4,)) == {"params": 15, "macs": 12}
    with pytest.raises(ValueError, match="without the batch dimension"):
        count_macs(nn.Linear(4, 3), (0, 4))


def test_format_count():
    assert format_count(237882) == "237.9K"
    assert format_count(3_349_342) == "3.35M"
    assert format_count(958_813_740) == "958.81M"
    assert format_count(12) == "12"
