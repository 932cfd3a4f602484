"""Decode and score a data dir with a trained CTC model: greedy, WFST (TLG + kaldi-decoder) and
lexicon prefix beam search with the ARPA LM.

Writes <exp-dir>/decode_<name>/:
  greedy (always)  `hyp`, `errs`, `summary`, `score.json` over the model's units (token accuracy =
                   1 - (S + D + I) / N over unit tokens, nasr.asr.scoring.token_accuracy), and, for
                   char and bpe units, the same files under `char/` with the Kaldi-style `%CER`
                   line (syllable units are not characters: their %TER line is the syllable error
                   rate).
  --graph DIR      `wfst/`: the words of the best TLG path, scored in characters (%CER).
  --arpa LM        `beam/`: CTC prefix beam search over the lang dir's lexicon with the LM (%CER).
results.json gathers the figures (and each decoder's real-time factor) for the report stage.

The graph must have been built from the model's units.txt: graph.py's units.sha256 is checked
before anything is decoded, and a mismatch stops with an error naming both files.

--average-last N first averages the newest N epoch-N.pt into avg-last-N.pt (reused while the same
epochs are on disk) and decodes with it; --average-only stops after writing it.

e.g.: python -m nasr.bin.decode_ctc --exp-dir exp/train_asrnet_b --data data/test --name test \
        --average-last 5 --graph data/lang_syllable/graph --beam 16 --blank-skip 0.95
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from nasr.asr.ctc_decode import greedy_decode
from nasr.asr.scoring import write_score_files
from nasr.bin.train_ctc import build_ctc_model
from nasr.data.asr_dataset import AsrDataset
from nasr.nas.ops import count_parameters
from nasr.train.checkpoint import (CheckpointError, average_checkpoints, list_epoch_checkpoints,
                                   load_checkpoint, load_model_state, save_checkpoint)
from nasr.train.ctc import batch_to, ctc_loss, make_loader, model_output_lengths, network_log_probs
from nasr.utils.config import load_yaml
from nasr.utils.device import get_device, plan_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import read_json, read_table, write_json
from nasr.utils.log import progress, setup_logging
from nasr.utils.uptodate import Stamp

log = logging.getLogger("nasr.decode_ctc")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="training exp dir (config.yaml, best.pt)")
    p.add_argument("--data", default=None, help="featurised data dir to decode")
    p.add_argument("--name", default=None, help="set name (default: the data dir's name)")
    p.add_argument("--checkpoint", default="best.pt", help="file in --exp-dir, or a path")
    p.add_argument("--average-last", type=int, default=0, metavar="N",
                   help="decode with the mean of the newest N epoch-N.pt (written to avg-last-N.pt)")
    p.add_argument("--average-only", action="store_true", help="write avg-last-N.pt and stop")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--latin-as-word", action="store_true",
                   help="%%CER: score a run of Latin letters/digits as one token (default: one token "
                        "per letter, as Kaldi's AISHELL scoring)")
    g = p.add_argument_group("WFST decoding (kaldi-decoder over TLG)")
    g.add_argument("--graph", default=None, help="graph dir of nasr.bin.make_tlg (TLG.fst, units.sha256)")
    g.add_argument("--beam", type=float, default=16.0)
    g.add_argument("--max-active", type=int, default=7000)
    g.add_argument("--acoustic-scale", type=float, default=1.0)
    g.add_argument("--blank-skip", type=float, default=None, metavar="P",
                   help="drop frames whose blank posterior exceeds P (first of each run kept)")
    g = p.add_argument_group("CTC prefix beam search with the LM (optional)")
    g.add_argument("--arpa", default=None, help="ARPA LM: also run the lexicon prefix beam search")
    g.add_argument("--beam-size", type=int, default=16)
    g.add_argument("--lm-weight", type=float, default=1.0)
    g.add_argument("--word-score", type=float, default=0.0)
    return p


def averaged_checkpoint(exp: Path, n: int) -> Path:
    """avg-last-N.pt over the newest n epoch checkpoints; reused when it covers the same epochs and
    is newer than each of them (a retrained epoch-N.pt makes it stale)."""
    epochs = list_epoch_checkpoints(exp)
    if n < 1:
        raise ValueError(f"--average-last {n}: must be at least 1")
    if len(epochs) < n:
        raise CheckpointError(f"{exp}: --average-last {n} but only {len(epochs)} epoch-N.pt "
                              f"(fix: train more epochs or average fewer)")
    chosen = epochs[-n:]
    out = exp / f"avg-last-{n}.pt"
    paths = [exp / f"epoch-{e}.pt" for e in chosen]
    if out.is_file() and out.stat().st_mtime >= max(p.stat().st_mtime for p in paths):
        try:
            if load_checkpoint(out).get("averaged_epochs") == chosen:
                log.info("%s already averages epochs %s", out, chosen)
                return out
        except CheckpointError:
            pass  # unreadable: rewritten below
    last = load_checkpoint(paths[-1])
    save_checkpoint(out, {"model": average_checkpoints(paths), "epoch": chosen[-1],
                          "averaged_epochs": chosen, "config": last.get("config")})
    log.info("averaged epochs %s into %s", chosen, out)
    return out


@torch.no_grad()
def forward_set(model, loader, device, amp, lm_decoders: Dict[str, Callable[[np.ndarray], List[str]]]
                ) -> Tuple[float, Dict[str, List[int]], Dict[str, List[int]], Dict[str, Dict[str, List[str]]],
                           float, Dict[str, float]]:
    """One pass over the set: CTC loss, greedy unit ids, reference ids, and each LM decoder's words
    per utterance.  The LM decoders run on each batch's (T', V) log-posteriors as soon as they are
    computed, so memory holds one batch, not the whole set's posteriors (GBs for a real test set).
    Also the forward seconds and each decoder's seconds."""
    model.eval()
    total = n = 0.0
    hyps: Dict[str, List[int]] = {}
    refs: Dict[str, List[int]] = {}
    words: Dict[str, Dict[str, List[str]]] = {k: {} for k in lm_decoders}
    decode_s = {k: 0.0 for k in lm_decoders}
    t0 = time.perf_counter()
    for batch, utts in progress(loader, desc="decode", unit="batch"):
        batch = batch_to(batch, device)
        log_probs = network_log_probs(model, batch.x, amp, batch.x_lens)
        out_lens = model_output_lengths(model, batch.x_lens).to(log_probs.device)
        total += float(ctc_loss(log_probs, out_lens, batch.targets, batch.target_lens)) * len(utts)
        n += len(utts)
        decoded = greedy_decode(log_probs, out_lens)
        ends = torch.cumsum(batch.target_lens, 0).tolist()
        targets = batch.targets.tolist()
        lp = log_probs.float().cpu().numpy() if lm_decoders else None
        for i, utt in enumerate(utts):
            hyps[utt] = decoded[i]
            refs[utt] = targets[ends[i] - int(batch.target_lens[i]):ends[i]]
            if lp is None:
                continue
            utt_lp = np.ascontiguousarray(lp[i, : int(out_lens[i])])
            for kind, decode in lm_decoders.items():
                t1 = time.perf_counter()
                words[kind][utt] = decode(utt_lp)
                decode_s[kind] += time.perf_counter() - t1
    forward_s = time.perf_counter() - t0 - sum(decode_s.values())
    return total / max(n, 1), hyps, refs, words, forward_s, decode_s


def audio_seconds(data_dir: Path, utts) -> float:
    """Audio duration of `utts` from utt2num_frames (10 ms frames), for real-time factors."""
    frames = read_table(data_dir / "utt2num_frames") if (data_dir / "utt2num_frames").is_file() else {}
    return sum(int(frames.get(u, 0)) for u in utts) * 0.01


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(data_dirs=[args.data], exp_dir=args.exp_dir)  # before log/ is made
    exp = Path(args.exp_dir)
    if args.average_only:
        setup_logging(exp / "log" / "average.log")
        if args.average_last < 1:
            log.error("--average-only needs --average-last N")
            return 1
        averaged_checkpoint(exp, args.average_last)
        return 0
    if args.data is None:
        log.error("--data is required (unless --average-only)")
        return 1
    name = args.name or Path(args.data).name
    out = exp / f"decode_{name}"
    setup_logging(out / "log" / "decode.log")
    cfg = load_yaml(exp / "config.yaml")
    d = cfg["data"]
    units_txt = Path(d["lang"]) / "units.txt"
    if args.average_last:
        ckpt = averaged_checkpoint(exp, args.average_last)
    else:
        ckpt = Path(args.checkpoint) if Path(args.checkpoint).is_file() else exp / args.checkpoint
    # A decode of a real test set takes hours: a rerun with the same model, data, graph and settings
    # does nothing.  --device only changes the time it takes.
    data = Path(args.data)
    done = Stamp(out / ".done.json", {k: v for k, v in vars(args).items() if k != "device"},
                 inputs=[exp / "config.yaml", ckpt, units_txt, data / "feats.scp", data / "text",
                         data / "cmvn.scp", Path(args.graph) / "TLG.fst" if args.graph else None, args.arpa],
                 what=out)
    if done.is_current(outputs=[out / "results.json"]):
        return 0
    done.clear()
    wfst = None
    if args.graph:
        from nasr.asr.graph import UnitMismatchError
        from nasr.asr.wfst_decode import WfstDecoder
        from nasr.utils.io import FormatError

        # Before any decoding: a graph for another unit set would map every unit id wrongly.
        try:
            wfst = WfstDecoder(args.graph, beam=args.beam, max_active=args.max_active,
                               acoustic_scale=args.acoustic_scale, blank_skip_threshold=args.blank_skip,
                               units_path=units_txt)
        except (UnitMismatchError, FormatError) as e:
            log.error("%s", e)
            return 1
        if wfst.num_units != d["num_units"]:
            log.error("%s: graph has %d units but the model in %s outputs %d (fix: rebuild the graph "
                      "from the model's lang dir %s)", args.graph, wfst.num_units, exp, d["num_units"], d["lang"])
            return 1
    device = get_device(args.device)
    plan = plan_device(device, cfg.get("amp", "auto"), cfg.get("bf16", False))  # as the model trained
    ds = AsrDataset(args.data, d["lang"], max_frames=None, return_utt=True)
    model = build_ctc_model(cfg, d["in_channels"], d["feat_dim"], d["num_units"]).to(device)
    load_model_state(model, load_checkpoint(ckpt), ckpt)
    lm_decoders: Dict[str, Callable[[np.ndarray], List[str]]] = {}
    lm_settings: Dict[str, Dict] = {}
    if wfst is not None:
        lm_decoders["wfst"] = wfst.decode
        lm_settings["wfst"] = {"graph": str(args.graph), "beam": args.beam, "max_active": args.max_active,
                               "acoustic_scale": args.acoustic_scale, "blank_skip": args.blank_skip}
    if args.arpa:
        from nasr.asr.beam_search import CtcPrefixBeamSearch

        lm_decoders["beam"] = CtcPrefixBeamSearch(d["lang"], args.arpa, beam_size=args.beam_size,
                                                  lm_weight=args.lm_weight, word_score=args.word_score,
                                                  blank_skip_threshold=args.blank_skip).decode
        lm_settings["beam"] = {"arpa": str(args.arpa), "beam_size": args.beam_size, "lm_weight": args.lm_weight}
    loss, hyps, refs, lm_words, fwd_s, lm_secs = forward_set(
        model, make_loader(ds, None, args.batch_size, False, pin_memory=plan.pin_memory), device, plan.amp_dtype,
        lm_decoders)
    units = ds.tokenizer.units
    hyp_units = {u: " ".join(units.decode(h)) for u, h in hyps.items()}
    ref_units = {u: " ".join(units.decode(r)) for u, r in refs.items()}
    tok = write_score_files(out, ref_units, hyp_units, unit="token", name=str(out))
    audio_s = audio_seconds(Path(args.data), refs)
    result = {"set": name, "model": cfg["model"]["name"], "params": count_parameters(model),
              "cells": cfg["model"].get("layers"), "channels": cfg["model"].get("C"),
              "unit_type": ds.tokenizer.unit_type, "utts": len(refs), "ctc_loss": loss,
              "token_accuracy": tok.token_accuracy, "ter": tok.rate,
              "token_summary": (out / "summary").read_text().splitlines()[0],
              "genotype_source": cfg["model"].get("genotype"), "checkpoint": str(ckpt),
              "audio_seconds": audio_s, "forward_seconds": fwd_s,
              "eval_command": " ".join(["python -m nasr.bin.decode_ctc"] + (argv if argv is not None else sys.argv[1:]))}
    text = read_table(Path(args.data) / "text")
    ref_text = {u: text[u] for u in refs}
    if ds.tokenizer.unit_type in ("char", "bpe"):
        hyp_text = {u: ds.tokenizer.detokenize(units.decode(h)) for u, h in hyps.items()}
        cer = write_score_files(out / "char", ref_text, hyp_text, unit="char", name=str(out),
                                latin_as_word=args.latin_as_word)
        result.update(cer=cer.rate, cer_summary=(out / "char" / "summary").read_text().splitlines()[0])
    for kind, words in lm_words.items():  # wfst (TLG) and beam (prefix beam search + ARPA)
        # Spaces between the words: --latin-as-word must not glue two English words into one token.
        hyp_text = {u: " ".join(w) for u, w in words.items()}
        st = write_score_files(out / kind, ref_text, hyp_text, unit="char", name=f"{out}/{kind}",
                               latin_as_word=args.latin_as_word)
        result[kind] = {"cer": st.rate, "summary": (out / kind / "summary").read_text().splitlines()[0],
                        **lm_settings[kind], "seconds": lm_secs[kind],
                        "rtf": lm_secs[kind] / audio_s if audio_s else None}
    train_json = exp / "train.json"
    if train_json.is_file():
        t = read_json(train_json)
        result.update(train_seconds=t["train_seconds"], epochs=t["epochs"], device=t["device"],
                      train_command=t["command"], workers=t.get("workers", 1),
                      distributed=t.get("distributed", "single"))
    write_json(out / "results.json", result)
    done.write()
    log.info("%s: token accuracy %.2f%%%s%s%s", name, 100 * tok.token_accuracy,
             f", greedy {result['cer_summary']}" if "cer" in result else "",
             f", WFST {result['wfst']['summary']}" if "wfst" in result else "",
             f", beam {result['beam']['summary']}" if "beam" in result else "")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "decode_ctc"))
