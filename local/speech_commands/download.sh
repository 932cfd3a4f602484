#!/usr/bin/env bash
# Download and unpack Google Speech Commands (v0.01 by default, the version the DARTS-KWS paper uses).
#
# The archive has no top-level folder: it unpacks the word folders, _background_noise_/,
# validation_list.txt and testing_list.txt straight into <dest-dir>.  A `.complete` marker is
# written only after the checksum matched and tar finished, so an interrupted run is redone
# (the download resumes from the partial file) and a finished one is skipped.
set -euo pipefail

echo "$0 $*"

# Options (set before parsing; --foo-bar sets foo_bar).
url=                # default: http://download.tensorflow.org/data/speech_commands_<version>.tar.gz
sha256=             # default: the published checksum of that version (below)
remove_archive=false

usage="Usage: $0 [options] <dest-dir> [v0.01|v0.02]
 e.g.: $0 /data/speech_commands_v0.01 v0.01
Options:
  --url <url>               where to fetch the archive from (any URL curl/wget accept, file:// too)
  --sha256 <hex>            expected SHA-256 of the archive (default: the published one)
  --remove-archive <bool>   delete the .tar.gz after unpacking (default: $remove_archive)"

# readlink -f: also right when called through a recipe's local/ symlink
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
. "$nasr_root/utils/parse_options.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "$usage" >&2
  exit 1
fi
dest=$1
version=${2:-v0.01}

# Published SHA-256 sums.  v0.02: TensorFlow Datasets' url_checksums/speech_commands.txt
# (2428923189 bytes); v0.01: torchaudio's SPEECHCOMMANDS checksum table (1488293908 bytes).
case "$version" in
  v0.01) default_sha256=743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d ;;
  v0.02) default_sha256=af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58 ;;
  *) echo "$0: unknown version '$version' (expected v0.01 or v0.02)" >&2; exit 1 ;;
esac
archive_name=speech_commands_${version}.tar.gz
url=${url:-http://download.tensorflow.org/data/$archive_name}
sha256=$(echo "${sha256:-$default_sha256}" | tr 'A-F' 'a-f')  # sha256sum prints lower case

if [ -f "$dest/.complete" ]; then
  echo "$0: $dest/.complete exists, Speech Commands $version is already there; skipping."
  exit 0
fi

mkdir -p "$dest"
archive=$dest/$archive_name

"$nasr_root/utils/download_and_verify.sh" "$url" "$archive" sha256 "$sha256" --sha256

echo "$0: unpacking $archive into $dest"
tar -xzf "$archive" -C "$dest"
if [ "$remove_archive" = true ]; then
  rm -f "$archive"
fi
touch "$dest/.complete"
echo "$0: done: Speech Commands $version is in $dest"
