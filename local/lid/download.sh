#!/usr/bin/env bash
# Download and unzip VoxLingua107 per-language archives (<base-url>/<lang>.zip), or check a corpus
# the user already has.
#
# Each <lang>.zip unpacks to <lang>/<video>---<start>-<end>.wav (16 kHz mono); the result is
# <dest-dir>/<lang>/*.wav, the tree local/lid/prepare.py reads.  Per language, a marker
# <dest-dir>/.<lang>.complete is written only after the checksum matched (when a list is given) and
# unzip finished into a temp folder that was then renamed; so an interrupted language is redone (its
# download resumes from the partial file) and a finished one is skipped.
#
# The corpus publishes no checksum list; pass your own with --checksums (sha256sum format,
# `<sha256>  <lang>.zip` per line).  Without one, the SHA-256 of every archive fetched is appended
# to <dest-dir>/sha256sums.seen, which can be passed as --checksums on the next machine.
set -euo pipefail

echo "$0 $*"

# Options (set before parsing; --foo-bar sets foo_bar).
langs=                 # required (unless ... never: there are 107 languages and ~1 TB)
base_url=https://bark.phon.ioc.ee/voxlingua107
checksums=             # sha256sum-format list; empty: no verification (recorded in sha256sums.seen)
corpus_dir=            # a user-supplied unzipped corpus: only checked, nothing fetched
with_dev=false         # also fetch dev.zip (VoxLingua107's validated dev set) into <dest-dir>/devset
remove_archive=false

usage="Usage: $0 [options] <dest-dir>
 e.g.: $0 --langs \"en de fr\" /data/voxlingua107
Options:
  --langs \"<codes>\"          languages to fetch, blank or comma separated (e.g. \"en de fr\")
  --base-url <url>           where <lang>.zip lives (default: $base_url; file:// works too)
  --checksums <file>         sha256sum-format list of the archives; a language missing from it is an error
  --corpus-dir <dir>         use this already unzipped corpus (<dir>/<lang>/*.wav): check it, fetch nothing
  --with-dev <bool>          also fetch dev.zip into <dest-dir>/devset (default: $with_dev)
  --remove-archive <bool>    delete each .zip after unpacking (default: $remove_archive)"

# readlink -f: also right when called through a recipe's local/ symlink
nasr_root=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
. "$nasr_root/utils/parse_options.sh"

if [ $# -ne 1 ]; then
  echo "$usage" >&2
  exit 1
fi
dest=$1
read -r -a lang_list <<< "$(echo "$langs" | tr ',' ' ')"
if [ ${#lang_list[@]} -eq 0 ]; then
  echo "$0: --langs is empty; name the languages to fetch, e.g. --langs \"en de fr\"" >&2
  exit 1
fi
for lang in "${lang_list[@]}"; do
  if ! [[ "$lang" =~ ^[a-z]{2,3}$ ]]; then
    echo "$0: '$lang' is not a VoxLingua107 language code (two or three lower-case letters, e.g. en, haw)" >&2
    exit 1
  fi
done

# --- a user-supplied corpus: check it has every language, then stop --------------------------------
if [ -n "$corpus_dir" ]; then
  missing=()
  for lang in "${lang_list[@]}"; do
    if ! compgen -G "$corpus_dir/$lang/*.wav" >/dev/null; then missing+=("$lang"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$0: $corpus_dir has no $corpus_dir/<lang>/*.wav for: ${missing[*]} (fix: unzip those" \
         "archives there, or drop them from --langs)" >&2
    exit 1
  fi
  echo "$0: using the corpus in $corpus_dir (${lang_list[*]}); nothing to download."
  exit 0
fi

if [ -n "$checksums" ] && [ ! -f "$checksums" ]; then
  echo "$0: --checksums $checksums does not exist" >&2
  exit 1
fi

expected_sum() {  # expected_sum <archive name>: the checksum listed for it, or nothing
  awk -v name="$1" '{ f = $2; sub(/^\*/, "", f); n = split(f, p, "/"); if (p[n] == name) { print tolower($1); exit } }' "$checksums"
}

unpack() {  # unpack <archive> <target-dir>: into a temp folder, renamed into place when complete
  local archive=$1 target=$2 tmp entries
  tmp=$(mktemp -d "$(dirname "$target")/.$(basename "$target").unzip-XXXXXX")
  if command -v unzip >/dev/null; then
    unzip -q -o "$archive" -d "$tmp"
  else
    python3 -m zipfile -e "$archive" "$tmp"
  fi
  # The archives hold one folder (<lang>/, or dev/); take its contents.  A flat archive is taken as is.
  entries=("$tmp"/*)
  rm -rf "$target"
  if [ ${#entries[@]} -eq 1 ] && [ -d "${entries[0]}" ]; then
    mv "${entries[0]}" "$target"
    rmdir "$tmp"
  else
    mv "$tmp" "$target"
  fi
}

get_one() {  # get_one <name> <target-dir>: <base-url>/<name>.zip -> <target-dir>, once
  local name=$1 target=$2 marker archive url sum
  marker=$dest/.$name.complete
  if [ -f "$marker" ]; then
    echo "$0: $target is already there; skipping."
    return 0
  fi
  # A folder only ever appears here complete (unpack renames it into place), or as the user's own
  # copy of the corpus: either way there is nothing to fetch.
  if compgen -G "$target/*.wav" >/dev/null; then
    echo "$0: $target already holds wav files; skipping (remove it to fetch $name.zip again)."
    return 0
  fi
  archive=$dest/archives/$name.zip
  url=$base_url/$name.zip
  mkdir -p "$dest/archives"
  if [ -n "$checksums" ]; then
    sum=$(expected_sum "$name.zip")
    if [ -z "$sum" ]; then
      echo "$0: $checksums lists no checksum for $name.zip (fix: add a '<sha256>  $name.zip' line," \
           "or drop --checksums)" >&2
      return 1
    fi
    "$nasr_root/utils/download_and_verify.sh" "$url" "$archive" sha256 "$sum" --checksums
  else
    [ -f "$archive" ] || echo "$0: no checksum list given: $url is not verified"
    "$nasr_root/utils/download_and_verify.sh" "$url" "$archive" sha256 ""
    sum=$(sha256sum "$archive" | awk '{print $1}')
    if ! grep -qs "  $name.zip\$" "$dest/sha256sums.seen"; then
      echo "$sum  $name.zip" >> "$dest/sha256sums.seen"
    fi
  fi
  echo "$0: unpacking $archive into $target"
  unpack "$archive" "$target"
  if [ "$remove_archive" = true ]; then rm -f "$archive"; fi
  touch "$marker"
}

mkdir -p "$dest"
for lang in "${lang_list[@]}"; do
  get_one "$lang" "$dest/$lang"
done
if [ "$with_dev" = true ]; then
  # "devset", not "dev": a three-letter folder would pass for a language code in prepare.py
  get_one dev "$dest/devset"
fi
echo "$0: done: ${lang_list[*]} in $dest"
