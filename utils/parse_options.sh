# Usage: . utils/parse_options.sh    (sourced, after the script has set its option variables)
# e.g.:  nj=4; use_gpu=false; . utils/parse_options.sh; then `script.sh --nj 8 --use-gpu true a b`
#
# Kaldi option semantics:
#   --foo-bar VALUE and --foo-bar=VALUE set the existing variable foo_bar;
#   an option whose variable was never set is fatal (a typo must not be silently ignored);
#   a variable holding true/false only accepts true/false;
#   --config FILE sources FILE (var=value lines) before the other options, which then override it;
#   --help / -h prints $help_message (or $usage) and exits 0;  -- ends the options.
# Positional arguments are left in "$@".  Errors print the script's help and exit 1.
# Internal names start with _po_ and are unset at the end, so the caller's namespace stays clean.
#
# Generated option list: when the sourcing script has a block that starts with a line
# `# ---- options` and ends at the first blank line, the help lists every `name=default` line of it
# as `--name default  # comment`, with the comment written beside the assignment (and any
# comment-only lines under it).  The defaults are the values before any option was parsed, so the
# help cannot go stale when a default changes.

# A value as it would be typed: quoted when empty or holding spaces.
_po_shown() {
  if [ -z "$1" ] || [[ "$1" == *[[:space:]]* ]]; then printf '"%s"' "$1"; else printf '%s' "$1"; fi
}

# The option list of the script's `# ---- options` block (see the top of this file).
_po_options() {
  local _po_line _po_opt _po_in=false _po_width=34
  [ -r "$1" ] || return 0
  while IFS= read -r _po_line; do
    if ! $_po_in; then
      if [[ "$_po_line" == "# ---- options"* ]]; then _po_in=true; echo "Options (--name default):"; fi
      continue
    fi
    [ -z "$_po_line" ] && break
    if [[ "$_po_line" =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]]; then
      _po_opt="  --${BASH_REMATCH[1]//_/-} $(_po_shown "${!BASH_REMATCH[1]-}")"
      if [[ "$_po_line" =~ [[:space:]]#[[:space:]]?(.*)$ ]]; then
        if [ ${#_po_opt} -lt $_po_width ]; then
          printf '%-*s # %s\n' $_po_width "$_po_opt" "${BASH_REMATCH[1]}"
        else
          printf '%s\n%-*s # %s\n' "$_po_opt" $_po_width "" "${BASH_REMATCH[1]}"
        fi
      else
        printf '%s\n' "$_po_opt"
      fi
    elif [[ "$_po_line" =~ ^[[:space:]]+#[[:space:]]?(.*)$ ]]; then  # the comment goes on
      printf '%-*s   %s\n' $_po_width "" "${BASH_REMATCH[1]}"
    fi
  done < "$1"
}

_po_help() {
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message" 1>&2
  elif [ -n "${usage:-}" ]; then
    printf '%s\n' "$usage" 1>&2
  else
    echo "$0: no help message; see the comments at the top of $0" 1>&2
  fi
  _po_options "${BASH_SOURCE[2]:-$0}" 1>&2
}

# --help first, before --config or any option changed a variable: the help shows the defaults.
for _po_arg in "$@"; do
  case "$_po_arg" in
    --) break ;;
    --help|-h) _po_help; exit 0 ;;
  esac
done

# --config first, wherever it is on the command line, so that explicit options override the file.
_po_i=1
while [ "$_po_i" -le $# ]; do
  _po_arg=${!_po_i}
  case "$_po_arg" in
    --) break ;;
    --config|--config=*)
      if [ "$_po_arg" = --config ]; then
        _po_i=$((_po_i + 1))
        if [ "$_po_i" -gt $# ]; then echo "$0: option --config needs a value" 1>&2; _po_help; exit 1; fi
        _po_config=${!_po_i}
      else
        _po_config=${_po_arg#--config=}
      fi
      if [ ! -r "$_po_config" ]; then echo "$0: cannot read config file '$_po_config'" 1>&2; exit 1; fi
      # shellcheck disable=SC1090
      . "$_po_config"
      ;;
  esac
  _po_i=$((_po_i + 1))
done

while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --*)
      if [[ "$1" == *=* ]]; then
        _po_name=${1%%=*}; _po_value=${1#*=}; _po_nshift=1
      else
        if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" 1>&2; _po_help; exit 1; fi
        _po_name=$1; _po_value=$2; _po_nshift=2
      fi
      _po_name=${_po_name#--}
      _po_name=${_po_name//-/_}
      if [ "$_po_name" = config ]; then shift "$_po_nshift"; continue; fi  # already sourced above
      # Only plain identifiers: the name is used for indirection, never eval'd.
      if ! [[ "$_po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_name+set}" ]; then
        echo "$0: invalid option ${1%%=*}" 1>&2
        _po_help
        exit 1
      fi
      _po_old=${!_po_name}
      if { [ "$_po_old" = true ] || [ "$_po_old" = false ]; } &&
         [ "$_po_value" != true ] && [ "$_po_value" != false ]; then
        echo "$0: option ${1%%=*} expects true or false, got '$_po_value'" 1>&2
        exit 1
      fi
      printf -v "$_po_name" '%s' "$_po_value"
      shift "$_po_nshift"
      ;;
    *) break ;;
  esac
done

unset -f _po_help _po_options _po_shown
unset _po_i _po_arg _po_config _po_name _po_value _po_nshift _po_old
true
