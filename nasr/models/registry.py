"""Models chosen by name: the `model:` section of a YAML config is passed to `build_model`, its
`name` picks the builder and every other key is a keyword argument of that builder.

    model:
      name: darts_net
      genotype: exp/search_nas1/genotype.json
      in_channels: 1
      num_classes: 12
      C: 16
      layers: 6
      reduction: thirds

Calling convention: every model here returns ``(logits, aux_logits_or_None)`` from ``forward``
(the hand-designed baselines always give ``None``), so training and scoring call
``logits, aux = model(x)`` without knowing which network they hold. CTC models whose output
frame rate is not the searched network's two halvings (dfsmn_san: 4x frame stacking) also have
``output_lengths(x_lens)``, and take ``forward(x, x_lens)`` for exact padding masks.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Dict, Mapping

from torch import nn

from nasr.models.res15 import Res15
from nasr.models.tc_resnet import tc_resnet8, tc_resnet14

# Keys a `model:` section may carry that describe the input rather than the network; builders
# never see them (model_info and the data pipeline read them).
INPUT_KEYS = ("input_size",)


def build_darts_net(genotype, num_classes: int, in_channels: int = 1, C: int | None = None,
                    channels: int | None = None, layers: int = 8, reduction="every_two",
                    auxiliary: bool = False, drop_path_prob: float = 0.0,
                    head: str = "classifier", **network_kwargs) -> nn.Module:
    """The evaluation network stacked from a searched genotype.

    `genotype` is a path to a genotype JSON, a dict with the genotype fields, or a Genotype.
    `C` (DARTS's name) and `channels` are the same setting, the initial channel count.
    Further keys (e.g. freq_dim for a CTC head, stem_multiplier) go to DartsNetwork unchanged,
    which rejects the ones it does not know.
    """
    # Imported here so the baselines keep working while nasr.nas is being changed.
    from nasr.models.darts_net import DartsNetwork

    if C is not None and channels is not None and C != channels:
        raise ValueError(f"darts_net: C={C} and channels={channels} disagree (give one of them)")
    width = C if C is not None else channels
    if width is None:
        raise ValueError("darts_net: the initial channel count is missing (fix: set C: or channels:)")
    return DartsNetwork(load_genotype(genotype), in_channels=in_channels, num_classes=num_classes,
                        C=width, layers=layers, reduction=reduction, auxiliary=auxiliary,
                        drop_path_prob=drop_path_prob, head=head, **network_kwargs)


def load_genotype(spec):
    """A Genotype from a path, a dict of its JSON fields, or a Genotype (returned as is)."""
    from nasr.nas.genotype import Genotype

    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, Mapping):
        from_dict = getattr(Genotype, "from_dict", None)
        return from_dict(dict(spec)) if from_dict is not None else Genotype(**spec)
    if isinstance(spec, (str, bytes)) or hasattr(spec, "__fspath__"):
        return Genotype.load(spec)
    raise TypeError(f"genotype must be a JSON path, a dict or a Genotype, got {type(spec).__name__}")


def build_dfsmn_san(**kwargs) -> nn.Module:
    """DFSMN-SAN, the hand-designed CTC baseline (nasr.models.dfsmn_san.build_dfsmn_san_ctc)."""
    from nasr.models.dfsmn_san import build_dfsmn_san_ctc

    return build_dfsmn_san_ctc(**kwargs)


MODELS: Dict[str, Callable[..., nn.Module]] = {
    "res15": Res15,
    "tc_resnet14": tc_resnet14,
    "tc_resnet8": tc_resnet8,
    "darts_net": build_darts_net,
    "dfsmn_san": build_dfsmn_san,
}


def _accepted_kwargs(builder: Callable) -> list | None:
    """Keyword names `builder` takes, or None when it forwards **kwargs (it checks them itself)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


# Builders that take **kwargs and hand them on: (module, the callees in order, keys the callees
# fill in themselves).
_FORWARDED_TO = {"darts_net": ("nasr.models.darts_net", ("DartsNetwork",), ()),
                 "dfsmn_san": ("nasr.models.dfsmn_san", ("build_dfsmn_san_ctc", "DfsmnSan"),
                               ("vocab_size", "feat_dim"))}


def _named_params(fn) -> list:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def model_keys(name: str) -> list:
    """Every key a `model:` section for model `name` may hold: `name`, the input keys and the
    builder's arguments (with those of the callees a **kwargs builder forwards to)."""
    import importlib

    builder = MODELS[name]
    keys = _named_params(builder)
    if name in _FORWARDED_TO:
        module, callees, filled = _FORWARDED_TO[name]
        for callee in callees:
            keys += [k for k in _named_params(getattr(importlib.import_module(module), callee))
                     if k not in keys and k not in filled]
    return ["name", *INPUT_KEYS, *keys]


def check_model_config(cfg) -> None:
    """Refuse a `model:` section without a known `name` or with a key its builder does not take
    (raised as nasr.utils.config.UnknownKeyError, so the config loader names the file and line)."""
    from nasr.utils.config import UnknownKeyError, one_of, probability

    if not isinstance(cfg, Mapping):
        raise ValueError(f"must be a mapping with a 'name' key, got {cfg!r}")
    if "name" not in cfg:
        raise ValueError(f"has no 'name' (fix: add `name:` with one of {', '.join(sorted(MODELS))})")
    one_of(sorted(MODELS), "model name")(cfg["name"])
    valid = model_keys(cfg["name"])
    for k in cfg:
        if k not in valid:
            raise UnknownKeyError(k, valid, f" (model '{cfg['name']}' does not take it)")
    for k in ("drop_path_prob", "dropout"):
        if k in cfg:
            try:
                probability(cfg[k])
            except ValueError as e:
                raise ValueError(f"{k} {e}") from None


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """Build the model named by ``cfg["name"]`` with the other keys as keyword arguments."""
    if not isinstance(cfg, Mapping):
        raise TypeError(f"model config must be a mapping with a 'name' key, got {type(cfg).__name__}")
    if "name" not in cfg:
        raise ValueError(f"model config has no 'name' (fix: add `name:` with one of "
                         f"{', '.join(sorted(MODELS))})")
    name = cfg["name"]
    if name not in MODELS:
        raise ValueError(f"unknown model name '{name}' (known: {', '.join(sorted(MODELS))})")
    builder = MODELS[name]
    kwargs = {k: copy.deepcopy(v) for k, v in cfg.items() if k != "name" and k not in INPUT_KEYS}
    accepted = _accepted_kwargs(builder)
    unknown = [] if accepted is None else sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"model '{name}' does not take {', '.join(unknown)} "
                         f"(it takes: {', '.join(accepted)})")
    return builder(**kwargs)
