# Recipe environment: the top-level path.sh activates .venv, puts utils/ on PATH, sets LC_ALL=C.
NASR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$NASR_ROOT/path.sh"
