#!/usr/bin/env bash
# Usage: local/aishell/untar_speakers.sh <data_aishell-dir>
#  e.g.: local/aishell/untar_speakers.sh /data/aishell/data_aishell
# data_aishell.tgz holds one archive per speaker (wav/S0002.tar.gz -> wav/train/S0002/*.wav); this
# unpacks every wav/*.tar.gz still there, each removed once it is extracted (as Kaldi's
# download_and_untar.sh does), so a corpus unpacked by hand and one fetched by download.sh end up
# alike and a rerun finds nothing left to do.  An archive that fails to extract is kept.
set -euo pipefail

if [ $# -ne 1 ]; then
  sed -n '2,3p' "$0" | sed 's/^# //' >&2
  exit 1
fi
dir=$1
if [ ! -d "$dir/wav" ]; then
  echo "$0: $dir/wav does not exist (expected the data_aishell folder of AISHELL-1)" >&2
  exit 1
fi
n=0
for tgz in "$dir"/wav/*.tar.gz; do
  [ -e "$tgz" ] || continue
  if ! tar -xzf "$tgz" -C "$dir/wav"; then
    echo "$0: could not extract $tgz (kept; fix: download it again, or remove it to skip the speaker)" >&2
    exit 1
  fi
  rm -f "$tgz"
  n=$((n + 1))
done
echo "$0: unpacked $n per-speaker archive(s) in $dir/wav"
