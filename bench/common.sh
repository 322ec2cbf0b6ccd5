# Sourced by bench/run.sh and bench/ab.sh: the process bookkeeping and CPU pinning they share.
# Expects WORK (a scratch directory, removed at exit); defines PIDS, log, SERVER_ON and GEN_ON.

PIDS=()

# The servers make their TLS certificate under XDG_STATE_HOME when they have no --data-dir: keep it
# in the scratch directory, not in the runner's home.
export XDG_STATE_HOME="$WORK/state"

# Stop every process recorded in PIDS, then remove WORK (and run CLEANUP_EXTRA if set).
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "${CLEANUP_EXTRA:-}" ]; then "$CLEANUP_EXTRA"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# With two or more CPUs, every server runs on CPU 1 and the generator on CPU 0 (the same for all
# servers): runs vary less when neither migrates nor preempts the other. PIN=0 turns it off.
SERVER_ON=()
GEN_ON=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_ON=(taskset -c 1)
    GEN_ON=(taskset -c 0)
fi
