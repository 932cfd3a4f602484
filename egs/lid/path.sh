# Recipe environment: the top-level path.sh activates .venv, puts utils/ on PATH, sets LC_ALL=C.
# readlink -f: the recipe may be a symlinked copy (tests run it from a scratch dir).
NASR_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
. "$NASR_ROOT/path.sh"
