#!/usr/bin/env bash
# Usage: utils/validate_data_dir.sh [--no-feats] [--no-text] [--no-wav] [--no-audio-check] <data-dir>
# e.g.:  utils/validate_data_dir.sh --no-feats data/train
# Kaldi's checks: every file sorted (LC_ALL=C) with unique keys; utt2spk and spk2utt agree; text,
# wav.scp (or segments + wav.scp) and the optional utt2*/feats.scp files cover the same utterances;
# no empty transcript; every wav.scp entry readable (skip that with --no-audio-check).
#   --no-feats        do not check feats.scp/cmvn.scp (never required here: features come later)
#   --no-text         text may be absent
#   --no-wav          wav.scp may be absent
#   --no-audio-check  do not open the audio
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }
echo "$0 $*" >&2
# Importable without path.sh too: the package root is the parent of the real utils/ directory.
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export PYTHONPATH="$nasr_root${PYTHONPATH:+:$PYTHONPATH}"

opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-feats|--no-text|--no-wav|--no-audio-check) opts+=("$1"); shift ;;
    --non-print|--no-spk-sort) shift ;;  # Kaldi flags whose checks do not apply here; accepted for scripts that pass them
    --help|-h) usage; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; usage; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -ne 1 ]; then usage; exit 1; fi

python -m nasr.bin.data_dir validate ${opts[@]+"${opts[@]}"} "$1"
