#!/usr/bin/env bash
# Bring up a real single-node SLURM (Debian's 22.05 with munge) on this machine
# for the `slurm` tests, without systemd.
#
# Idempotent: packages are installed only when missing, configs are rewritten
# only when they change, daemons are (re)started only when down or when their
# config changed. A second call on a healthy cluster takes about a second.
#
# What it sets up, and why:
#   - munged, slurmctld and slurmd started directly (no systemd here);
#   - one node (this machine, NodeAddr=127.0.0.1) with the CPUs and memory the
#     machine has, so submit-time checks behave as on a real cluster;
#   - fake GPUs: gres `gpu` backed by character devices made with mknod, so
#     `gpus_per_node` is scheduled and jobs see CUDA_VISIBLE_DEVICES;
#   - no slurmdbd: tests/slurm/bin/sacct answers submitit's state queries from
#     squeue (MinJobAge keeps finished jobs visible for a day); put it on PATH;
#   - AuthInfo=cred_expire=10 so a requeued job restarts after ~10 s, not ~2 min.
#
# Environment (all optional):
#   SAM_TEST_SLURM_PARTITION  partition name            (default: debug)
#   SAM_TEST_SLURM_GPUS       number of fake GPUs       (default: 2)
#   SAM_TEST_SLURM_SMOKE      1: run a 1-GPU srun after (re)starting (default: 1)
#
# Exit status 0 when the cluster is up and accepts jobs; otherwise 1 with a
# line starting "start_cluster: cannot start SLURM:" that says why.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MARKER="managed-by: sam-sweeps tests/slurm"
PARTITION="${SAM_TEST_SLURM_PARTITION:-debug}"
GPUS="${SAM_TEST_SLURM_GPUS:-2}"
SMOKE="${SAM_TEST_SLURM_SMOKE:-1}"
CONF_DIR=/etc/slurm
RUN_DIR=/run/slurm
LOG_DIR=/var/log/slurm
# Char major 240 is reserved for local/experimental use: no driver behind it.
FAKE_GPU_MAJOR=240
PACKAGES=(slurmctld slurmd slurm-client munge)
NEEDED_BINARIES=(slurmctld slurmd sbatch srun squeue scontrol scancel sinfo munged munge unmunge)

log() { echo "start_cluster: $*"; }
die() {
    echo "start_cluster: cannot start SLURM: $*" >&2
    exit 1
}
show_logs() {
    local file
    for file in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [[ -r "$file" ]]; then
            echo "----- last lines of $file" >&2
            tail -n 15 "$file" >&2
        fi
    done
}

# A pid file whose process is alive and runs the expected program.
pid_alive() {
    local pidfile="$1" name="$2" pid
    [[ -r "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null)"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm")" == "$name"* ]]
}

stop_pidfile() {
    local pidfile="$1" name="$2" pid
    pid_alive "$pidfile" "$name" || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        [[ -d "/proc/$pid" ]] || return 0
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
}

cluster_ready() {
    scontrol ping 2>/dev/null | grep -q "is UP" || return 1
    sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)'
}

install_packages() {
    local missing=() binary
    for binary in "${NEEDED_BINARIES[@]}"; do
        command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]} (Debian/Ubuntu only)"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    local apt_log policy=/usr/sbin/policy-rc.d added_policy=0 status=0
    apt_log="$(mktemp)"
    # The packages' postinst scripts would start the daemons through init
    # scripts, before our config exists, and fail the install; forbid service
    # starts while installing (as container images do) and start them below.
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && added_policy=1
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PACKAGES[@]}"; } >"$apt_log" 2>&1 || status=$?
    ((added_policy)) && rm -f "$policy"
    if ((status)); then
        tail -n 20 "$apt_log" >&2
        die "apt-get install ${PACKAGES[*]} failed (log above)"
    fi
    rm -f "$apt_log"
    for binary in "${NEEDED_BINARIES[@]}"; do
        command -v "$binary" >/dev/null 2>&1 || die "$binary still missing after installing ${PACKAGES[*]}"
    done
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    id munge >/dev/null 2>&1 || die "the munge user does not exist (is the munge package installed?)"
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    # --force: a socket left behind by a munged that died would otherwise block it.
    runuser -u munge -- /usr/sbin/munged --force \
        || { show_logs; die "munged did not start"; }
    local i
    for i in $(seq 25); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    show_logs
    die "munged started but 'munge -n | unmunge' fails"
}

make_fake_gpus() {
    local i dev
    for ((i = 0; i < GPUS; i++)); do
        dev="/dev/fake_gpu$i"
        if [[ -e "$dev" && ! -c "$dev" ]]; then
            die "$dev exists and is not a character device"
        fi
        if [[ ! -e "$dev" ]]; then
            mknod -m 0666 "$dev" c "$FAKE_GPU_MAJOR" "$i" 2>/dev/null \
                || die "mknod $dev failed (no permission to create device nodes here?)"
        fi
    done
}

# Render a template into $2; return 0 when the file changed.
render() {
    local template="$1" target="$2" tmp
    tmp="$(mktemp)"
    sed -e "s|@HOST@|$HOST|g" \
        -e "s|@CPUS@|$CPUS|g" \
        -e "s|@REAL_MEMORY@|$REAL_MEMORY|g" \
        -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@GPUS@|$GPUS|g" \
        -e "s|@GPU_FILES@|$GPU_FILES|g" \
        -e "s|@PARTITION@|$PARTITION|g" \
        "$HERE/$template" >"$tmp"
    if [[ -f "$target" ]] && cmp -s "$tmp" "$target"; then
        rm -f "$tmp"
        return 1
    fi
    install -m 0644 "$tmp" "$target"
    rm -f "$tmp"
    return 0
}

write_configs() {
    local file
    for file in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        if [[ -f "$file" ]] && ! grep -q "$MARKER" "$file"; then
            die "$file exists and was not written by this script; refusing to overwrite a real cluster's config"
        fi
    done
    mkdir -p "$CONF_DIR"
    CONFIG_CHANGED=0
    render slurm.conf.in "$CONF_DIR/slurm.conf" && CONFIG_CHANGED=1
    render gres.conf.in "$CONF_DIR/gres.conf" && CONFIG_CHANGED=1
    return 0
}

wait_ready() {
    local i
    for i in $(seq 60); do
        if scontrol ping 2>/dev/null | grep -q "is UP"; then
            # A node that was down (e.g. after a restart) is brought back.
            if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(down|drain|drained|draining|fail)'; then
                scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
            fi
            cluster_ready && return 0
        fi
        sleep 0.5
    done
    sinfo -R >&2 2>/dev/null || true
    show_logs
    die "slurmctld/slurmd did not become ready within 30 s (node state: $(sinfo -h -N -o '%T' 2>/dev/null || echo unknown))"
}

smoke_test() {
    local out
    # shellcheck disable=SC2016  # expanded by the job's shell, not this one
    if ! out="$(timeout 60 srun --quiet -N1 -n1 --gpus-per-node=1 --time=1 \
        bash -c 'echo "gpus=${CUDA_VISIBLE_DEVICES:-none}"' 2>&1)"; then
        echo "$out" >&2
        show_logs
        die "a 1-GPU test job did not run"
    fi
    [[ "$out" == *"gpus=0"* ]] || die "a 1-GPU test job did not see CUDA_VISIBLE_DEVICES=0 (got: $out)"
}

main() {
    [[ "$(uname -s)" == Linux ]] || die "Linux only"
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v scontrol >/dev/null 2>&1 && cluster_ready; then
            log "SLURM is already up (not root: nothing changed)"
            exit 0
        fi
        die "needs root to install packages, create device nodes and start daemons (run: sudo $0)"
    fi
    [[ "$GPUS" =~ ^[1-9][0-9]*$ ]] || die "SAM_TEST_SLURM_GPUS must be a positive integer, got '$GPUS'"

    install_packages

    HOST="$(hostname -s)"
    CPUS="$(nproc)"
    local mem_total_mb
    mem_total_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    # Leave 10% to the OS so slurmd never sees less memory than configured.
    REAL_MEMORY=$((mem_total_mb * 9 / 10))
    DEF_MEM_PER_CPU=$((REAL_MEMORY / CPUS))
    if ((GPUS > 1)); then
        GPU_FILES="/dev/fake_gpu[0-$((GPUS - 1))]"
    else
        GPU_FILES="/dev/fake_gpu0"
    fi
    getent hosts "$HOST" >/dev/null 2>&1 \
        || log "warning: '$HOST' does not resolve; slurm uses NodeAddr=127.0.0.1 anyway"

    start_munge
    make_fake_gpus
    write_configs
    install -d -m 0755 /var/spool/slurm/ctld /var/spool/slurm/d "$LOG_DIR" "$RUN_DIR"

    local restarted=0
    if ((CONFIG_CHANGED)); then
        stop_pidfile "$RUN_DIR/slurmd.pid" slurmd
        stop_pidfile "$RUN_DIR/slurmctld.pid" slurmctld
    fi
    if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
        # -i: a state file from another version or config is skipped, not fatal.
        slurmctld -i || { show_logs; die "slurmctld did not start"; }
        restarted=1
    fi
    if ! pid_alive "$RUN_DIR/slurmd.pid" slurmd; then
        slurmd -N "$HOST" || { show_logs; die "slurmd did not start"; }
        restarted=1
    fi
    wait_ready
    if ((restarted)) && [[ "$SMOKE" == 1 ]]; then
        smoke_test
    fi
    log "SLURM is up: node $HOST, $CPUS CPUs, ${REAL_MEMORY} MB, $GPUS fake GPUs, partition '$PARTITION'"
    log "submitit needs accounting: export PATH=\"$HERE/bin:\$PATH\" (sacct answered from squeue)"
}

main "$@"
