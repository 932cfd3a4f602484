# Stage helpers sourced by every egs/*/run.sh after option parsing (needs $stage and $stop_stage).
#   if run_stage 3 "search"; then ...; done_stage 3; fi
# log: time and caller's file:line, as ESPnet's asr.sh prints them.
log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }
run_stage() {  # run_stage N name: is stage N selected? logs its start and starts its clock
  if [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; then log "stage $1: $2"; SECONDS=0; return 0; fi
  return 1
}
done_stage() { log "stage $1 done in ${SECONDS}s"; }
