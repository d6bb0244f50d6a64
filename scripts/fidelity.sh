#!/usr/bin/env bash
# Reproduces BENCHMARKS.md "Cost model fidelity": profiles cpu and wgpu, calibrates on two
# models, reports predicted against measured on all six (and in-sample on the CPU).
# Usage: bash scripts/fidelity.sh [OUT_DIR]   (JSON reports land in OUT_DIR, default ./fidelity)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-fidelity}
mkdir -p "$OUT"
B=./target/release/hetsched
S=${HETSCHED_SHARED:-../shared}/models
M="$S/squeezenet1_1 $S/mobilenet_v2 $S/shufflenet_v2_x1_0 $S/bert_tiny tests/data/models/unet_tiny tests/data/models/video3d"
cargo build --release
$B profile --devices cpu,wgpu --out "$OUT/p.json"
$B profile --profile "$OUT/p.json" --devices cpu --calibrate $S/squeezenet1_1 $S/mobilenet_v2 --batch 1,8 --out "$OUT/p_cpu.json"
$B profile --profile "$OUT/p.json" --devices wgpu --calibrate $S/squeezenet1_1 $S/mobilenet_v2 --batch 1 --out "$OUT/p_wgpu.json"
$B profile --profile "$OUT/p_cpu.json" --devices cpu --fidelity $M --batch 1,8 --json > "$OUT/fid_cpu.json"
$B profile --profile "$OUT/p_wgpu.json" --devices wgpu --fidelity $M --batch 1 --json > "$OUT/fid_wgpu1.json"
$B profile --profile "$OUT/p_wgpu.json" --devices wgpu --fidelity $S/bert_tiny tests/data/models/unet_tiny tests/data/models/video3d --batch 8 --json > "$OUT/fid_wgpu8.json"
$B profile --profile "$OUT/p.json" --devices cpu --calibrate $M --batch 1,8 --out "$OUT/p_cpu_all.json"
$B profile --profile "$OUT/p_cpu_all.json" --devices cpu --fidelity $M --batch 1,8 --json > "$OUT/fid_cpu_all.json"
echo "reports in $OUT/fid_*.json"
