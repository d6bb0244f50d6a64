#!/bin/bash
# Pipeline efficiency on a two-stage plan (issue: throughput >= 90% of 1 / the slowest stage
# measured alone): unet_tiny split CPU + wgpu (lavapipe), each device given one thread. Run from
# the repository root after `cargo build --release` (BENCHMARKS "Two stages, one core each").
#
# Per round, with and without `--cores cpu=0,wgpu=1`, alternated:
#   alone: `bench --inflight 1` (one request in the pipeline, so each stage runs with nothing
#          beside it): every stage's median from the trace;
#   piped: `bench` at the default inflight: requests/s and the stages' medians.
# efficiency = piped requests/s x the slowest stage's median alone.
set -euo pipefail
H=./target/release/hetsched
M=tests/data/models/unet_tiny
REQ=${REQUESTS:-2000}
ROUNDS=${ROUNDS:-3}
export LP_NUM_THREADS=1 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
dir=$(mktemp -d)
$H partition $M --devices cpu,wgpu --algorithm pipeline --objective throughput --threads 1 \
    --pin 'Conv_head|probs=wgpu' --out $dir/p2.json >/dev/null 2>&1

stages() { # trace file -> "partition 0=0.123 partition 1=0.456" (median ms per stage)
  python3 - "$1" <<'EOF'
import json, statistics, sys
t = json.load(open(sys.argv[1]))
ev = t["traceEvents"] if isinstance(t, dict) else t
d = {}
for e in ev:
    if e.get("ph") == "X" and e.get("name", "").startswith("partition"):
        d.setdefault(e["name"].split(" (")[0].split(":")[0], []).append(e["dur"] / 1000)
print(" ".join(f"{k}={statistics.median(v):.3f}" for k, v in sorted(d.items())))
EOF
}
rate() { grep -E "^$dir/p2.json" | awk '{print $5}'; }

for round in $(seq $ROUNDS); do
  for cores in "--cores cpu=0,wgpu=1" ""; do
    label=${cores:-"(anywhere)"}
    $H bench $M --splits $dir/p2.json --devices cpu,wgpu --threads 1 --requests $REQ --inflight 1 $cores --trace $dir/alone.json >/dev/null 2>&1
    alone=$(stages $dir/alone.json)
    slowest=$(echo "$alone" | tr ' ' '\n' | cut -d= -f2 | sort -g | tail -1)
    r=$($H bench $M --splits $dir/p2.json --devices cpu,wgpu --threads 1 --requests $REQ $cores --trace $dir/piped.json 2>/dev/null | rate)
    piped=$(stages $dir/piped.json)
    eff=$(python3 -c "print(f'{$r * $slowest / 1e3:.0%}')")
    echo "round $round $label: alone [$alone] piped [$piped] $r requests/s, efficiency $eff"
  done
done
rm -rf "$dir"
