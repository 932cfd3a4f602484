#!/usr/bin/env bash
# Usage: utils/combine_data.sh <dest-data> <src-data1> [<src-data2> ...]
# e.g.:  utils/combine_data.sh data/train_sp data/train data/train_sp0.9 data/train_sp1.1
# An utterance id in two sources is an error.  Optional files missing from some source are dropped
# (except segments and utt2uniq, which are completed).
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }
echo "$0 $*" >&2
# Importable without path.sh too: the package root is the parent of the real utils/ directory.
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export PYTHONPATH="$nasr_root${PYTHONPATH:+:$PYTHONPATH}"

case "${1:-}" in --help|-h) usage; exit 0 ;; -*) echo "$0: unknown option $1" >&2; usage; exit 1 ;; esac
if [ $# -lt 2 ]; then usage; exit 1; fi
python -m nasr.bin.data_dir combine "$@"
