import pytest
from torch.utils.data import ConcatDataset, Dataset, Subset

from nasr.train.kws import dataset_speakers, speaker_holdout
from nasr.utils.io import FormatError


class Dir(Dataset):
    """The two attributes speaker_holdout reads from a KwsDataset."""

    def __init__(self, root, name, speakers, per_spk=3):
        self.data_dir = root / name
        self.data_dir.mkdir()
        self.utts = [f"{s}-u{k}" for s in speakers for k in range(per_spk)]
        (self.data_dir / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in self.utts))

    def __len__(self):
        return len(self.utts)


def test_whole_speakers_held_out_same_draw_every_time(tmp_path):
    ds = ConcatDataset([Dir(tmp_path, "train", [f"a{i}" for i in range(10)]),
                        Dir(tmp_path, "valid", [f"b{i}" for i in range(10)])])
    kept, held = speaker_holdout(ds, 0.1)
    assert speaker_holdout(ds, 0.1) == (kept, held)
    assert sorted(kept + held) == list(range(60))
    spk = dataset_speakers(ds)
    held_spk = {spk[i] for i in held}
    assert len(held_spk) == 2 and len(held) == 6
    assert not held_spk & {spk[i] for i in kept}
    sub = Subset(ds, kept)
    assert dataset_speakers(sub) == [spk[i] for i in kept]


def test_bad_fraction_and_missing_speaker_are_errors(tmp_path):
    d = Dir(tmp_path, "train", ["a", "b"])
    with pytest.raises(ValueError, match="would hold out all 2 speakers"):
        speaker_holdout(d, 0.9)
    d.utts.append("c-u0")
    with pytest.raises(FormatError, match="utt2spk.*no speaker for utterance 'c-u0'"):
        speaker_holdout(d, 0.1)
