"""Synthetic speech corpora shaped exactly like the real releases, spoken by eSpeak NG.

Real corpora cannot be downloaded everywhere this project runs, so every recipe can fall back on a
synthetic one: `speech_commands` (Speech Commands v0.01), `aishell` (AISHELL-1 and AISHELL-2) and
`lid` (VoxLingua107).  The trees match the real ones folder for folder, so the recipes' data
preparation cannot tell them apart.

This module holds what the three share: stable seeding (a clip's audio depends only on the corpus
seed and the clip's own key, never on worker count or order), simulated speakers (an eSpeak voice
and variant plus pitch, rate, vocal-tract length, microphone colour and gain), a process pool with a
progress bar, and `build_tree`, which makes a corpus in a temp folder, renames it into place and
leaves a `.done` marker so that a rerun with the same arguments does nothing.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Sequence

import numpy as np

from nasr.utils.log import progress

SAMPLE_RATE = 16000
DONE_MARKER = ".done"

# eSpeak voice variants that sound like people (the robotic, whispering and Klatt-synthesiser ones
# are left out: Klatt voices keep state between calls, so they would break determinism).
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex", "Andy", "Denis", "Gene",
                 "Lee", "Michael", "Mike", "boris", "ed", "grandpa", "ian", "iven", "john", "max",
                 "norbert", "paul", "quincy", "rob", "robert", "travis", "victor", "zac")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Annie", "anika", "aunty", "belinda", "grandma",
                   "linda", "steph")


def stable_seed(*parts) -> List[int]:
    """A seed for numpy.random.default_rng from any printable parts, the same in every process
    (Python's hash() is salted per process, so it cannot be used)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def rng_for(*parts) -> np.random.Generator:
    return np.random.default_rng(stable_seed(*parts))


@dataclass(frozen=True)
class Speaker:
    """A simulated talker: the eSpeak settings plus the signal processing that follows them."""
    speaker_id: str
    voice: str          # eSpeak voice with variant, e.g. 'en-us+f2'
    pitch: int          # eSpeak pitch 0-100
    pitch_range: int    # eSpeak pitch range 0-100
    rate: int           # words per minute
    tract: float        # resampling factor >1 shortens the vocal tract (higher formants and pitch)
    tilt: float         # first-order pre-emphasis (+) or low-pass (-) coefficient: the microphone
    gain_db: float      # level of the speaker's recordings relative to -3 dBFS peak

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def draw_speaker(speaker_id: str, rng: np.random.Generator, languages: Sequence[str]) -> Speaker:
    """A random speaker of one of `languages` (eSpeak voice names) with a random variant."""
    female = rng.random() < 0.5
    variant = rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS)
    return Speaker(
        speaker_id=speaker_id,
        voice=f"{rng.choice(list(languages))}+{variant}",
        pitch=int(rng.integers(25, 76)),
        pitch_range=int(rng.integers(20, 91)),
        rate=int(rng.integers(130, 211)),
        tract=float(np.round(rng.uniform(0.92, 1.08), 3)),
        tilt=float(np.round(rng.uniform(-0.6, 0.6), 3)),
        gain_db=float(np.round(rng.uniform(-12.0, 0.0), 2)),
    )


def _resample_by(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `x` `factor` times faster at the same rate (pitch and formants scale by `factor`)."""
    from scipy.signal import resample_poly

    frac = Fraction(factor).limit_denominator(50)  # short polyphase filters: fast
    if frac == 1:
        return x
    return resample_poly(x, frac.denominator, frac.numerator).astype(np.float32)


def render(text: str, speaker: Speaker, rng: np.random.Generator, jitter: bool = True) -> np.ndarray:
    """Speak `text` as `speaker`, with small per-utterance rate and pitch jitter drawn from `rng`.

    Returns float32 samples at 16 kHz, peak at the speaker's level (never clipping).
    """
    from scipy.signal import lfilter

    from . import espeak

    rate, pitch = speaker.rate, speaker.pitch
    if jitter:
        rate = int(round(rate * rng.uniform(0.9, 1.1)))
        pitch = int(np.clip(pitch + rng.integers(-6, 7), 0, 100))
    x = espeak.synthesize(text, speaker.voice, rate=rate, pitch=pitch,
                          pitch_range=speaker.pitch_range, seed=int(rng.integers(1 << 30)))
    x = _resample_by(x, speaker.tract)
    if speaker.tilt >= 0:
        x = lfilter([1.0, -speaker.tilt], [1.0], x)   # brighter microphone
    else:
        x = lfilter([1.0 + speaker.tilt], [1.0, speaker.tilt], x)  # duller microphone
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak > 0:
        x = x * (10 ** ((speaker.gain_db - 3.0) / 20.0) / peak)
    return np.asarray(x, dtype=np.float32)


def fit_peak(x: np.ndarray, limit: float = 0.99) -> np.ndarray:
    """Scale down (never up) so that 16-bit writing does not clip."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x * (limit / peak)).astype(np.float32) if peak > limit else x.astype(np.float32)


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], num_workers: int, desc: str,
             initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> List[Any]:
    """fn(job) for every job, in `num_workers` processes, results in job order, with a progress bar.

    `initializer(*initargs)` runs once in each worker (and here when num_workers <= 1): the place
    for data every job needs, sent once per worker instead of once per job.
    Workers are spawned, not forked: the parent may hold threads (torch, tqdm) that a fork would
    copy in a locked state.
    """
    if num_workers <= 1 or len(jobs) <= 1:
        if initializer is not None:
            initializer(*initargs)
        return [fn(job) for job in progress(jobs, desc=desc, unit="utt", leave=True)]
    from .espeak import share_data_dir

    share_data_dir()  # the workers' eSpeak data folder, removed when this process exits
    ctx = multiprocessing.get_context("spawn")
    chunksize = max(1, min(64, len(jobs) // (num_workers * 8)))
    with ctx.Pool(num_workers, initializer=initializer, initargs=initargs) as pool:
        return list(progress(pool.imap(fn, jobs, chunksize=chunksize), total=len(jobs), desc=desc,
                             unit="utt", leave=True))


class CorpusExistsError(RuntimeError):
    """The output folder holds something other than this corpus made with these arguments."""


def read_done(out_dir) -> Dict[str, Any] | None:
    marker = Path(out_dir) / DONE_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def build_tree(out_dir, kind: str, params: Dict[str, Any], build: Callable[[Path], None]) -> bool:
    """Make a corpus in a temp folder beside `out_dir` and rename it into place when complete.

    `build(tmp_root)` writes the tree; `params` (JSON-able) go into `out_dir/.done` with `kind`.
    Returns False (and does nothing) when `out_dir` already holds the same corpus; raises
    CorpusExistsError when it holds anything else.  A killed run leaves only a `.<name>.tmp-*`
    folder, which a later run removes, never a tree that looks complete.
    """
    out_dir = Path(out_dir)
    record = {"kind": kind, "params": params}
    if out_dir.exists():
        if read_done(out_dir) == json.loads(json.dumps(record)):
            return False
        raise CorpusExistsError(
            f"{out_dir} already exists and is not a {kind} corpus made with these arguments "
            f"(fix: remove it, or choose another output folder)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_dir.name}.tmp-"
    for stale in out_dir.parent.glob(prefix + "*"):  # left by killed runs
        if stale.is_dir() and not _owner_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=out_dir.parent))
    try:
        build(tmp)
        with open(tmp / DONE_MARKER, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def _owner_alive(tmp_dir: Path) -> bool:
    """Whether the process that made `.<name>.tmp-<pid>-xxxx` is still running (then keep it)."""
    try:
        pid = int(tmp_dir.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def unique_ids(count: int, make: Callable[[np.random.Generator], str], rng: np.random.Generator,
               accept: Callable[[str], bool] = lambda _: True, taken: Iterable[str] = ()) -> List[str]:
    """`count` distinct ids from `make(rng)`, each passing `accept`, none in `taken`."""
    seen = set(taken)
    out: List[str] = []
    while len(out) < count:
        candidate = make(rng)
        if candidate not in seen and accept(candidate):
            seen.add(candidate)
            out.append(candidate)
    return out
