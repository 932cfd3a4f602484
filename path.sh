# Sourced by every recipe's path.sh (egs/<corpus>/path.sh sets NASR_ROOT first).
# Activates the project's virtual environment, puts utils/ on PATH and fixes the collation.
NASR_ROOT=${NASR_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
export NASR_ROOT
if [ -f "$NASR_ROOT/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$NASR_ROOT/.venv/bin/activate"
fi
export PATH="$NASR_ROOT/utils:$PATH"
export PYTHONPATH="$NASR_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
# OpenMP threads that spin while waiting slow torch down badly when cores are shared (measured
# 2.9 s vs 11-140 s for one search step on a loaded 2-core machine); passive waiting costs nothing.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
