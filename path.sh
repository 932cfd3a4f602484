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
# How long torch's OpenMP threads (libgomp) spin before they sleep between parallel regions. The
# DARTS networks run thousands of small ops a step, and sleeping at once (OMP_WAIT_POLICY=PASSIVE,
# this file's setting until 2026-12-04) makes every op wait on wake-ups. bench/omp_wait.py on the
# 2-core machine, idle: synth-profile search step 1.18 s at 30000 spins, 1.93 s passive, 0.98 s at
# libgomp's default (300000); training step 0.53 / 0.73 / 0.61 s. On cores shared with other busy
# processes every setting is erratic (search step 7.3 / 2.5 / 5.8 s in that run, 2.1-2.3 against
# 2.8-3.0 s passive in another): there, export OMP_WAIT_POLICY=PASSIVE first. Yours wins.
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-30000}
