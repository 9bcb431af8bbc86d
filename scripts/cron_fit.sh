#!/usr/bin/env bash
# A scheduled daskgmm job, for cron: make the data if missing, fit, predict.
#
#   scripts/cron_fit.sh CONFIG [LOG_DIR]
#
# cron runs a job with PATH=/usr/bin:/bin and none of your shell's setup, so a
# bare `python` or `daskgmm` is not found there (or is the system's, without
# daskgmm). Name the interpreter that has daskgmm installed in DASKGMM_PYTHON.
# crontab example (nightly at 02:00):
#   0 2 * * *  cd /srv/gmm && DASKGMM_PYTHON=/srv/gmm/.venv/bin/python scripts/cron_fit.sh configs/demo.yaml logs
#
# - Python: $DASKGMM_PYTHON if set (it must import daskgmm); else the first of
#   .venv/bin/python and venv/bin/python beside scripts/, then python3 and python
#   on PATH, that imports daskgmm. None: the run logs why and exits 127.
# - Takes a lock (flock) so two runs never overlap: a second run exits 75 at once.
# - If the previous run died mid-fit (its checkpoint is there and unfinished),
#   this run resumes it. `fit --resume` refuses a checkpoint of other parameters
#   (exit 2) or of other data (exit 3: the input was rewritten since, say); the
#   log says what differs, and removing the checkpoint starts afresh. A finished
#   checkpoint is never resumed (the fit starts afresh), and a finished run removes
#   its checkpoint once the model file is in place.
# - Data missing? It is made with `daskgmm make-data` from MAKE_DATA_ARGS
#   (default: --n-samples 1000000 --n-features 8 --n-components 5).
# - Everything goes to LOG_DIR/daskgmm-<UTC time>.log (JSON lines from fit),
#   failures too: a last line "FAILED ... exit N", and one line to stderr (which
#   cron mails) naming the log.
# Exit code: that of the first step that failed (see `daskgmm --help`).
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
exec 3>&2 >>"$log" 2>&1  # from here on everything goes to the log; fd 3 is cron's stderr
on_exit() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo "== $(date -u +%FT%TZ) FAILED: daskgmm job, config $config, exit $status"
        echo "cron_fit.sh: the daskgmm job failed (exit $status); see $log" >&3
    fi
}
trap on_exit EXIT
echo "== $(date -u +%FT%TZ) daskgmm job, config $config"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
has_daskgmm() {  # from /, so that a daskgmm folder in the current directory does not count
    (cd / && "$1" -c "import daskgmm.jobs.cli, daskgmm.estimator") >/dev/null 2>&1
}
if [ -n "${DASKGMM_PYTHON:-}" ]; then
    python=$DASKGMM_PYTHON
    if ! has_daskgmm "$python"; then
        echo "DASKGMM_PYTHON=$python cannot import daskgmm (PATH=$PATH)"
        exit 127
    fi
else
    python=
    for candidate in "$here/../.venv/bin/python" "$here/../venv/bin/python" \
                     "$(command -v python3 || true)" "$(command -v python || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && has_daskgmm "$candidate"; then
            python=$candidate
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "no Python with daskgmm found (PATH=$PATH): set DASKGMM_PYTHON to the interpreter" \
             "that has daskgmm installed, e.g. DASKGMM_PYTHON=/srv/gmm/.venv/bin/python in the crontab line"
        exit 127
    fi
fi
echo "python: $python"
daskgmm() { "$python" -m daskgmm.jobs.cli "$@"; }

setting() {  # the value of a config key, e.g. data.path (empty if unset)
    "$python" - "$config" "$1" <<'PY'
import sys
from daskgmm.jobs.config import load_config
value = load_config(sys.argv[1])
for part in sys.argv[2].split("."):
    value = getattr(value, part) if value is not None else None
print("" if value is None else value)
PY
}
checkpoint_status() {  # missing, finished or unfinished
    "$python" - "$1" <<'PY'
import sys
from daskgmm.checkpoints import Checkpoint
print(Checkpoint.status(sys.argv[1]))
PY
}
data_path=$(setting data.path)
checkpoint=$(setting checkpoint.path)

if [ ! -e "$data_path" ]; then
    # shellcheck disable=SC2086  # MAKE_DATA_ARGS is a list of options
    daskgmm make-data "$data_path" ${MAKE_DATA_ARGS:---n-samples 1000000 --n-features 8 --n-components 5}
fi
resume=()
if [ -n "$checkpoint" ]; then
    state=$(checkpoint_status "$checkpoint")  # an unreadable checkpoint stops the run here
    case $state in
        unfinished)
            echo "previous run left an unfinished fit in $checkpoint: resuming it"
            resume=(--resume) ;;
        finished)
            echo "$checkpoint holds a finished fit: not resuming it, fitting afresh" ;;
    esac
fi
status=0
daskgmm fit "$config" "${resume[@]}" --overwrite --log-format json || status=$?
if [ "$status" -ne 0 ]; then
    if [ "${#resume[@]}" -gt 0 ] && { [ "$status" -eq 2 ] || [ "$status" -eq 3 ]; }; then
        echo "if the error above says that the checkpoint belongs to another job, remove" \
             "$checkpoint to start afresh"
    fi
    exit "$status"
fi
if [ -n "$checkpoint" ]; then
    rm -f "$checkpoint"  # the model file is in place
fi
daskgmm predict "$config" --overwrite
echo "== $(date -u +%FT%TZ) done"
