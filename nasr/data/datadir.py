"""Kaldi data directories: load, write, validate, fix, subset, split, combine, speed-perturb.

A data dir holds one `key value` table per file, each sorted by key in C (byte) order with unique
keys.  Three kinds of key occur:

    utterance  text, utt2spk, segments, utt2lang, utt2dur, utt2num_frames, utt2uniq, feats.scp
    speaker    spk2utt (derived from utt2spk), spk2gender, cmvn.scp (per speaker, as Kaldi)
    recording  wav.scp, reco2dur   (without `segments`, recording id == utterance id)

The rules checked by `validate_data_dir` and repaired by `fix_data_dir` are those of Kaldi's
`utils/validate_data_dir.sh` and `utils/fix_data_dir.sh`, with two additions that make a later
stage fail less obscurely: empty transcripts are errors, and every wav.scp entry must be readable.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from nasr.data.features import GLOBAL_CMVN_KEY
from nasr.utils.io import FormatError, format_table, iter_table, read_table, write_table

log = logging.getLogger(__name__)

# dataclass field -> file name, in the order files are checked and written
FILES: Dict[str, str] = {
    "utt2spk": "utt2spk",
    "text": "text",
    "wav_scp": "wav.scp",
    "segments": "segments",
    "utt2lang": "utt2lang",
    "utt2dur": "utt2dur",
    "utt2num_frames": "utt2num_frames",
    "utt2uniq": "utt2uniq",
    "feats_scp": "feats.scp",
    "reco2dur": "reco2dur",
    "spk2gender": "spk2gender",
    "cmvn_scp": "cmvn.scp",
}
UTT_FIELDS = ("utt2spk", "text", "segments", "utt2lang", "utt2dur", "utt2num_frames", "utt2uniq",
              "feats_scp")
RECO_FIELDS = ("wav_scp", "reco2dur")
SPK_FIELDS = ("spk2gender", "cmvn_scp")
# Values that only hold for the audio they were computed from: dropped when the audio changes.
FEATURE_FIELDS = ("feats_scp", "utt2num_frames", "cmvn_scp")
# What nasr.bin.compute_feats adds to a data dir (feats.yaml records what they were computed from).
FEATURE_FILES = ("feats.scp", "utt2num_frames", "cmvn.scp", "feats.yaml")

_ASCII_WS = re.compile(r"[ \t]+")


def c_order(key: str) -> bytes:
    """Sort key for Kaldi's `LC_ALL=C sort`: byte order of the UTF-8 encoding."""
    return key.encode("utf-8")


def _fix_hint(data_dir) -> str:
    return f"utils/fix_data_dir.sh {data_dir}"


def cmvn_kind(cmvn_keys: Iterable[str], utt2spk: Dict[str, str]) -> str:
    """What a cmvn.scp is keyed by: "speaker" (Kaldi's), "utterance", or "global": the one
    `global` entry that compute_feats --cmvn global writes (unless a speaker is named so)."""
    keys = set(cmvn_keys)
    speakers = set(utt2spk.values())
    if keys == {GLOBAL_CMVN_KEY} and GLOBAL_CMVN_KEY not in speakers:
        return "global"
    if keys and keys <= set(utt2spk) and not keys <= speakers:
        return "utterance"
    return "speaker"


@dataclass
class DataDir:
    """One dict per file (None: file absent).  Keys and values are the file's text, unparsed."""

    utt2spk: Dict[str, str]
    text: Optional[Dict[str, str]] = None
    wav_scp: Optional[Dict[str, str]] = None
    segments: Optional[Dict[str, str]] = None
    utt2lang: Optional[Dict[str, str]] = None
    utt2dur: Optional[Dict[str, str]] = None
    utt2num_frames: Optional[Dict[str, str]] = None
    utt2uniq: Optional[Dict[str, str]] = None
    feats_scp: Optional[Dict[str, str]] = None
    reco2dur: Optional[Dict[str, str]] = None
    spk2gender: Optional[Dict[str, str]] = None
    cmvn_scp: Optional[Dict[str, str]] = None

    @property
    def utts(self) -> List[str]:
        return sorted(self.utt2spk, key=c_order)

    @property
    def spk2utt(self) -> Dict[str, List[str]]:
        return utt2spk_to_spk2utt(self.utt2spk)

    def segment(self, utt: str) -> Tuple[str, float, float]:
        """(recording, start, end) of `utt`; the whole recording when there is no segments file."""
        if self.segments is None:
            return utt, 0.0, -1.0
        reco, start, end = self.segments[utt].split()
        return reco, float(start), float(end)

    def recordings_of(self, utts: Iterable[str]) -> Set[str]:
        if self.segments is None:
            return set(utts)
        return {self.segments[u].split()[0] for u in utts if u in self.segments}

    def cmvn_per_utt(self) -> bool:
        """Kaldi's cmvn.scp is per speaker; a per-utterance one (keys are utterances) also occurs."""
        return cmvn_kind(self.cmvn_scp or {}, self.utt2spk) == "utterance"

    def filter_utts(self, keep: Iterable[str]) -> "DataDir":
        """A copy holding only the utterances in `keep`, their speakers and their recordings."""
        keep = set(keep) & set(self.utt2spk)
        speakers = {self.utt2spk[u] for u in keep}
        recos = self.recordings_of(keep)
        per_utt_cmvn = self.cmvn_per_utt()
        out = {}
        for name in FILES:
            table = getattr(self, name)
            if table is None:
                out[name] = None
                continue
            if name == "cmvn_scp" and cmvn_kind(table, self.utt2spk) == "global":
                wanted = set(table)  # stats of the whole set: every subset keeps them
            elif name in UTT_FIELDS or (name == "cmvn_scp" and per_utt_cmvn):
                wanted = keep
            elif name in RECO_FIELDS:
                wanted = recos
            else:
                wanted = speakers
            out[name] = {k: v for k, v in table.items() if k in wanted}
        return DataDir(**out)


# ----------------------------------------------------------------------------------------------
# utt2spk <-> spk2utt

def utt2spk_to_spk2utt(utt2spk: Dict[str, str]) -> Dict[str, List[str]]:
    """Speakers in C order, each with its utterances in C order."""
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=c_order):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {s: spk2utt[s] for s in sorted(spk2utt, key=c_order)}


def spk2utt_to_utt2spk(spk2utt: Dict[str, Sequence[str]]) -> Dict[str, str]:
    utt2spk: Dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for utt in utts:
            if utt in utt2spk and utt2spk[utt] != spk:
                raise ValueError(f"utterance '{utt}' is listed under speakers '{utt2spk[utt]}' and '{spk}'")
            utt2spk[utt] = spk
    return {u: utt2spk[u] for u in sorted(utt2spk, key=c_order)}


def split_fields(line: str) -> List[str]:
    """Split on ASCII blanks only, as Kaldi's byte-oriented tools do: a no-break or ideographic space
    inside a (non-ASCII) token must not split it."""
    return [f for f in _ASCII_WS.split(line.strip(" \t\r\n")) if f]


def stream_utt2spk_to_spk2utt(lines: Iterable[str]) -> Iterable[str]:
    """Kaldi's utt2spk_to_spk2utt.pl: speakers in order of first appearance, utterances in input order."""
    spk2utt: Dict[str, List[str]] = {}
    for lineno, line in enumerate(lines, 1):
        fields = split_fields(line)
        if not fields:
            continue
        if len(fields) != 2:
            raise FormatError("<utt2spk>", lineno, f"expected '<utt> <spk>', got {line.strip()!r}",
                              "one utterance and one speaker per line")
        spk2utt.setdefault(fields[1], []).append(fields[0])
    for spk, utts in spk2utt.items():
        yield f"{spk} {' '.join(utts)}\n"


def stream_spk2utt_to_utt2spk(lines: Iterable[str]) -> Iterable[str]:
    """Kaldi's spk2utt_to_utt2spk.pl: one `utt spk` line per utterance, in input order."""
    for lineno, line in enumerate(lines, 1):
        fields = split_fields(line)
        if not fields:
            continue
        if len(fields) < 2:
            raise FormatError("<spk2utt>", lineno, f"speaker '{fields[0]}' has no utterances",
                              "list at least one utterance per speaker")
        for utt in fields[1:]:
            yield f"{utt} {fields[0]}\n"


# ----------------------------------------------------------------------------------------------
# load / write

def load_data_dir(path) -> DataDir:
    """Read every known file present in `path`.  Duplicate keys are errors; order is not checked
    (use `validate_data_dir` for that).  Empty transcripts are kept so that the validator can name them."""
    path = Path(path)
    if not path.is_dir():
        raise FormatError(path, None, "no such data directory", "run the data preparation stage first")
    tables = {}
    for name, fname in FILES.items():
        f = path / fname
        tables[name] = read_table(f, allow_empty_value=(name == "text")) if f.is_file() else None
    if tables["utt2spk"] is None:
        if (path / "spk2utt").is_file():
            spk2utt = {k: v.split() for k, v in read_table(path / "spk2utt").items()}
            tables["utt2spk"] = spk2utt_to_utt2spk(spk2utt)
        else:
            raise FormatError(path / "utt2spk", None, "missing",
                              "write utt2spk (one '<utt> <spk>' line per utterance; "
                              "use the utterance id as speaker when speakers are unknown)")
    return DataDir(**tables)


def holds_files(path: Path, contents: Dict[str, str], others_allowed) -> bool:
    """Does dir `path` already hold every file of `contents` (name -> text) byte for byte, and
    beside them only top-level files for which `others_allowed(name)` is true?"""
    if not path.is_dir():
        return False
    for name, text in contents.items():
        f = path / name
        if not f.is_file() or f.read_bytes() != text.encode("utf-8"):
            return False
    return all(others_allowed(f.name) for f in path.iterdir() if f.is_file() and f.name not in contents)


def write_data_dir(d: DataDir, path) -> None:
    """Write every present table (sorted in C order, atomically) and spk2utt from utt2spk.
    Known files that `d` lacks are removed so that a stale copy cannot disagree with the rest.

    A dir that already holds exactly these tables is left untouched, with the features computed
    from them: rerunning a data preparation on the same corpus redoes nothing downstream."""
    path = Path(path)
    contents = {fname: format_table(getattr(d, name)) for name, fname in FILES.items()
                if getattr(d, name) is not None}
    contents["spk2utt"] = format_table({s: " ".join(u) for s, u in d.spk2utt.items()})
    known = set(FILES.values()) - set(FEATURE_FILES)
    if holds_files(path, contents, lambda name: name not in known):
        log.info("%s is unchanged: kept as it is (with its features)", path)
        return
    path.mkdir(parents=True, exist_ok=True)
    for name, fname in FILES.items():
        table = getattr(d, name)
        if table is None:
            (path / fname).unlink(missing_ok=True)
        else:
            write_table(path / fname, table)
    write_table(path / "spk2utt", {s: " ".join(u) for s, u in d.spk2utt.items()})


# ----------------------------------------------------------------------------------------------
# validation

def _read_checked(path: Path, data_dir, allow_empty_value: bool = False) -> Dict[str, Tuple[int, str]]:
    """key -> (lineno, value), raising on bad UTF-8, CR line ends, blank lines, disorder and duplicates."""
    out: Dict[str, Tuple[int, str]] = {}
    prev: Optional[str] = None
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(path, lineno, "not valid UTF-8", "re-encode the file as UTF-8") from None
            if line.endswith("\r\n"):
                raise FormatError(path, lineno, "has a DOS line end (\\r\\n)", f"dos2unix {path}")
            line = line.rstrip("\n")
            if not line.strip():
                raise FormatError(path, lineno, "empty line", _fix_hint(data_dir))
            if line[0] in " \t":
                raise FormatError(path, lineno, "line starts with a blank", _fix_hint(data_dir))
            fields = _ASCII_WS.split(line, maxsplit=1)
            key, value = fields[0], (fields[1].strip(" \t") if len(fields) > 1 else "")
            if key in out:
                raise FormatError(path, lineno, f"duplicate key '{key}' (first on line {out[key][0]})",
                                  _fix_hint(data_dir))
            if prev is not None and c_order(key) < c_order(prev):
                raise FormatError(path, lineno, f"not sorted: '{key}' comes after '{prev}'",
                                  _fix_hint(data_dir))
            if not value and not allow_empty_value:
                raise FormatError(path, lineno, f"key '{key}' has no value", _fix_hint(data_dir))
            out[key] = (lineno, value)
            prev = key
    return out


def _require(path: Path, hint: str) -> None:
    if not path.is_file():
        raise FormatError(path, None, "missing", hint)


def _same_keys(table: Dict[str, Tuple[int, str]], table_path: Path, expected: Dict[str, Tuple[int, str]],
               expected_path: Path, data_dir, what: str = "utterance") -> None:
    """Both directions, naming the first offending key and where it was found."""
    for key, (lineno, _) in table.items():
        if key not in expected:
            raise FormatError(table_path, lineno, f"{what} '{key}' is not in {expected_path.name}",
                              _fix_hint(data_dir))
    for key, (lineno, _) in expected.items():
        if key not in table:
            raise FormatError(table_path, None,
                              f"has no line for {what} '{key}' ({expected_path.name} line {lineno})",
                              _fix_hint(data_dir))


def _check_audio_entry(spec: str, wav_path: Path, lineno: int, data_dir) -> int:
    """Readability of one wav.scp value; returns its sample rate.  Plain files: header only (cheap);
    pipes: run them, because nothing short of running tells whether the command works."""
    from nasr.data.audio import AudioError, check_wav_file, is_pipe, read_audio

    hint = f"correct the entry, or drop recordings with missing files: {_fix_hint(data_dir)}"
    if is_pipe(spec):
        try:
            read_audio(spec, channel=0)  # readability only: which channel is the feature step's choice
        except AudioError as e:
            raise FormatError(wav_path, lineno, f"cannot read audio: {e}", hint) from None
        return 0  # rate of a pipe's output is not recorded: reading it again only for that is waste
    import soundfile as sf

    if not os.path.isfile(spec):
        raise FormatError(wav_path, lineno, f"audio file '{spec}' does not exist", hint)
    try:
        rate = int(sf.info(spec).samplerate)
    except Exception as e:  # soundfile raises several types; all mean "not readable audio"
        raise FormatError(wav_path, lineno, f"cannot read audio file '{spec}': {e}", hint) from None
    try:
        check_wav_file(spec)  # the header alone does not show a cut file
    except AudioError as e:
        raise FormatError(wav_path, lineno, str(e)) from None
    return rate


def _check_number(value: str, path: Path, lineno: int, key: str, kind, positive: bool, data_dir) -> float:
    try:
        x = kind(value)
    except ValueError:
        raise FormatError(path, lineno, f"'{key}': {value!r} is not a{'n integer' if kind is int else ' number'}",
                          "regenerate the file") from None
    if positive and x <= 0:
        raise FormatError(path, lineno, f"'{key}': value {value} must be positive", _fix_hint(data_dir))
    return x


def validate_data_dir(path, check_audio: bool = True, no_text: bool = False, no_wav: bool = False,
                      no_feats: bool = False) -> Dict[str, object]:
    """Kaldi's validate_data_dir.sh rules (see module doc); raises FormatError at the first problem.

    `no_text` / `no_wav`: those files may be absent (and are not checked).  `no_feats`: feats.scp is not
    checked even if present (it is never required: this project validates before feature extraction).
    Returns counts: utterances, speakers, recordings, files, sample_rates (when audio was checked)."""
    data_dir = Path(path)
    d = data_dir
    if not d.is_dir():
        raise FormatError(d, None, "no such data directory", "run the data preparation stage first")
    _require(d / "utt2spk", "write utt2spk, one '<utt> <spk>' line per utterance")
    _require(d / "spk2utt", f"utils/utt2spk_to_spk2utt.py < {d}/utt2spk > {d}/spk2utt")
    utt2spk = _read_checked(d / "utt2spk", data_dir)
    if not utt2spk:
        raise FormatError(d / "utt2spk", None, "is empty", "the data preparation produced no utterances")
    for utt, (lineno, spk) in utt2spk.items():
        if len(split_fields(spk)) != 1:
            raise FormatError(d / "utt2spk", lineno, f"expected '<utt> <spk>', got '{utt} {spk}'",
                              "one speaker id (no blanks) per utterance")

    spk2utt = _read_checked(d / "spk2utt", data_dir)
    listed: Dict[str, str] = {}
    for spk, (lineno, utts) in spk2utt.items():
        for utt in split_fields(utts):
            if utt not in utt2spk:
                raise FormatError(d / "spk2utt", lineno, f"utterance '{utt}' is not in utt2spk", _fix_hint(d))
            if utt2spk[utt][1] != spk:
                raise FormatError(d / "spk2utt", lineno,
                                  f"utterance '{utt}' is under speaker '{spk}' but utt2spk says "
                                  f"'{utt2spk[utt][1]}'", _fix_hint(d))
            if utt in listed:
                raise FormatError(d / "spk2utt", lineno, f"utterance '{utt}' is listed twice", _fix_hint(d))
            listed[utt] = spk
    for utt, (lineno, spk) in utt2spk.items():
        if utt not in listed:
            raise FormatError(d / "spk2utt", None,
                              f"does not list utterance '{utt}' (utt2spk line {lineno}, speaker '{spk}')",
                              _fix_hint(d))

    files = ["utt2spk", "spk2utt"]
    if not no_text:
        _require(d / "text", "write the transcripts (or labels), or pass --no-text")
    if (d / "text").is_file() and not no_text:
        text = _read_checked(d / "text", data_dir, allow_empty_value=True)
        _same_keys(text, d / "text", utt2spk, d / "utt2spk", data_dir)
        for utt, (lineno, words) in text.items():
            if not words.strip():
                raise FormatError(d / "text", lineno, f"utterance '{utt}' has empty text",
                                  f"give it a transcript, or remove it: {_fix_hint(d)}")
        files.append("text")

    n_recordings = len(utt2spk)
    sample_rates: Set[int] = set()
    wav: Dict[str, Tuple[int, str]] = {}
    if not no_wav:
        _require(d / "wav.scp", "write wav.scp ('<recording> <path or command |>'), or pass --no-wav")
    if (d / "wav.scp").is_file() and not no_wav:
        wav = _read_checked(d / "wav.scp", data_dir)
        files.append("wav.scp")
        if (d / "segments").is_file():
            segments = _read_checked(d / "segments", data_dir)
            _same_keys(segments, d / "segments", utt2spk, d / "utt2spk", data_dir)
            used: Set[str] = set()
            for utt, (lineno, value) in segments.items():
                fields = split_fields(value)
                if len(fields) != 3:
                    raise FormatError(d / "segments", lineno, f"expected '<utt> <recording> <start> <end>', "
                                      f"got '{utt} {value}'", "regenerate the segments file")
                reco = fields[0]
                start = _check_number(fields[1], d / "segments", lineno, utt, float, False, d)
                end = _check_number(fields[2], d / "segments", lineno, utt, float, False, d)
                if start < 0 or (end >= 0 and end <= start):
                    raise FormatError(d / "segments", lineno,
                                      f"'{utt}': bad times start={fields[1]} end={fields[2]} "
                                      f"(need 0 <= start < end, or end -1 for 'to the end')",
                                      "correct the segment times")
                if reco not in wav:
                    raise FormatError(d / "segments", lineno, f"recording '{reco}' of '{utt}' is not in wav.scp",
                                      _fix_hint(d))
                used.add(reco)
            files.append("segments")
        else:
            _same_keys(wav, d / "wav.scp", utt2spk, d / "utt2spk", data_dir)
            used = set(wav)
        n_recordings = len(used)
        if check_audio:
            for reco in sorted(used, key=c_order):
                lineno, spec = wav[reco]
                rate = _check_audio_entry(spec, d / "wav.scp", lineno, d)
                if rate:
                    sample_rates.add(rate)

    # utterance-level optional files: same utterance set, values of the right type
    typed = {"utt2dur": (float, True), "utt2num_frames": (int, True)}
    for name in ("utt2lang", "utt2dur", "utt2num_frames", "utt2uniq", "feats.scp"):
        f = d / name
        if not f.is_file() or (name == "feats.scp" and no_feats):
            continue
        table = _read_checked(f, data_dir)
        _same_keys(table, f, utt2spk, d / "utt2spk", data_dir)
        if name in typed:
            kind, positive = typed[name]
            for key, (lineno, value) in table.items():
                _check_number(value, f, lineno, key, kind, positive, d)
        files.append(name)

    if (d / "reco2dur").is_file() and wav:
        reco2dur = _read_checked(d / "reco2dur", data_dir)
        _same_keys(reco2dur, d / "reco2dur", wav, d / "wav.scp", data_dir, what="recording")
        for key, (lineno, value) in reco2dur.items():
            _check_number(value, d / "reco2dur", lineno, key, float, True, d)
        files.append("reco2dur")

    for name in ("spk2gender", "cmvn.scp"):
        f = d / name
        if not f.is_file() or (name == "cmvn.scp" and no_feats):
            continue
        table = _read_checked(f, data_dir)
        kind = cmvn_kind(table, {u: spk for u, (_, spk) in utt2spk.items()}) if name == "cmvn.scp" else "speaker"
        if kind == "global":
            pass  # one set of stats for every utterance: nothing to match
        elif kind == "utterance":
            _same_keys(table, f, utt2spk, d / "utt2spk", data_dir)  # per-utterance CMVN
        else:
            _same_keys(table, f, spk2utt, d / "spk2utt", data_dir, what="speaker")
        if name == "spk2gender":
            for spk, (lineno, g) in table.items():
                if g not in ("m", "f"):
                    raise FormatError(f, lineno, f"speaker '{spk}': gender {g!r} is not 'm' or 'f'",
                                      "use m or f")
        files.append(name)

    return {"utterances": len(utt2spk), "speakers": len(spk2utt), "recordings": n_recordings,
            "files": files, "sample_rates": sorted(sample_rates)}


# ----------------------------------------------------------------------------------------------
# fix

def _read_lenient(path: Path) -> Tuple[Dict[str, str], int]:
    """First line per key wins (as `sort -u -k1,1`); blank lines skipped.  Returns (table, lines dropped)."""
    out: Dict[str, str] = {}
    dropped = 0
    with open(path, encoding="utf-8", errors="strict") as f:
        for line in f:
            fields = _ASCII_WS.split(line.strip(" \t\r\n"), maxsplit=1)
            if not fields[0]:
                continue
            key = fields[0]
            if key in out:
                dropped += 1
                continue
            out[key] = fields[1].strip(" \t") if len(fields) > 1 else ""
    return out, dropped


def _segment_ok(value: str) -> bool:
    fields = split_fields(value)
    if len(fields) != 3:
        return False
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        return False
    return start >= 0 and (end < 0 or end > start)


def fix_data_dir(path, utt_extra_files: Sequence[str] = (), spk_extra_files: Sequence[str] = (),
                 drop_missing_audio: bool = True) -> Dict[str, int]:
    """Make `path` pass `validate_data_dir`, as Kaldi's fix_data_dir.sh: sort every file, keep the first
    line of duplicated keys, keep only utterances present in every utterance-level file (with non-empty
    text and, with `drop_missing_audio`, an existing audio file for plain wav.scp paths), drop recordings
    and speakers left without utterances, regenerate spk2utt.  Originals go to `<path>/.backup/`.
    Returns the number of lines removed per file."""
    d = Path(path)
    if not d.is_dir():
        raise FormatError(d, None, "no such data directory", "check the path")
    present = [n for n in list(FILES.values()) + ["spk2utt"] + list(utt_extra_files) + list(spk_extra_files)
               if (d / n).is_file()]
    raw: Dict[str, Dict[str, str]] = {}
    lines: Dict[str, int] = {}
    for name in present:
        try:
            table, dropped = _read_lenient(d / name)
        except UnicodeDecodeError as e:
            raise FormatError(d / name, None, f"not valid UTF-8 ({e.reason} at byte {e.start})",
                              "re-encode the file as UTF-8") from None
        raw[name] = table
        lines[name] = len(table) + dropped

    if "utt2spk" in raw:
        utt2spk = {u: s for u, s in raw["utt2spk"].items() if len(split_fields(s)) == 1}
    elif "spk2utt" in raw:
        utt2spk = {}
        for spk, utts in raw["spk2utt"].items():
            for u in split_fields(utts):
                utt2spk.setdefault(u, spk)
    else:
        raise FormatError(d / "utt2spk", None, "missing (and no spk2utt to rebuild it from)",
                          "write utt2spk, one '<utt> <spk>' line per utterance")

    utts = set(utt2spk)
    if "text" in raw:
        utts &= {u for u, t in raw["text"].items() if t.strip()}
    has_segments = "segments" in raw
    wav = raw.get("wav.scp")
    if wav is not None and drop_missing_audio:
        from nasr.data.audio import is_pipe

        wav = {r: v for r, v in wav.items() if is_pipe(v) or os.path.isfile(v)}
    if has_segments:
        segments = {u: v for u, v in raw["segments"].items() if _segment_ok(v)}
        if wav is not None:
            segments = {u: v for u, v in segments.items() if split_fields(v)[0] in wav}
        utts &= set(segments)
    elif wav is not None:
        utts &= set(wav)
    for name in ("utt2lang", "utt2dur", "utt2num_frames", "utt2uniq", "feats.scp", *utt_extra_files):
        if name in raw:
            utts &= set(raw[name])
    if not utts:
        raise FormatError(d, None, "no utterance is present in every file (nothing would remain)",
                          "check that the files use the same utterance ids")

    speakers = {utt2spk[u] for u in utts}
    recordings = {split_fields(raw["segments"][u])[0] for u in utts} if has_segments else set(utts)
    cmvn = cmvn_kind(raw.get("cmvn.scp", {}), utt2spk)

    new: Dict[str, Dict[str, str]] = {}
    for name, table in raw.items():
        if name == "spk2utt":
            continue
        if name in ("wav.scp", "reco2dur"):
            keep = recordings
        elif name == "cmvn.scp" and cmvn == "global":
            keep = set(table)  # global stats belong to no utterance or speaker: kept as they are
        elif name in ("spk2gender", *spk_extra_files) or (name == "cmvn.scp" and cmvn == "speaker"):
            keep = speakers
        else:
            keep = utts
        new[name] = {k: v for k, v in table.items() if k in keep}
    new["utt2spk"] = {u: utt2spk[u] for u in utts}
    spk2utt = {s: " ".join(us) for s, us in utt2spk_to_spk2utt(new["utt2spk"]).items()}

    backup = d / ".backup"
    backup.mkdir(exist_ok=True)
    for name in present:
        shutil.copy2(d / name, backup / name)
    removed: Dict[str, int] = {}
    for name, table in new.items():
        write_table(d / name, table)
        removed[name] = lines[name] - len(table)
    write_table(d / "spk2utt", spk2utt)
    if "spk2utt" in lines:
        removed["spk2utt"] = max(0, lines["spk2utt"] - len(spk2utt))
    for name in sorted(removed):
        if removed[name]:
            log.info("fix_data_dir: %s/%s: removed %d of %d lines", d, name, removed[name], lines[name])
    log.info("fix_data_dir: %s: %d utterances, %d speakers kept (originals in %s)", d, len(utts),
             len(speakers), backup)
    return removed


# ----------------------------------------------------------------------------------------------
# subset / split / combine / perturb

def _read_id_list(path) -> List[str]:
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = split_fields(line)
            if fields:
                ids.append(fields[0])
    return ids


def subset_data_dir(src, dst, first: Optional[int] = None, last: Optional[int] = None, utt_list=None,
                    spk_list=None, random_n: Optional[int] = None, seed: int = 777) -> DataDir:
    """Exactly one selector: the `first`/`last` N utterances (C order), the utterances of `utt_list` or
    the speakers of `spk_list` (files whose first column is the id), or `random_n` utterances drawn with
    `seed`.  Recordings and speakers follow the kept utterances."""
    chosen = [x for x in (first, last, utt_list, spk_list, random_n) if x is not None]
    if len(chosen) != 1:
        raise ValueError("give exactly one of first, last, utt_list, spk_list, random_n")
    d = load_data_dir(src)
    utts = d.utts
    for n in (first, last, random_n):
        if n is not None and not 0 < n <= len(utts):
            raise ValueError(f"cannot take {n} utterances from {src}: it has {len(utts)}")
    if first is not None:
        keep = utts[:first]
    elif last is not None:
        keep = utts[-last:]
    elif random_n is not None:
        keep = random.Random(seed).sample(utts, random_n)
    elif utt_list is not None:
        wanted = _read_id_list(utt_list)
        keep = [u for u in wanted if u in d.utt2spk]
        if len(keep) < len(wanted):
            log.warning("subset_data_dir: %d of %d ids in %s are not in %s", len(wanted) - len(keep),
                        len(wanted), utt_list, src)
    else:
        speakers = set(_read_id_list(spk_list))
        keep = [u for u in utts if d.utt2spk[u] in speakers]
        missing = speakers - set(d.utt2spk.values())
        if missing:
            log.warning("subset_data_dir: %d speakers of %s are not in %s", len(missing), spk_list, src)
    if not keep:
        raise ValueError(f"subset of {src} would be empty")
    out = d.filter_utts(keep)
    write_data_dir(out, dst)
    log.info("subset_data_dir: %s -> %s: %d of %d utterances", src, dst, len(out.utt2spk), len(utts))
    return out


def _balanced_boundaries(sizes: Sequence[int], n: int) -> List[int]:
    """Cut a sequence of groups into n contiguous non-empty runs with near-equal total size;
    returns the n+1 cut indices."""
    total = sum(sizes)
    cum = [0]
    for s in sizes:
        cum.append(cum[-1] + s)
    cuts = [0]
    for k in range(1, n):
        lo, hi = cuts[-1] + 1, len(sizes) - (n - k)  # leave at least one group per remaining part
        target = total * k / n
        best = min(range(lo, hi + 1), key=lambda i: (abs(cum[i] - target), i))
        cuts.append(best)
    cuts.append(len(sizes))
    return cuts


def _newest_mtime(directory: Path, names: Iterable[str]) -> float:
    times = [(directory / n).stat().st_mtime for n in names if (directory / n).is_file()]
    return max(times) if times else 0.0


def split_data(src, n: int, by_speaker: bool = False) -> List[Path]:
    """Split into n parts at `<src>/split<n>utt/<k>` (by utterance) or `<src>/split<n>/<k>` (by speaker:
    no speaker is in two parts).  Parts newer than every source file are reused, as Kaldi does."""
    src = Path(src)
    if n < 1:
        raise ValueError(f"number of splits must be >= 1, got {n}")
    root = src / (f"split{n}" if by_speaker else f"split{n}utt")
    parts = [root / str(k) for k in range(1, n + 1)]
    names = list(FILES.values()) + ["spk2utt"]
    src_time = _newest_mtime(src, names)
    if all((p / "utt2spk").is_file() for p in parts):
        part_times = [(p / nm).stat().st_mtime for p in parts for nm in names if (p / nm).is_file()]
        present_same = all({nm for nm in names if (p / nm).is_file()} == {nm for nm in names if (src / nm).is_file()}
                           for p in parts)
        if present_same and min(part_times) >= src_time:
            return parts
    d = load_data_dir(src)
    utts = d.utts
    if by_speaker:
        spk2utt = d.spk2utt
        if n > len(spk2utt):
            raise ValueError(f"cannot split {src} by speaker into {n} parts: it has {len(spk2utt)} speakers "
                             f"(use fewer jobs, or split per utterance)")
        speakers = list(spk2utt)
        cuts = _balanced_boundaries([len(spk2utt[s]) for s in speakers], n)
        groups = [[u for s in speakers[cuts[k]:cuts[k + 1]] for u in spk2utt[s]] for k in range(n)]
    else:
        if n > len(utts):
            raise ValueError(f"cannot split {src} into {n} parts: it has {len(utts)} utterances")
        # Kaldi's split_scp.pl: contiguous chunks, the first (len % n) one utterance longer
        base, extra = divmod(len(utts), n)
        cuts = [k * base + min(k, extra) for k in range(n + 1)]
        groups = [utts[cuts[k]:cuts[k + 1]] for k in range(n)]
    for part, group in zip(parts, groups):
        write_data_dir(d.filter_utts(group), part)
    log.info("split_data: %s -> %s/{1..%d} (%s)", src, root, n, "by speaker" if by_speaker else "by utterance")
    return parts


def combine_data(dst, srcs: Sequence) -> DataDir:
    """Union of data dirs.  An utterance id in two sources is an error; a recording or speaker-level id in
    two sources must carry the same value.  Optional files present in only some sources are dropped,
    except segments (whole-recording segments are made for the others) and utt2uniq (identity)."""
    if not srcs:
        raise ValueError("combine_data needs at least one source directory")
    dirs = [load_data_dir(s) for s in srcs]
    any_segments = any(x.segments is not None for x in dirs)
    owner: Dict[str, int] = {}
    for i, x in enumerate(dirs):
        for utt in x.utt2spk:
            if utt in owner:
                j = owner[utt]
                lineno = next(ln for ln, k, _ in iter_table(Path(srcs[i]) / "utt2spk") if k == utt)
                raise FormatError(Path(srcs[i]) / "utt2spk", lineno,
                                  f"utterance '{utt}' is also in {srcs[j]}",
                                  "give each source unique utterance ids (e.g. prefix them with the set name)")
            owner[utt] = i
    merged: Dict[str, Optional[Dict[str, str]]] = {}
    for name, fname in FILES.items():
        tables = [getattr(x, name) for x in dirs]
        if name == "segments" and any_segments:
            tables = [t if t is not None else {u: f"{u} 0 -1" for u in x.utt2spk} for t, x in zip(tables, dirs)]
        if name == "utt2uniq" and any(t is not None for t in tables):
            tables = [t if t is not None else {u: u for u in x.utt2spk} for t, x in zip(tables, dirs)]
        if any(t is None for t in tables):
            if any(t is not None for t in tables):
                log.warning("combine_data: %s is not in every source: not combined", fname)
            merged[name] = None
            continue
        out: Dict[str, str] = {}
        for src, t in zip(srcs, tables):
            for k, v in t.items():
                if k in out and out[k] != v:
                    raise FormatError(Path(src) / fname, None,
                                      f"'{k}' is also in another source with a different value "
                                      f"({out[k]!r} vs {v!r})", "give the sources distinct ids")
                out[k] = v
        merged[name] = out
    combined = DataDir(**merged)
    write_data_dir(combined, dst)
    log.info("combine_data: %s -> %s: %d utterances", " ".join(map(str, srcs)), dst, len(combined.utt2spk))
    return combined


def speed_prefix(factor: float) -> str:
    """Kaldi's id prefix: sp0.9-, sp1.1-, sp1.0-."""
    s = f"{factor:g}"
    if "." not in s and "e" not in s:
        s += ".0"
    return f"sp{s}-"


def perturb_speed(src, dst, factor: float) -> DataDir:
    """Kaldi's perturb_data_dir_speed.sh: ids `sp<f>-<utt>`, speakers `sp<f>-<spk>`, recordings prefixed,
    audio played `factor` times faster through a wav.scp pipe (nasr.data.audio.speed_pipe), segment times
    and durations divided by `factor`.  Features (feats.scp, utt2num_frames, cmvn.scp) are dropped: they
    must be recomputed from the new audio.  utt2uniq maps each new id to its original."""
    from nasr.data.audio import speed_pipe

    if not factor > 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    d = load_data_dir(src)
    p = speed_prefix(factor)

    def fmt(x: float) -> str:
        return f"{x:.6g}"

    def rekey(table: Optional[Dict[str, str]], value=lambda v: v) -> Optional[Dict[str, str]]:
        return None if table is None else {p + k: value(v) for k, v in table.items()}

    def scale(v: str) -> str:
        return fmt(float(v) / factor)

    def segment(v: str) -> str:
        reco, start, end = split_fields(v)
        end_f = float(end)
        return f"{p}{reco} {fmt(float(start) / factor)} {end if end_f < 0 else fmt(end_f / factor)}"

    dropped = [FILES[f] for f in FEATURE_FIELDS if getattr(d, f) is not None]
    if dropped:
        log.info("perturb_speed: not copying %s (recompute features for %s)", ", ".join(dropped), dst)
    out = DataDir(
        utt2spk=rekey(d.utt2spk, lambda s: p + s),
        text=rekey(d.text),
        wav_scp=rekey(d.wav_scp, (lambda v: v) if factor == 1.0 else (lambda v: speed_pipe(factor, v))),
        segments=rekey(d.segments, segment),
        utt2lang=rekey(d.utt2lang),
        utt2dur=rekey(d.utt2dur, scale),
        utt2uniq={p + u: (d.utt2uniq or {}).get(u, u) for u in d.utt2spk},
        reco2dur=rekey(d.reco2dur, scale),
        spk2gender=rekey(d.spk2gender),
    )
    write_data_dir(out, dst)
    log.info("perturb_speed: %s -> %s at speed %g: %d utterances", src, dst, factor, len(out.utt2spk))
    return out


def replace_dirs(staging: Path, out_dir: Path, names: Iterable[str]) -> None:
    """Move finished data dirs from `staging` into `out_dir`, replacing older ones.  An older dir
    that already holds the staged files byte for byte, and no other file but the features computed
    from them, is kept as it is: a rerun on the same corpus does not throw its features away."""
    for name in names:
        target = out_dir / name
        staged = {f.name: f.read_text(encoding="utf-8") for f in (staging / name).iterdir() if f.is_file()}
        if holds_files(target, staged, lambda fname: fname in FEATURE_FILES):
            log.info("%s is unchanged: kept as it is (with its features)", target)
            continue
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=out_dir))
            os.replace(target, old / name)
            shutil.rmtree(old)
        os.replace(staging / name, target)


__all__ = [
    "DataDir", "FILES", "c_order", "load_data_dir", "write_data_dir", "validate_data_dir", "fix_data_dir",
    "subset_data_dir", "split_data", "combine_data", "perturb_speed", "speed_prefix",
    "utt2spk_to_spk2utt", "spk2utt_to_utt2spk", "stream_utt2spk_to_spk2utt", "stream_spk2utt_to_utt2spk",
    "replace_dirs",
]
