#!/usr/bin/env bash
# Stop the test cluster started by tests/slurm/start_cluster.sh: cancel every
# job, then stop slurmd, slurmctld and munged. Packages and configs stay, so
# the next start_cluster.sh takes a second.
#
#   tests/slurm/stop_cluster.sh           stop the daemons
#   tests/slurm/stop_cluster.sh --purge   also forget all job state and logs
set -euo pipefail

RUN_DIR=/run/slurm
MARKER="managed-by: sam-sweeps tests/slurm"

log() { echo "stop_cluster: $*"; }

if [[ -f /etc/slurm/slurm.conf ]] && ! grep -q "$MARKER" /etc/slurm/slurm.conf; then
    echo "stop_cluster: /etc/slurm/slurm.conf was not written by start_cluster.sh; not touching this cluster" >&2
    exit 1
fi

stop_pidfile() {
    local pidfile="$1" name="$2" pid
    [[ -r "$pidfile" ]] || return 0
    pid="$(cat "$pidfile" 2>/dev/null)"
    [[ -n "$pid" && -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm")" == "$name"* ]] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        [[ -d "/proc/$pid" ]] || { log "stopped $name ($pid)"; return 0; }
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    log "killed $name ($pid)"
}

if command -v scancel >/dev/null 2>&1 && scontrol ping 2>/dev/null | grep -q "is UP"; then
    jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
        # shellcheck disable=SC2086  # one argument per job id
        scancel $jobs 2>/dev/null || true
        log "cancelled jobs: $jobs"
    fi
fi
stop_pidfile "$RUN_DIR/slurmd.pid" slurmd
stop_pidfile "$RUN_DIR/slurmctld.pid" slurmctld
stop_pidfile /run/munge/munged.pid munged

if [[ "${1:-}" == "--purge" ]]; then
    rm -rf /var/spool/slurm/ctld /var/spool/slurm/d /var/log/slurm
    log "removed job state and logs"
fi
