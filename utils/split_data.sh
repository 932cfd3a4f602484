#!/usr/bin/env bash
# Usage: utils/split_data.sh [--per-utt] <data-dir> <num-to-split>
# e.g.:  utils/split_data.sh data/train 8     # -> data/train/split8/{1..8}, no speaker in two parts
# With --per-utt the parts are data/train/split8utt/{1..8}, split by utterance.  Parts newer than the
# source files are reused, so every job of a stage may call this.
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }
echo "$0 $*" >&2
# Importable without path.sh too: the package root is the parent of the real utils/ directory.
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export PYTHONPATH="$nasr_root${PYTHONPATH:+:$PYTHONPATH}"

per_utt=false
while [ $# -gt 0 ]; do
  case "$1" in
    --per-utt) per_utt=true; shift ;;
    --help|-h) usage; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; usage; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -ne 2 ]; then usage; exit 1; fi

opts=()
if $per_utt; then opts+=(--per-utt); fi
python -m nasr.bin.data_dir split ${opts[@]+"${opts[@]}"} "$1" "$2"
