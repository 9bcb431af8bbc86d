#!/usr/bin/env bash
# A scheduled daskgmm job, for cron: make the data if missing, fit, predict.
#
#   scripts/cron_fit.sh CONFIG [LOG_DIR]
#
# crontab example (nightly at 02:00):
#   0 2 * * *  cd /srv/gmm && scripts/cron_fit.sh configs/demo.yaml logs
#
# - Takes a lock (flock) so two runs never overlap: a second run exits 75 at once.
# - If the previous run died mid-fit (its checkpoint is still there), this run
#   resumes it; a finished run removes its checkpoint.
# - Data missing? It is made with `daskgmm make-data` from MAKE_DATA_ARGS
#   (default: --n-samples 1000000 --n-features 8 --n-components 5).
# - Everything goes to LOG_DIR/daskgmm-<UTC time>.log (JSON lines from fit).
# Exit code: that of the first daskgmm step that failed (see `daskgmm --help`).
set -euo pipefail

config=${1:?usage: cron_fit.sh CONFIG [LOG_DIR]}
log_dir=${2:-logs}
mkdir -p "$log_dir"

exec 9>"$log_dir/.daskgmm.lock"
if ! flock --nonblock 9; then
    echo "cron_fit.sh: another run holds $log_dir/.daskgmm.lock; not starting" >&2
    exit 75
fi

log="$log_dir/daskgmm-$(date -u +%Y%m%dT%H%M%SZ).log"
setting() {  # the value of a config key, e.g. data.path (empty if unset)
    python - "$config" "$1" <<'PY'
import sys
from daskgmm.config import load_config
value = load_config(sys.argv[1])
for part in sys.argv[2].split("."):
    value = getattr(value, part) if value is not None else None
print("" if value is None else value)
PY
}
data_path=$(setting data.path)
checkpoint=$(setting checkpoint.path)

{
    echo "== $(date -u +%FT%TZ) daskgmm job, config $config"
    if [ ! -e "$data_path" ]; then
        # shellcheck disable=SC2086  # MAKE_DATA_ARGS is a list of options
        daskgmm make-data "$data_path" ${MAKE_DATA_ARGS:---n-samples 1000000 --n-features 8 --n-components 5}
    fi
    resume=()
    if [ -n "$checkpoint" ] && [ -e "$checkpoint" ]; then
        echo "previous run left $checkpoint: resuming it"
        resume=(--resume)
    fi
    daskgmm fit "$config" "${resume[@]}" --overwrite --log-format json
    [ -n "$checkpoint" ] && rm -f "$checkpoint"
    daskgmm predict "$config" --overwrite
    echo "== $(date -u +%FT%TZ) done"
} >>"$log" 2>&1
