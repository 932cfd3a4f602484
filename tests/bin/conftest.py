"""A tiny featurised KWS corpus (train + valid, 3 classes) and a NAS1 genotype, made once per
session, for tests that run nasr.bin.train on it."""
import json

import numpy as np
import pytest

from nasr.bin import compute_feats
from nasr.data.audio import write_wav
from nasr.utils.io import write_table

SR = 16000
LABELS = ["yes", "no", "_silence_"]
GENOTYPE = {"space": "nas1",
            "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["max_pool_3x3", 0], ["conv_3x3_dil2", 2]],
            "normal_concat": [2, 3],
            "reduce": [["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["skip_connect", 2], ["sep_conv_3x3", 0]],
            "reduce_concat": [2, 3]}


def _make_set(root, name, n_per_label, rng):
    d = root / "data" / name
    audio = root / "audio" / name
    audio.mkdir(parents=True)
    wav_scp, text, utt2spk = {}, {}, {}
    for k, label in enumerate(LABELS):
        for i in range(n_per_label):
            utt = f"spk{i}-{label}-{name}{i}"
            t = np.arange(SR // 2) / SR
            x = 0.3 * np.sin(2 * np.pi * (300 + 400 * k) * t) if label != "_silence_" else 0 * t
            write_wav(audio / f"{utt}.wav", (x + 0.02 * rng.standard_normal(t.size)).astype(np.float32), SR)
            wav_scp[utt], text[utt], utt2spk[utt] = str(audio / f"{utt}.wav"), label, f"spk{i}"
    spk2utt = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    for fname, table in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk),
                         ("spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})):
        write_table(d / fname, table)
    (d / "labels.txt").write_text("".join(f"{lab}\n" for lab in LABELS))
    noise = audio / "noise.wav"
    write_wav(noise, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    write_table(d / "noise.scp", {"noise": str(noise)})
    assert compute_feats.main(["--data-dir", str(d), "--preset", "kws_mfcc", "--no-progress"]) == 0
    return d


@pytest.fixture(scope="session")
def kws_corpus(tmp_path_factory):
    """(train dir, valid dir, genotype path): 0.5 s clips, 4 per class for training, 2 for validation."""
    root = tmp_path_factory.mktemp("kws_corpus")
    rng = np.random.default_rng(0)
    train, valid = _make_set(root, "train", 4, rng), _make_set(root, "valid", 2, rng)
    genotype = root / "genotype.json"
    genotype.write_text(json.dumps(GENOTYPE))
    return train, valid, genotype
