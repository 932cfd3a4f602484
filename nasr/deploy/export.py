"""Trained networks as ONNX files, checked against torch and timed per 1 s clip.

Three kinds of exp dir hold a trained network; `load_trained` tells them apart by their files:

    kind   written by                         files                                   ONNX graph
    kws    nasr.bin.train                     config.yaml (model:, input_size:),      feats (N, C, T, F) -> logits (N, K)
                                              best.pt
    ctc    nasr.bin.train_ctc                 config.yaml (model:, data:), best.pt    feats (N, C, T, F) [, feats_lens (N,)]
                                                                                      -> log_probs (N, T', U)
    tower  nasr.bin.tower_ensemble train      config.yaml, member-<i>/model.pt        feats (N, T, F) -> logits (N, K),
                                                                                      the members' logits averaged

Batch is a dynamic axis everywhere; time too for CTC networks (and DFSMN-SAN's lengths input) and
towers (a KWS network is exported at its training clip length, what a keyword spotter feeds it). The exporter is torch's TorchScript
one (`dynamo=False`): the dynamo exporter, torch 2.13's default, needs the onnxscript package and
gave nothing the TorchScript one lacks for these convolution and RNN graphs.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from nasr.utils.io import FormatError, atomic_write

FORMATS = ("onnx",)
OPSET = 17
# A 1 s clip at the 10 ms frame shift of every feature preset here, for networks whose exp dir
# records no clip length (CTC networks and towers take any length).
FRAMES_PER_SECOND = 100


class KwsLogits(nn.Module):
    """A classifier of the registry's convention, `(logits, aux)`, reduced to its logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats):
        return self.model(feats)[0]


class CtcLogProbs(nn.Module):
    """A CTC network's per-frame log-posteriors; `feats_lens` only for models that read lengths."""

    def __init__(self, model: nn.Module, takes_lengths: bool):
        super().__init__()
        self.model, self.takes_lengths = model, takes_lengths

    def forward(self, feats, feats_lens=None):
        out = self.model(feats, feats_lens) if self.takes_lengths else self.model(feats)
        return out[0] if isinstance(out, tuple) else out


class TowerEnsemble(nn.Module):
    """Algorithm 3's ensemble as one graph: the members' logits averaged (w_i = 1/p)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, feats):
        out = self.members[0](feats)
        for m in self.members[1:]:
            out = out + m(feats)
        return out / len(self.members)


@dataclass
class TrainedNetwork:
    """A trained network ready to export: `module(*example)` is what the ONNX graph computes."""
    kind: str
    module: nn.Module
    example: Tuple[torch.Tensor, ...]
    input_names: List[str]
    output_names: List[str]
    dynamic_axes: Dict[str, Dict[int, str]]
    clip_frames: int
    checkpoint: str
    info: Dict = field(default_factory=dict)

    def variant(self, batch: int, extra_frames: int) -> Tuple[torch.Tensor, ...]:
        """Inputs of another batch size (and, where time is dynamic, another length) for the check
        that the exported graph did not freeze the example's shape."""
        axes = self.dynamic_axes.get("feats", {})
        time_axis = next((ax for ax, name in axes.items() if name == "time"), None)
        feats = self.example[0]
        shape = list(feats.shape)
        if 0 in axes:
            shape[0] = batch
        if time_axis is not None:
            shape[time_axis] += extra_frames
        g = torch.Generator().manual_seed(1)
        x = torch.randn(shape, generator=g)
        if len(self.example) == 1:
            return (x,)
        # Lengths: the first utterance fills the batch, the others are shorter (padded frames).
        return x, torch.tensor([max(1, shape[2] - 29 * i) for i in range(shape[0])])


def _missing(path: Path, problem: str, fix: str) -> FormatError:
    return FormatError(path, None, problem, fix)


def _resolve_genotype(model_cfg: Dict, exp: Path) -> Dict:
    """A darts_net's genotype path as recorded (relative to the recipe dir) or the exp dir's copy."""
    model_cfg = dict(model_cfg)
    g = model_cfg.get("genotype")
    if model_cfg.get("name") == "darts_net" and isinstance(g, str) and not Path(g).is_file():
        kept = exp / "genotype.json"
        if not kept.is_file():
            raise _missing(kept, f"the genotype of this darts_net ({g}) is not found, nor its copy in the exp dir",
                           "run the export from the recipe dir the training ran in, or copy the genotype "
                           "to <exp-dir>/genotype.json")
        model_cfg["genotype"] = str(kept)
    return model_cfg


def _load_state(model: nn.Module, ckpt: Path) -> None:
    from nasr.train.checkpoint import CheckpointError, load_checkpoint, load_model_state

    try:
        load_model_state(model, load_checkpoint(ckpt), ckpt)
    except CheckpointError as e:
        raise FormatError(ckpt, None, str(e).split(": ", 1)[-1]) from None


def _checkpoint(exp: Path, checkpoint: str) -> Path:
    path = Path(checkpoint) if Path(checkpoint).is_file() else exp / checkpoint
    if not path.is_file():
        raise _missing(path, "checkpoint does not exist",
                       "finish the training (it writes best.pt after its first epoch), or pass "
                       "--checkpoint epoch-N.pt of an epoch on disk")
    return path


def load_trained(exp_dir, checkpoint: str = "best.pt", members: Optional[int] = None,
                 clip_frames: Optional[int] = None) -> TrainedNetwork:
    """The trained network of `exp_dir` (any of the three kinds), in eval mode on the CPU."""
    from nasr.utils.config import load_yaml

    exp = Path(exp_dir)
    if not exp.is_dir():
        raise _missing(exp, "exp dir does not exist", "check --exp-dir, or train the model first")
    if any(exp.glob("member-*/model.pt")) or any(exp.glob("member-*")):
        return _load_tower(exp, members, clip_frames)
    cfg_path = exp / "config.yaml"
    if not cfg_path.is_file():
        raise _missing(cfg_path, "missing: not a training exp dir (nasr.bin.train, train_ctc or tower_ensemble "
                       "write it)", "check --exp-dir, or train the model first")
    cfg = load_yaml(cfg_path)
    if not isinstance(cfg.get("model"), dict):
        raise FormatError(cfg_path, None, "no `model:` section", "point --exp-dir at a training exp dir")
    ckpt = _checkpoint(exp, checkpoint)
    from nasr.models.registry import build_model

    model_cfg = _resolve_genotype(cfg["model"], exp)
    data = cfg.get("data")
    if isinstance(data, dict) and "num_units" in data:
        model_cfg.update(in_channels=data["in_channels"], num_classes=data["num_units"], freq_dim=data["feat_dim"])
        model = build_model(model_cfg)
        _load_state(model, ckpt)
        takes_lengths = bool(getattr(model, "takes_lengths", False))
        frames = clip_frames or FRAMES_PER_SECOND
        feats = torch.randn(1, data["in_channels"], frames, data["feat_dim"], generator=torch.Generator().manual_seed(0))
        example = (feats, torch.tensor([frames])) if takes_lengths else (feats,)
        names = ["feats", "feats_lens"] if takes_lengths else ["feats"]
        axes = {"feats": {0: "batch", 2: "time"}, "log_probs": {0: "batch", 1: "out_time"}}
        if takes_lengths:
            axes["feats_lens"] = {0: "batch"}
        info = {"model": model_cfg.get("name"), "units": data["num_units"]}
        return TrainedNetwork("ctc", CtcLogProbs(model, takes_lengths).eval(), example, names, ["log_probs"],
                              axes, frames, str(ckpt), info)
    if "input_size" not in cfg or "in_channels" not in cfg["model"]:
        raise FormatError(cfg_path, None, "no input_size / model.in_channels: not written by nasr.bin.train",
                          "retrain with nasr.bin.train, which records the input it trained on")
    model = build_model(model_cfg)
    _load_state(model, ckpt)
    t, f = (int(v) for v in cfg["input_size"])
    if clip_frames is not None and clip_frames != t:
        raise FormatError(cfg_path, None, f"the network was trained on {t}-frame clips and is exported at "
                          f"that length, not {clip_frames}", f"leave out --frames, or pass --frames {t}")
    feats = torch.randn(1, int(cfg["model"]["in_channels"]), t, f, generator=torch.Generator().manual_seed(0))
    return TrainedNetwork("kws", KwsLogits(model).eval(), (feats,), ["feats"], ["logits"],
                          {"feats": {0: "batch"}, "logits": {0: "batch"}}, t, str(ckpt),
                          {"model": model_cfg.get("name"), "classes": cfg["model"].get("num_classes")})


def _load_tower(exp: Path, members: Optional[int], clip_frames: Optional[int]) -> TrainedNetwork:
    from nasr.tower.ensemble import load_members

    try:
        loaded = load_members(exp, members)
    except FileNotFoundError as e:
        raise FormatError(exp, None, "no trained ensemble member (member-*/model.pt)",
                          "run python -m nasr.bin.tower_ensemble train first") from e
    if members is not None and len(loaded) < members:
        raise FormatError(exp, None, f"--members {members} asked for, but {len(loaded)} member(s) are trained",
                          f"pass --members {len(loaded)} or train the others")
    info = loaded[0][0]
    frames = clip_frames or FRAMES_PER_SECOND
    feats = torch.randn(1, frames, int(info["input_dim"]), generator=torch.Generator().manual_seed(0))
    module = TowerEnsemble([m for _, m in loaded]).eval()
    return TrainedNetwork("tower", module, (feats,), ["feats"], ["logits"],
                          {"feats": {0: "batch", 1: "time"}, "logits": {0: "batch"}}, frames,
                          ", ".join(str(exp / f"member-{i['member']}" / "model.pt") for i, _ in loaded),
                          {"model": "tower", "blocks": info["blocks"], "members": len(loaded),
                           "classes": len(info["class_names"])})


def export_onnx(net: TrainedNetwork, path, opset: int = OPSET) -> Path:
    """Write `net` as an ONNX file at `path` (atomically: a failed export leaves no file)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation and about traced shape checks.
        warnings.simplefilter("ignore")
        torch.onnx.export(net.module, net.example, buf, input_names=net.input_names,
                          output_names=net.output_names, dynamic_axes=net.dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    net.module.eval()  # the exporter restores the mode it found; keep eval whatever it did
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return Path(path)


def onnxruntime_session(path, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads (ImportError without onnxruntime)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _feed(session, inputs: Sequence[torch.Tensor]) -> Dict[str, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return {n: x.numpy() for n, x in zip(names, inputs)}


@torch.no_grad()
def parity(net: TrainedNetwork, session) -> Dict:
    """Largest |onnxruntime - torch| over the example and an input of another batch (and length)."""
    worst, shapes = 0.0, []
    for inputs in (net.example, net.variant(batch=2, extra_frames=37)):
        want = net.module(*inputs).float().numpy()
        try:
            got = session.run(None, _feed(session, inputs))[0]
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeError(f"onnxruntime failed on input {tuple(inputs[0].shape)} ({str(e)[:300]}): the "
                               f"exported graph froze a shape") from None
        if got.shape != want.shape:
            raise RuntimeError(f"onnxruntime output {got.shape} != torch output {want.shape} for input "
                               f"{tuple(inputs[0].shape)}: the exported graph froze a shape")
        worst = max(worst, float(np.abs(got - want).max()))
        shapes.append(list(inputs[0].shape))
    return {"max_abs_diff": worst, "inputs": shapes}


def latencies(net: TrainedNetwork, session, threads: int = 1, repeats: int = 50) -> Dict:
    """Median wall time of one forward pass on one clip (batch 1), torch and onnxruntime, with the
    same number of threads."""
    from nasr.utils.profile import latency_ms

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            t = latency_ms(lambda: net.module(*net.example), repeats=repeats, warmup=5)
    finally:
        torch.set_num_threads(before)
    feed = _feed(session, net.example)
    o = latency_ms(lambda: session.run(None, feed), repeats=repeats, warmup=5)
    return {"torch_ms": t["median"], "onnxruntime_ms": o["median"], "torch_min_ms": t["min"],
            "onnxruntime_min_ms": o["min"], "repeats": repeats, "threads": threads,
            "input": list(net.example[0].shape), "clip_frames": net.clip_frames}


# ----------------------------------------------------------------------------------------------
# streaming towers (nasr.deploy.stream): one frame and the state in, the logits so far and the state out

def streaming_module(net: TrainedNetwork):
    """The frame-by-frame form of a tower network (None for networks that cannot stream)."""
    if net.kind != "tower":
        return None
    from nasr.deploy.stream import StreamingTower

    return StreamingTower(list(net.module.members)).eval()


def export_stream_onnx(net: TrainedNetwork, path, opset: int = OPSET) -> Path:
    stream = streaming_module(net)
    state = stream.initial_state(1)
    names = stream.state_names()
    frame = net.example[0][:, 0]
    axes = {"frame": {0: "batch"}, "logits": {0: "batch"}}
    for n, s in zip(names, state):
        axes[n] = axes[n + "_out"] = {1 if n.endswith(("_h", "_c")) else 0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(stream, (frame, *state), buf, input_names=["frame", *names],
                          output_names=["logits", *[n + "_out" for n in names]], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return Path(path)


@torch.no_grad()
def stream_parity(net: TrainedNetwork, session, threads: int = 1, repeats: int = 50) -> Dict:
    """Run the streaming graph frame by frame in onnxruntime over the example clip: the largest
    |difference| from torch's full-utterance logits after every frame, and the time per frame."""
    from nasr.utils.profile import latency_ms

    stream = streaming_module(net)
    feats = net.example[0]
    inputs = [i.name for i in session.get_inputs()]
    state = [s.numpy() for s in stream.initial_state(feats.shape[0])]
    worst = 0.0
    for t in range(feats.shape[1]):
        out = session.run(None, dict(zip(inputs, [feats[:, t].numpy(), *state])))
        logits, state = out[0], out[1:]
        want = net.module(feats[:, :t + 1]).numpy()
        worst = max(worst, float(np.abs(logits - want).max()))
    feed = dict(zip(inputs, [feats[:, 0].numpy(), *[s.numpy() for s in stream.initial_state(1)]]))
    frame = latency_ms(lambda: session.run(None, feed), repeats=repeats, warmup=5)
    return {"max_abs_diff": worst, "frames": int(feats.shape[1]), "onnxruntime_ms_per_frame": frame["median"],
            "threads": threads}


__all__ = ["FORMATS", "OPSET", "TrainedNetwork", "load_trained", "export_onnx", "onnxruntime_session",
           "parity", "latencies", "streaming_module", "export_stream_onnx", "stream_parity", "KwsLogits", "CtcLogProbs", "TowerEnsemble"]
