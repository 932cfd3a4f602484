#!/usr/bin/env bash
# Usage: utils/fix_data_dir.sh [--utt-extra-files "f1 f2"] [--spk-extra-files "f3"] <data-dir>
# e.g.:  utils/fix_data_dir.sh data/train
# Kaldi's fix_data_dir.sh: sorts every file, keeps the first line of a duplicated key, keeps only the
# utterances present in every file (non-empty text, existing audio file), drops speakers and recordings
# left without utterances, regenerates spk2utt.  The originals are kept in <data-dir>/.backup/.
#   --utt-extra-files "..."      more utterance-keyed files to filter
#   --spk-extra-files "..."      more speaker-keyed files to filter
#   --keep-missing-audio false   true: keep utterances whose wav.scp file does not exist
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }
echo "$0 $*" >&2
# Importable without path.sh too: the package root is the parent of the real utils/ directory.
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export PYTHONPATH="$nasr_root${PYTHONPATH:+:$PYTHONPATH}"

utt_extra_files=
spk_extra_files=
keep_missing_audio=false
help_message=$(usage 2>&1)
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 1 ]; then usage; exit 1; fi

opts=()
if $keep_missing_audio; then opts+=(--keep-missing-audio); fi
python -m nasr.bin.data_dir fix --utt-extra-files "$utt_extra_files" --spk-extra-files "$spk_extra_files" \
  ${opts[@]+"${opts[@]}"} "$1"
