"""Compute fbank/MFCC features (+ deltas) and CMVN stats for a Kaldi data dir.

Usage:
  python -m nasr.bin.compute_feats --data-dir DIR [--feat-dir DIR/data] [--config feats.yaml]
      [--preset kws_mfcc|asr_fbank] [--type fbank|mfcc] [--num-mel-bins 40] [--deltas 2] ...
      [--nj N] [--job K --num-jobs N]

e.g.:
  python -m nasr.bin.compute_feats --data-dir data/train --preset asr_fbank --nj 8

Reads wav.scp (and segments, and utt2spk for per-speaker CMVN) of DIR and writes:
  FEAT_DIR/raw_feats.<k>.{ark,scp}   part k of N, each made under a temp name and renamed when
                                     complete; FEAT_DIR/raw_stats.<k>.npz (per-utterance CMVN stats)
                                     and raw_feats.<k>.done (what the part was made from) beside it
  DIR/feats.scp, DIR/utt2num_frames  merged, sorted
  DIR/cmvn.scp, FEAT_DIR/cmvn.ark    "global" or per-speaker Kaldi stats (unless --cmvn none)
  DIR/feats.yaml                     the resolved config + feat_dim + num_channels, written LAST

A data dir is featurised only when feats.yaml exists and matches the config and the inputs:
rerunning on a finished dir does nothing; a killed run resumes, skipping finished parts; a run with
another config recomputes (a change of cmvn/norm_vars/layout only redoes the CMVN stats).
With --job K only part K is computed (for a job array); a later run without --job merges.
The config is: built-in defaults < --preset < --config YAML (its `features:` section if it has one)
< the per-field options below.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import yaml

from nasr.data.features import (CMVN_SCP, FEATS_SCP, FEATS_YAML, GLOBAL_CMVN_KEY, PRESETS,
                                UTT2NUM_FRAMES, FeatureConfig, FeatureExtractor,
                                accumulate_cmvn_stats, ark_problem, read_feats_yaml)
from nasr.utils.io import FormatError, atomic_write, iter_table, read_table, write_table
from nasr.utils.lock import LOCK_NAME, LockError, dir_lock
from nasr.utils.log import progress as show_progress

log = logging.getLogger("nasr.compute_feats")

# A segment may end this far past its recording (rounding in corpus metadata), as Kaldi allows.
SEGMENT_END_TOLERANCE_S = 0.1
PROGRESS_EVERY = 16  # utterances per progress message from a worker
FEATS_YAML_RECORDS = ("feat_dim", "num_channels", "num_utts", "source")  # feats.yaml beyond the config


class FeatureError(RuntimeError):
    """A data problem found while computing features; the message names file, line and fix.
    (A plain one-argument exception, so that it crosses process boundaries intact.)"""


class Utterance(NamedTuple):
    utt: str
    rec: str
    wav: str           # the wav.scp value
    wav_line: int
    start: Optional[float]
    end: Optional[float]
    seg_line: Optional[int]


# --- inputs -----------------------------------------------------------------------------------

def load_utterances(data_dir: Path) -> List[Utterance]:
    """The utterances of a data dir in C order, from wav.scp or wav.scp + segments."""
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise FormatError(wav_scp, None, "missing", "prepare the data dir first (it needs wav.scp)")
    recs: Dict[str, tuple] = {}
    for lineno, rec, value in iter_table(wav_scp):
        if rec in recs:
            raise FormatError(wav_scp, lineno, f"duplicate key '{rec}'", "keep one line per recording")
        if not value:
            raise FormatError(wav_scp, lineno, f"recording '{rec}' has no path or command",
                              "write `<recording-id> <path or command |>`")
        recs[rec] = (value, lineno)
    segments = data_dir / "segments"
    utts: List[Utterance] = []
    if segments.is_file():
        seen = set()
        for lineno, utt, rest in iter_table(segments):
            fields = rest.split()
            if len(fields) != 3:
                raise FormatError(segments, lineno, "expected `<utt> <recording> <start> <end>`",
                                  "write four fields per line (times in seconds)")
            rec = fields[0]
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                raise FormatError(segments, lineno, f"times '{fields[1]} {fields[2]}' are not numbers",
                                  "write start and end in seconds") from None
            if utt in seen:
                raise FormatError(segments, lineno, f"duplicate utterance '{utt}'", "keep one line per utterance")
            if rec not in recs:
                raise FormatError(segments, lineno, f"recording '{rec}' is not in {wav_scp}",
                                  "add it to wav.scp or run utils/fix_data_dir.sh")
            if start < 0 or (end > 0 and end <= start):
                raise FormatError(segments, lineno, f"segment [{start}, {end}] is empty or negative",
                                  "use 0 <= start < end (end -1 means to the end of the recording)")
            seen.add(utt)
            utts.append(Utterance(utt, rec, recs[rec][0], recs[rec][1], start, end, lineno))
    else:
        utts = [Utterance(rec, rec, value, lineno, None, None, None) for rec, (value, lineno) in recs.items()]
    utts.sort(key=lambda u: u.utt.encode("utf-8"))
    return utts


def split_contiguous(items: Sequence, num_parts: int) -> List[List]:
    """Kaldi's split_scp: contiguous parts whose sizes differ by at most one."""
    base, extra = divmod(len(items), num_parts)
    parts, start = [], 0
    for k in range(num_parts):
        size = base + (1 if k < extra else 0)
        parts.append(list(items[start:start + size]))
        start += size
    return parts


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def part_fingerprint(cfg: FeatureConfig, items: Sequence[Utterance]) -> str:
    """What a part's arks depend on: the raw-feature settings and its utterances' sources."""
    return _digest({"config": cfg.raw_dict(), "utts": [[u.utt, u.wav, u.start, u.end] for u in items]})


def source_digest(cfg: FeatureConfig, data_dir: Path, utts: Sequence[Utterance]) -> str:
    """What the finished dir depends on beyond the config: the utterances (and speakers)."""
    spk = None
    if cfg.cmvn == "speaker" and (data_dir / "utt2spk").is_file():
        spk = (data_dir / "utt2spk").read_text(encoding="utf-8")
    return _digest({"utts": [[u.utt, u.wav, u.start, u.end] for u in utts], "utt2spk": spk})


# --- one part ---------------------------------------------------------------------------------

def part_paths(feat_dir: Path, k: int) -> Dict[str, Path]:
    return {"ark": feat_dir / f"raw_feats.{k}.ark", "scp": feat_dir / f"raw_feats.{k}.scp",
            "stats": feat_dir / f"raw_stats.{k}.npz", "done": feat_dir / f"raw_feats.{k}.done"}


def part_is_done(feat_dir: Path, k: int, fingerprint: str) -> bool:
    p = part_paths(feat_dir, k)
    if not all(p[name].is_file() for name in ("ark", "scp", "stats", "done")):
        return False
    if p["done"].read_text(encoding="utf-8").strip() != fingerprint:
        return False
    problem = ark_problem(p["scp"]) if p["scp"].stat().st_size else None
    if problem:
        log.warning("part %d is recomputed: %s", k, problem)
    return problem is None


class _AudioCache:
    """Keeps the last recording: segments of one recording are adjacent in C order."""

    def __init__(self, cfg: FeatureConfig, data_dir: Path):
        self.cfg, self.data_dir, self.rec, self.wave = cfg, data_dir, None, None

    def get(self, u: Utterance) -> np.ndarray:
        from nasr.data.audio import AudioError, is_pipe, read_audio

        if u.rec != self.rec:
            self.rec, self.wave = None, None
            try:
                self.wave = read_audio(u.wav, self.cfg.sample_rate, resample_to_rate=self.cfg.resample,
                                       channel=self.cfg.channel)
            except AudioError as e:
                if "sample rate" in str(e) or "(fix: " in str(e):  # read_audio's message says how to fix it
                    raise FeatureError(f"{self.data_dir / 'wav.scp'}:{u.wav_line}: utterance "
                                       f"'{u.utt}': {e}") from None
                problem = str(e)
                if not is_pipe(u.wav) and not os.path.exists(u.wav.strip()):
                    # soundfile reports a missing file as a generic "System error"; say what it is.
                    problem = f"audio file '{u.wav.strip()}' does not exist"
                raise FeatureError(str(FormatError(
                    self.data_dir / "wav.scp", u.wav_line, f"utterance '{u.utt}': {problem}",
                    "correct the path or command on this line, or remove the recording and run "
                    "utils/fix_data_dir.sh"))) from None
            self.rec = u.rec
        if u.start is None:
            return self.wave
        sr, n = self.cfg.sample_rate, len(self.wave)
        begin = int(round(u.start * sr))
        end = n if u.end <= 0 else int(round(u.end * sr))
        if end > n and end - n <= SEGMENT_END_TOLERANCE_S * sr:
            end = n
        if begin >= n or end > n:
            raise FeatureError(str(FormatError(
                self.data_dir / "segments", u.seg_line,
                f"segment '{u.utt}' [{u.start}, {u.end}] s lies outside recording '{u.rec}' "
                f"({n / sr:.3f} s, wav.scp line {u.wav_line})", "fix the times or the recording")))
        return self.wave[begin:end]


_progress_queue = None  # set in worker processes by _init_worker


def _init_worker(queue):
    global _progress_queue
    _progress_queue = queue


def compute_part(job: dict) -> int:
    """Compute one part atomically; returns the number of utterances. Runs in a worker process."""
    import kaldiio

    cfg = FeatureConfig.from_dict(job["config"])
    feat_dir, data_dir, k = Path(job["feat_dir"]), Path(job["data_dir"]), job["k"]
    items = [Utterance(*u) for u in job["items"]]
    paths = part_paths(feat_dir, k)
    tmp_ark = feat_dir / f".raw_feats.{k}.ark.tmp"
    tmp_scp = feat_dir / f".raw_feats.{k}.scp.tmp"
    tmp_stats = feat_dir / f".raw_stats.{k}.tmp.npz"
    report = job.get("report") or _report_to_queue
    extractor = FeatureExtractor(cfg)
    audio = _AudioCache(cfg, data_dir)
    stats = np.zeros((len(items), 2, cfg.feat_dim + 1), dtype=np.float64)
    paths["done"].unlink(missing_ok=True)
    try:
        pending = 0
        with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
            for i, u in enumerate(items):
                feats = extractor(audio.get(u))
                if feats.shape[0] == 0:
                    where = (f"{data_dir / 'segments'}:{u.seg_line}" if u.seg_line
                             else f"{data_dir / 'wav.scp'}:{u.wav_line}")
                    raise FeatureError(f"{where}: utterance '{u.utt}' is shorter than one "
                                       f"{cfg.frame_length_ms} ms frame (fix: remove it and run "
                                       "utils/fix_data_dir.sh, or set snip_edges false)")
                writer(u.utt, feats)
                # Kaldi stats per utterance; the merge sums them per speaker or globally.
                accumulate_cmvn_stats(feats, stats[i])
                pending += 1
                if pending == PROGRESS_EVERY:
                    report(pending)
                    pending = 0
        report(pending)
        # The scp was written naming the temp ark; point it at the final name before the rename.
        lines = []
        for _, utt, value in (iter_table(tmp_scp) if items else []):
            path, offset = value.rsplit(":", 1)
            if Path(path) != tmp_ark:
                raise RuntimeError(f"unexpected ark path '{path}' in {tmp_scp}")
            lines.append(f"{utt} {paths['ark']}:{offset}\n")
        os.replace(tmp_ark, paths["ark"])
        with atomic_write(paths["scp"]) as f:
            f.writelines(lines)
        np.savez(tmp_stats, utts=np.array([u.utt for u in items], dtype=str), stats=stats)
        os.replace(tmp_stats, paths["stats"])
        with atomic_write(paths["done"]) as f:  # last: only now does a rerun skip this part
            f.write(job["fingerprint"] + "\n")
    finally:
        for tmp in (tmp_ark, tmp_scp, tmp_stats):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return len(items)


def _report_to_queue(n: int) -> None:
    if _progress_queue is not None and n:
        _progress_queue.put(n)


def run_parts(jobs: List[dict], max_procs: int, progress: bool) -> None:
    """Compute the parts, up to `max_procs` at once (never more than the CPU cores)."""
    total = sum(len(j["items"]) for j in jobs)
    procs = max(1, min(max_procs, len(jobs), os.cpu_count() or 1))
    if procs == 1:
        with show_progress(total=total, desc="features", unit="utt", disable=not progress, leave=True) as bar:
            for job in jobs:
                compute_part(dict(job, report=bar.update))
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    queue = ctx.Queue()
    # The pool forks before a tqdm bar starts its monitor thread.
    with ctx.Pool(procs, initializer=_init_worker, initargs=(queue,)) as pool:
        result = pool.map_async(compute_part, jobs, chunksize=1)
        with show_progress(total=total, desc="features", unit="utt", disable=not progress, leave=True) as bar:
            while not result.ready():
                with contextlib.suppress(Exception):
                    bar.update(queue.get(timeout=0.2))
            while not queue.empty():
                bar.update(queue.get())
        result.get()  # re-raises a worker's FeatureError; leaving `with` terminates the others


# --- merge ------------------------------------------------------------------------------------

def _write_ark_scp_atomic(items: Dict[str, np.ndarray], ark: Path, scp: Path) -> None:
    import kaldiio

    tmp_ark = ark.parent / f".{ark.name}.tmp"
    tmp_scp = scp.parent / f".{scp.name}.tmp"
    try:
        with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
            for key in sorted(items, key=lambda k: k.encode("utf-8")):
                writer(key, items[key])
        table = {}
        for _, key, value in iter_table(tmp_scp):
            table[key] = f"{ark}:{value.rsplit(':', 1)[1]}"
        os.replace(tmp_ark, ark)
        write_table(scp, table)
    finally:
        for tmp in (tmp_ark, tmp_scp):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def cmvn_stats_by_key(cfg: FeatureConfig, data_dir: Path, utt_stats: Dict[str, np.ndarray]):
    """Sum per-utterance stats globally or per speaker (utt2spk)."""
    if cfg.cmvn == "global":
        return {GLOBAL_CMVN_KEY: np.sum(list(utt_stats.values()), axis=0)}
    utt2spk_path = data_dir / "utt2spk"
    if not utt2spk_path.is_file():
        raise FormatError(utt2spk_path, None, "missing but per-speaker CMVN is configured",
                          "add utt2spk, or use --cmvn global")
    utt2spk = read_table(utt2spk_path)
    out: Dict[str, np.ndarray] = {}
    for utt, stats in utt_stats.items():
        spk = utt2spk.get(utt)
        if spk is None:
            raise FormatError(utt2spk_path, None, f"utterance '{utt}' has no speaker",
                              "add it to utt2spk or run utils/fix_data_dir.sh")
        out[spk] = out[spk] + stats if spk in out else stats.copy()
    return out


def merge_parts(data_dir: Path, feat_dir: Path, cfg: FeatureConfig, utts: List[Utterance],
                num_parts: int, source: str) -> None:
    scp: Dict[str, str] = {}
    utt_stats: Dict[str, np.ndarray] = {}
    for k in range(1, num_parts + 1):
        p = part_paths(feat_dir, k)
        if p["scp"].stat().st_size:
            scp.update(read_table(p["scp"]))
        with np.load(p["stats"]) as z:
            utt_stats.update(zip(z["utts"].tolist(), z["stats"]))
    expected = {u.utt for u in utts}
    if set(scp) != expected or set(utt_stats) != expected:
        raise FeatureError(f"{feat_dir}: the parts hold {len(scp)} utterances but the data dir has "
                           f"{len(expected)} (fix: rerun; the parts will be recomputed)")
    write_table(data_dir / FEATS_SCP, scp)
    write_table(data_dir / UTT2NUM_FRAMES, {u: str(int(s[0, -1])) for u, s in utt_stats.items()})
    if cfg.cmvn == "none":
        (data_dir / CMVN_SCP).unlink(missing_ok=True)
    else:
        _write_ark_scp_atomic(cmvn_stats_by_key(cfg, data_dir, utt_stats), feat_dir / "cmvn.ark",
                              data_dir / CMVN_SCP)
    remove_stale_parts(feat_dir, num_parts)
    meta = dict(cfg.to_dict(), feat_dim=cfg.feat_dim, num_channels=cfg.num_channels,
                num_utts=len(utts), source=source)
    with atomic_write(data_dir / FEATS_YAML) as f:  # last: marks the dir as featurised
        yaml.safe_dump(meta, f, sort_keys=False)


def remove_stale_parts(feat_dir: Path, num_parts: int) -> None:
    """Parts left by an earlier run with more jobs are referenced by nothing now."""
    pattern = re.compile(r"raw_(feats|stats)\.(\d+)\.(ark|scp|npz|done)$")
    for path in feat_dir.iterdir():
        m = pattern.match(path.name)
        if m and int(m.group(2)) > num_parts:
            path.unlink(missing_ok=True)


# --- driver -----------------------------------------------------------------------------------

def is_featurised(data_dir: Path, cfg: FeatureConfig, source: str) -> bool:
    if not (data_dir / FEATS_YAML).is_file():
        return False
    meta = read_feats_yaml(data_dir)
    # A field newer than the feats.yaml (e.g. channel) was at its default when the dir was made.
    stored = {k: meta.get(k, getattr(FeatureConfig(), k)) for k in FeatureConfig.field_names()}
    needed = [FEATS_SCP, UTT2NUM_FRAMES] + ([CMVN_SCP] if cfg.cmvn != "none" else [])
    if not (stored == cfg.to_dict() and meta.get("source") == source
            and all((data_dir / name).is_file() for name in needed)):
        return False
    # feats.yaml says done; the arks must say so too (a deleted or cut ark is recomputed).
    for scp in needed:
        problem = ark_problem(data_dir / scp) if scp != UTT2NUM_FRAMES else None
        if problem:
            log.warning("%s: features are recomputed: %s", data_dir, problem)
            return False
    return True


def claim_feat_dir(feat_dir: Path, data_dir: Path) -> None:
    """Part names carry no data-dir name, so one feat dir must serve one data dir only."""
    owner_file = feat_dir / ".data_dir"
    me = str(data_dir.resolve())
    if owner_file.is_file():
        owner = owner_file.read_text(encoding="utf-8").strip()
        if owner != me:
            raise FeatureError(f"{feat_dir} already holds the features of data dir {owner} "
                               f"(fix: give {data_dir} its own --feat-dir)")
        return
    with atomic_write(owner_file) as f:
        f.write(me + "\n")


def compute_data_dir(data_dir, cfg: FeatureConfig, feat_dir=None, nj: int = 1,
                     job: Optional[int] = None, progress: bool = True) -> str:
    """Featurise `data_dir` (see the module doc). Returns "up-to-date", "part-done" or "done"."""
    data_dir = Path(data_dir)
    feat_dir = Path(feat_dir) if feat_dir is not None else data_dir / "data"
    feat_dir = feat_dir.resolve()  # scp files name arks by absolute path, as Kaldi's make_fbank.sh
    if nj < 1:
        raise ValueError(f"--nj {nj} must be >= 1")
    if job is not None and not 1 <= job <= nj:
        raise ValueError(f"--job {job} must be in 1..{nj} (--num-jobs)")
    if not data_dir.is_dir():
        raise FormatError(data_dir, None, "data dir does not exist", "check --data-dir, or prepare the data dir first")
    # One writer per data dir (parallel --job parts each hold their own part's lock).
    lock_name = LOCK_NAME if job is None else f"{LOCK_NAME}.job{job}"
    with dir_lock(data_dir, name=lock_name, what="data dir"):
        return _compute_data_dir(data_dir, cfg, feat_dir, nj, job, progress)


def _compute_data_dir(data_dir: Path, cfg: FeatureConfig, feat_dir: Path, nj: int, job: Optional[int],
                      progress: bool) -> str:
    utts = load_utterances(data_dir)
    if not utts:
        raise FormatError(data_dir / "wav.scp", None, "no utterances", "prepare the data dir first")
    source = source_digest(cfg, data_dir, utts)
    if is_featurised(data_dir, cfg, source):
        log.info("%s: features are up to date (%s), nothing to do", data_dir, data_dir / FEATS_YAML)
        return "up-to-date"
    # From here on the dir is not featurised until feats.yaml is rewritten at the very end.
    for name in (FEATS_YAML, FEATS_SCP, UTT2NUM_FRAMES, CMVN_SCP):
        (data_dir / name).unlink(missing_ok=True)
    feat_dir.mkdir(parents=True, exist_ok=True)
    claim_feat_dir(feat_dir, data_dir)

    parts = split_contiguous(utts, nj)
    jobs = []
    for k, items in enumerate(parts, 1):
        if job is not None and k != job:
            continue
        fingerprint = part_fingerprint(cfg, items)
        if part_is_done(feat_dir, k, fingerprint):
            log.info("part %d/%d is complete, skipping", k, nj)
            continue
        jobs.append({"config": cfg.to_dict(), "feat_dir": str(feat_dir), "data_dir": str(data_dir),
                     "k": k, "items": [tuple(u) for u in items], "fingerprint": fingerprint})
    if jobs:
        t0 = time.time()
        log.info("computing %s features (dim %d) for %d utterances in %d part(s)",
                 cfg.type, cfg.feat_dim, sum(len(j["items"]) for j in jobs), len(jobs))
        run_parts(jobs, nj, progress)
        log.info("computed %d part(s) in %.1f s", len(jobs), time.time() - t0)
    if job is not None:
        return "part-done"
    merge_parts(data_dir, feat_dir, cfg, utts, nj, source)
    log.info("%s: wrote %s, %s%s and %s", data_dir, FEATS_SCP, UTT2NUM_FRAMES,
             f", {CMVN_SCP} ({cfg.cmvn})" if cfg.cmvn != "none" else "", FEATS_YAML)
    return "done"


# --- command line -----------------------------------------------------------------------------

def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nasr.bin.compute_feats",
        description="Compute fbank/MFCC features, deltas and CMVN stats for a Kaldi data dir.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="e.g.: python -m nasr.bin.compute_feats --data-dir data/train --preset asr_fbank --nj 8")
    parser.add_argument("--data-dir", required=True, help="Kaldi data dir with wav.scp [segments utt2spk]")
    parser.add_argument("--feat-dir", default=None, help="where the arks go (default: DATA_DIR/data)")
    parser.add_argument("--config", default=None, help="YAML feature config (or a config with a "
                                                       "`features:` section)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="named base config")
    parser.add_argument("--nj", "--num-jobs", dest="nj", type=int, default=1,
                        help="number of parts (and of processes, at most the CPU cores)")
    parser.add_argument("--job", type=int, default=None,
                        help="compute only part JOB of --num-jobs (1-based; for a job runner); "
                             "a later run without --job merges")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("feature options (override --preset and --config)")
    defaults = FeatureConfig()
    for field in FeatureConfig.field_names():
        value = getattr(defaults, field)
        kind = "true|false" if isinstance(value, bool) else type(value).__name__
        group.add_argument(_option(field), dest=field, default=None, metavar=kind.upper(),
                           help=f"(default {value})")
    return parser


def resolve_config(args: argparse.Namespace) -> FeatureConfig:
    from nasr.utils.config import load_yaml

    d: Dict = {}
    if args.config:
        d = load_yaml(args.config)
        if isinstance(d.get("features"), dict):
            d = d["features"]
        # A finished dir's feats.yaml is a valid --config: drop what it records beyond the config.
        d = {k: v for k, v in d.items() if k not in FEATS_YAML_RECORDS}
    if args.preset:
        d["preset"] = args.preset
    for field in FeatureConfig.field_names():
        value = getattr(args, field)
        if value is not None:
            d[field] = value
    try:
        return FeatureConfig.from_dict(d)
    except ValueError as e:
        if args.config:
            raise FormatError(args.config, None, str(e), "fix the feature config") from None
        raise


def main(argv: Optional[List[str]] = None) -> int:
    from nasr.utils.log import setup_logging

    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        cfg = resolve_config(args)
        log.info("feature config: %s", json.dumps(cfg.to_dict()))
        compute_data_dir(args.data_dir, cfg, feat_dir=args.feat_dir, nj=args.nj, job=args.job,
                         progress=not args.no_progress)
    except (FeatureError, LockError, ValueError) as e:  # FormatError is a ValueError
        # One clear line: these are problems with the inputs, not with this program.
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
