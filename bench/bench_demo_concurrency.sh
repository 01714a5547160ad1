#!/usr/bin/env bash
# Benchmark: CPU-seconds of the same twelve demo cells run two at a time against all twelve at once.
#
#     bash bench/bench_demo_concurrency.sh [cells] [extra overrides ...]
#
# `hydra/launcher=local` puts every cell of a sweep on the cores at once. Whether that costs
# CPU time through cache and context-switch contention, against one cell per core, is what
# this measures: twelve SGD constant-lr cells of 10 epochs (no sharpness measure), each a
# single run under /usr/bin/time, first at most 2 at a time, then 12 at once, ROUNDS times (2 unless set) in
# alternation. It prints wall and summed CPU (user + system) per round; compare the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
CELLS=${1:-12}
shift || true
EXTRA=("$@")  # e.g. model.width=8 dataset.image_size=8: the same measurement for another regime
PY=.venv/bin/python

round() {  # $1 = how many cells at once
    local n=$1 root
    root=$(mktemp -d)
    local start end
    start=$(date +%s.%N)
    for seed in $(seq 0 $((CELLS - 1))); do
        while [ "$(jobs -r | wc -l)" -ge "$n" ]; do sleep 0.05; done
        /usr/bin/time -f "%U %S" -o "$root/time-$seed" taskset -c 0,1 $PY launch.py experiment=demo seed="$seed" \
            optimizer=sgd schedule=constant train.epochs=10 sharpness=none progress=false \
            results_root="$root" "${EXTRA[@]}" >/dev/null 2>&1 &
    done
    wait
    end=$(date +%s.%N)
    echo "at once: $n  wall: $(echo "$end - $start" | bc) s  CPU: $(cat "$root"/time-* | awk '{s += $1 + $2} END {print s}') s"
    rm -rf "$root"
}

for _ in $(seq "${ROUNDS:-2}"); do
    round 2
    round "$CELLS"
done
