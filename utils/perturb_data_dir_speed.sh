#!/usr/bin/env bash
# Usage: utils/perturb_data_dir_speed.sh <factor> <src-data> <dest-data>
# e.g.:  utils/perturb_data_dir_speed.sh 0.9 data/train data/train_sp0.9
# Ids become sp<factor>-<utt> (speakers and recordings too); wav.scp plays the audio <factor> times
# faster through a pipe; segments, utt2dur and reco2dur are divided by <factor>; utt2uniq maps back to
# the original ids.  Features are not copied: compute them for <dest-data>.
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }
echo "$0 $*" >&2
# Importable without path.sh too: the package root is the parent of the real utils/ directory.
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export PYTHONPATH="$nasr_root${PYTHONPATH:+:$PYTHONPATH}"

case "${1:-}" in --help|-h) usage; exit 0 ;; --*) echo "$0: unknown option $1" >&2; usage; exit 1 ;; esac
if [ $# -ne 3 ]; then usage; exit 1; fi
python -m nasr.bin.data_dir perturb-speed "$1" "$2" "$3"
