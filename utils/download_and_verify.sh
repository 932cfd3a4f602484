#!/usr/bin/env bash
# Usage: utils/download_and_verify.sh <url> <archive> <md5|sha256> <expected-checksum|""> [<override-hint>]
#  e.g.: utils/download_and_verify.sh http://host/a.tgz /data/a.tgz sha256 743935...d811d "--sha256"
# Puts <url> at <archive> with the expected checksum. An archive already there with the right
# checksum is kept; otherwise the download goes to <archive>.part (resumed if partial), is checked,
# and only then renamed, so a half-fetched or corrupt file is never taken for the archive.
# Nothing fetched is ever deleted: an interrupted download stays in <archive>.part for the next run
# to resume, and a file whose checksum does not match is refused and kept where it is, with what
# to do next (remove it to fetch again, or pass <override-hint> <its checksum> to use it).
# An empty expected checksum fetches without verifying (the checksum is printed).
set -euo pipefail

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
  sed -n '2,3p' "$0" | sed 's/^# //' >&2
  exit 1
fi
url=$1; archive=$2; algo=$3; expected=$(echo "$4" | tr 'A-F' 'a-f'); hint=${5:-}

case "$algo" in md5|sha256) ;; *) echo "$0: unknown checksum '$algo' (expected md5 or sha256)" >&2; exit 1 ;; esac
checksum_of() {
  case "$algo" in
    sha256) if command -v sha256sum >/dev/null; then sha256sum "$1" | awk '{print $1}'
            else shasum -a 256 "$1" | awk '{print $1}'; fi ;;
    md5)    if command -v md5sum >/dev/null; then md5sum "$1" | awk '{print $1}'
            else md5 -q "$1"; fi ;;
  esac
}

refuse() {  # refuse <file> <its checksum> <what it is>: a mismatch, said once, the file kept
  echo "$0: checksum mismatch for $3: $1 has $algo $2, expected $expected." >&2
  echo "$0: kept $1 (nothing is deleted). If it is a corrupt or wrong download, remove it and run" \
       "again to fetch $url anew${hint:+; if you knowingly use this copy, pass $hint $2}." >&2
  exit 1
}

fetch() {  # fetch <url> <file>: resumes a partial <file>; a failed fetch keeps what it got
  local rc=0
  if command -v curl >/dev/null; then
    curl -fL --retry 3 -C - -o "$2" "$1" || rc=$?
    if [ $rc -eq 33 ]; then  # the server cannot resume: the partial file is of no use to it
      echo "$0: the server cannot resume $1; fetching it from the start" >&2
      rc=0; curl -fL --retry 3 -o "$2" "$1" || rc=$?
    fi
  elif command -v wget >/dev/null; then
    wget -c -O "$2" "$1" || rc=$?
  else
    echo "$0: neither curl nor wget is installed; install one, or download $1 to $archive by hand" >&2
    return 1
  fi
  if [ $rc -ne 0 ]; then
    echo "$0: fetching $1 failed (exit $rc); the $(stat -c %s "$2" 2>/dev/null || echo 0) bytes" \
         "fetched are kept in $2: run again to resume" >&2
    return 1
  fi
}

if [ -f "$archive" ]; then
  [ -z "$expected" ] && { echo "$0: $archive is already there (not verified: no checksum given)."; exit 0; }
  actual=$(checksum_of "$archive")
  [ "$actual" = "$expected" ] || refuse "$archive" "$actual" "the archive already there"
  echo "$0: $archive is already downloaded and its checksum matches."
  exit 0
fi
mkdir -p "$(dirname "$archive")"
if [ -s "$archive.part" ] && [ -n "$expected" ] && [ "$(checksum_of "$archive.part")" = "$expected" ]; then
  echo "$0: $archive.part is complete and its checksum matches."
else
  if [ -s "$archive.part" ]; then
    echo "$0: resuming $url from the $(stat -c %s "$archive.part") bytes in $archive.part"
  else
    echo "$0: downloading $url"
  fi
  fetch "$url" "$archive.part"
  actual=$(checksum_of "$archive.part")
  if [ -z "$expected" ]; then
    echo "$0: $archive is not verified (no checksum given); its $algo is $actual"
  elif [ "$actual" != "$expected" ]; then
    refuse "$archive.part" "$actual" "$url"
  fi
fi
mv "$archive.part" "$archive"
