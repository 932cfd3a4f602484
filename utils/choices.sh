# Usage: . utils/choices.sh; check_choice OPTION VALUE CHOICE...
# e.g.:  check_choice --space "$space" nas1 nas2
#
# For run.sh options with a fixed set of values: anything else is fatal before any stage runs,
# and the message lists the values that exist (a typo must not run stages or fail deep inside one).
check_choice() {
  local option=$1 value=$2 choice
  shift 2
  for choice in "$@"; do
    [ "$value" = "$choice" ] && return 0
  done
  echo "$0: $option '$value' is not one of: $*" >&2
  exit 1
}
