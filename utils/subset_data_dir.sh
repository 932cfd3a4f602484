#!/usr/bin/env bash
# Usage: utils/subset_data_dir.sh [--seed S] <src-data> <num-utt> <dest-data>     (random utterances)
# e.g.:  utils/subset_data_dir.sh --first 1000 data/train data/train_1k
#   or:  utils/subset_data_dir.sh --first|--last <num-utt> <src-data> <dest-data>
#   or:  utils/subset_data_dir.sh --utt-list <utt-list> <src-data> <dest-data>
#   or:  utils/subset_data_dir.sh --spk-list <spk-list> <src-data> <dest-data>
# Kaldi's flag form "--first <src-data> <num-utt> <dest-data>" works too.  First/last follow C order
# of utterance ids; speakers and recordings follow the kept utterances.
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }
echo "$0 $*" >&2
# Importable without path.sh too: the package root is the parent of the real utils/ directory.
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export PYTHONPATH="$nasr_root${PYTHONPATH:+:$PYTHONPATH}"

selector=
value=
seed=777
while [ $# -gt 0 ]; do
  case "$1" in
    --first|--last)
      selector=$1
      if [[ "${2:-}" =~ ^[0-9]+$ ]]; then value=$2; shift 2; else shift; fi ;;
    --utt-list|--spk-list)
      if [ $# -lt 2 ]; then usage; exit 1; fi
      selector=$1; value=$2; shift 2 ;;
    --seed)
      if [ $# -lt 2 ]; then usage; exit 1; fi
      seed=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; usage; exit 1 ;;
    *) break ;;
  esac
done

if [ -z "$selector" ]; then
  if [ $# -ne 3 ]; then usage; exit 1; fi
  python -m nasr.bin.data_dir subset --random "$2" --seed "$seed" "$1" "$3"
elif [ -z "$value" ]; then
  # Kaldi's flag form: --first <src> <N> <dest>
  if [ $# -ne 3 ]; then usage; exit 1; fi
  python -m nasr.bin.data_dir subset "$selector" "$2" "$1" "$3"
else
  if [ $# -ne 2 ]; then usage; exit 1; fi
  python -m nasr.bin.data_dir subset "$selector" "$value" "$1" "$2"
fi
