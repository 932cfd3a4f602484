#!/usr/bin/env bash
# Download and unpack AISHELL-1 (openslr resource 33): data_aishell.tgz and resource_aishell.tgz.
#
# As Kaldi's egs/aishell/s5/local/download_and_untar.sh: each archive unpacks into <dest>/<part>/,
# and the per-speaker wav/*.tar.gz inside data_aishell are unpacked too (each is removed once it
# has been extracted, halving the disk use).  Checksums are the MD5 sums openslr publishes
# (resources/33/checksum.md5; the same values PaddleSpeech's aishell.py keeps).  A part gets its
# `.complete` marker only when every step succeeded, so an interrupted run is redone (the download
# resumes from the partial file) and a finished part is skipped.
set -euo pipefail

echo "$0 $*"

# Options (set before parsing; --foo-bar sets foo_bar).
url_base=https://www.openslr.org/resources/33   # mirrors: https://openslr.elda.org/resources/33, ...
parts="data_aishell resource_aishell"
data_md5=2f494334227864a8a8fec932999db9d8       # data_aishell.tgz, 15582913665 bytes
resource_md5=957d480a0fcac85fc18e550756f624e5   # resource_aishell.tgz, 1246920 bytes
remove_archive=false

usage="Usage: $0 [options] <dest-dir>
 e.g.: $0 /data/aishell
Options:
  --url-base <url>          where the archives are (any URL curl/wget accept, file:// too)
                            (default: $url_base)
  --parts <list>            which archives (default: \"$parts\")
  --data-md5 <hex>          expected MD5 of data_aishell.tgz (default: the published one)
  --resource-md5 <hex>      expected MD5 of resource_aishell.tgz (default: the published one)
  --remove-archive <bool>   delete each .tgz after unpacking (default: $remove_archive)"

# readlink -f: also right when called through a recipe's local/ symlink
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
. "$nasr_root/utils/parse_options.sh"

if [ $# -ne 1 ]; then
  echo "$usage" >&2
  exit 1
fi
dest=$1
mkdir -p "$dest"

for part in $parts; do
  case "$part" in
    data_aishell) md5=$data_md5 ;;
    resource_aishell) md5=$resource_md5 ;;
    *) echo "$0: unknown part '$part' (expected data_aishell and/or resource_aishell)" >&2; exit 1 ;;
  esac
  if [ -f "$dest/$part/.complete" ]; then
    echo "$0: $dest/$part/.complete exists, $part is already there; skipping."
    continue
  fi
  archive=$dest/$part.tgz
  "$nasr_root/utils/download_and_verify.sh" "$url_base/$part.tgz" "$archive" md5 "$md5" \
    "--${part%_aishell}-md5"

  echo "$0: unpacking $archive into $dest"
  tar -xzf "$archive" -C "$dest"
  if [ ! -d "$dest/$part" ]; then
    echo "$0: $archive did not unpack into $dest/$part; is it the right archive?" >&2
    exit 1
  fi
  if [ "$part" = data_aishell ]; then
    "$nasr_root/local/aishell/untar_speakers.sh" "$dest/$part"
  fi
  if [ "$remove_archive" = true ]; then
    rm -f "$archive"
  fi
  touch "$dest/$part/.complete"
  echo "$0: done: $part is in $dest/$part"
done
