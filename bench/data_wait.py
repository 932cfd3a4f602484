"""Benchmark: how long KWS training steps wait for their batches, old data path against new.

For each model (its recipe config under the synthetic profile: batch size, bf16, and the profile's
`num_workers`), a few training steps on augmented training data with
  * per-item features: every item read, augmented and featurised (kaldi-native-fbank) in the loader,
    with 0 loader workers (TC-ResNet14's profile before) and with 1,
  * batch features (`batch_features: true`, the default now): the loader reads (waves cached in
    memory) and augments, the step featurises the whole batch (nasr.data.batch_features), with 0
    and 1 loader workers.
Prints, per model and setting, the share of the time spent waiting for batches (the figure the
training log prints per epoch; limit 5%), ms per step and ms per step of everything else, measured
in one run. Waits are measured as nasr.train.loop.train_one_epoch measures them.

e.g.: python bench/data_wait.py --data egs/speech_commands/data/train egs/speech_commands/data/valid
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONF = os.path.join(ROOT, "egs", "speech_commands", "conf")


def model_config(name: str):
    from nasr.bin import train
    from nasr.utils.config import load_config

    return load_config(os.path.join(CONF, f"train_{name}.yaml"), [], train.DEFAULTS,
                       profile=os.path.join(CONF, "synth.yaml"), free=train.FREE, checks=train.CHECKS)


def run(name: str, data, batch_features: bool, workers: int, steps: int) -> dict:
    import torch

    from nasr.models.registry import build_model
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space
    from nasr.train.kws import batch_featurizer, load_labels, make_dataset, make_loader
    from nasr.train.loop import train_one_epoch
    from nasr.utils.device import plan_device

    cfg = model_config(name)
    labels = load_labels(data)
    ds, _ = make_dataset(data, labels, cfg["augment"], cfg["seed"], waves=batch_features)
    featurize, why = batch_featurizer(ds)
    if batch_features and featurize is None:
        raise SystemExit(f"batch features not possible here: {why}")
    x0 = ds[0][0]
    shape = tuple(featurize(x0[None]).shape[1:]) if featurize is not None else tuple(x0.shape)
    mcfg = dict(cfg["model"], num_classes=len(labels), in_channels=shape[0])
    if mcfg["name"] == "darts_net":  # any nas1 genotype: the data path is what is measured
        torch.manual_seed(0)
        mcfg["genotype"] = SearchNetwork(1, len(labels), 4, 3, get_space("nas1")).genotype("nas1")
    torch.manual_seed(0)
    model = build_model(mcfg)
    plan = plan_device("cpu", cfg["amp"], cfg["bf16"])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = make_loader(ds, cfg["batch_size"], True, 0, 1, workers, drop_last=True)
    n = min(steps, len(loader))
    t = time.perf_counter()
    r = train_one_epoch(model, itertools.islice(loader, n), opt, torch.device("cpu"), epoch=1,
                        grad_clip=5.0, amp=plan.amp_dtype, featurize=featurize, desc=name)
    sec = time.perf_counter() - t
    return {"wait": r["data_wait_frac"], "ms_step": 1e3 * sec / n, "steps": n, "batch": cfg["batch_size"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="featurised KWS training data dir(s)")
    p.add_argument("--models", nargs="+", default=["tc_resnet14", "nas1", "res15"])
    p.add_argument("--steps", type=int, default=12, help="training steps per model and setting (the first "
                                                          "batch's wait, workers starting, included)")
    a = p.parse_args(argv)
    print(f"KWS data wait on {os.cpu_count()} cores; data {' '.join(a.data)}; {a.steps} steps per row "
          f"(limit: wait <= 5% of the step time)")
    print(f"{'model':<13}{'items':<17}{'workers':>8}{'batch':>7}{'ms/step':>10}{'data wait':>11}  verdict")
    for name in a.models:
        for batch_features, workers in ((False, 0), (False, 1), (True, 0), (True, 1)):
            r = run(name, a.data, batch_features, workers, a.steps)
            items = "batch features" if batch_features else "per-item feats"
            print(f"{name:<13}{items:<17}{workers:>8}{r['batch']:>7}{r['ms_step']:>10.0f}"
                  f"{100 * r['wait']:>10.1f}%  {'PASS' if r['wait'] <= 0.05 else 'over 5%'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
