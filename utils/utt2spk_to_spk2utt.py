#!/usr/bin/env python3
"""Usage: utils/utt2spk_to_spk2utt.py [utt2spk ...] > spk2utt     (reads stdin when no file is given)
e.g.:  utils/utt2spk_to_spk2utt.py < data/train/utt2spk > data/train/spk2utt

Kaldi's utt2spk_to_spk2utt.pl: ids in any script, read and written as UTF-8 whatever the locale;
fields are split on ASCII blanks only.
"""
import sys
from pathlib import Path

# Runnable without path.sh: the package root is the parent of the real utils/ directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nasr.bin.data_dir import main  # noqa: E402

if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(0)
    sys.exit(main(["utt2spk-to-spk2utt", *sys.argv[1:]]))
