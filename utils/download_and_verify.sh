#!/usr/bin/env bash
# Usage: utils/download_and_verify.sh <url> <archive> <md5|sha256> <expected-checksum> [<override-hint>]
#  e.g.: utils/download_and_verify.sh http://host/a.tgz /data/a.tgz sha256 743935...d811d "--sha256"
# Puts <url> at <archive> with the expected checksum. An archive already there with the right
# checksum is kept; otherwise the download goes to <archive>.part (resumed if partial), is checked,
# and only then renamed, so a half-fetched or corrupt file is never taken for the archive.
set -euo pipefail

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
  sed -n '2,3p' "$0" | sed 's/^# //' >&2
  exit 1
fi
url=$1; archive=$2; algo=$3; expected=$(echo "$4" | tr 'A-F' 'a-f'); hint=${5:-}

checksum_of() {
  case "$algo" in
    sha256) if command -v sha256sum >/dev/null; then sha256sum "$1" | awk '{print $1}'
            else shasum -a 256 "$1" | awk '{print $1}'; fi ;;
    md5)    if command -v md5sum >/dev/null; then md5sum "$1" | awk '{print $1}'
            else md5 -q "$1"; fi ;;
    *) echo "$0: unknown checksum '$algo' (expected md5 or sha256)" >&2; exit 1 ;;
  esac
}

fetch() {  # fetch <url> <file>: resumes a partial <file>
  if command -v curl >/dev/null; then
    # -C - resumes; curl exits 33 when a server cannot resume, then start over.
    curl -fL --retry 3 -C - -o "$2" "$1" || { rm -f "$2"; curl -fL --retry 3 -o "$2" "$1"; }
  elif command -v wget >/dev/null; then
    wget -c -O "$2" "$1"
  else
    echo "$0: neither curl nor wget is installed; install one, or download $1 to $archive by hand" >&2
    return 1
  fi
}

if [ -f "$archive" ] && [ "$(checksum_of "$archive")" = "$expected" ]; then
  echo "$0: $archive is already downloaded and its checksum matches."
  exit 0
fi
rm -f "$archive"
mkdir -p "$(dirname "$archive")"
echo "$0: downloading $url"
fetch "$url" "$archive.part"
actual=$(checksum_of "$archive.part")
if [ "$actual" != "$expected" ]; then
  echo "$0: checksum mismatch for $url: got $algo $actual, expected $expected." >&2
  echo "$0: the download is corrupt or the wrong file; removed $archive.part, run again to refetch" \
       "${hint:+(or pass $hint if you knowingly use another copy)}." >&2
  rm -f "$archive.part"
  exit 1
fi
mv "$archive.part" "$archive"
