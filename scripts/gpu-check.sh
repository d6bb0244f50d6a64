#!/usr/bin/env bash
# One-shot check on the GPU machine (CUDA driver and libraries present, no cargo, no network).
# Build elsewhere and bring the binaries: `bash scripts/gpu-prepare.sh` packs the release and CUDA
# test binaries built with --features cuda, the four models and the ONNX node suite into
# .gpu-bundle/; then run this from the repository root (carrying .gpu-bundle):
#   bash scripts/gpu-check.sh [.gpu-bundle]
# Writes everything it measures under ${OUT:-gpu-check-out}/.
# Dry run without a GPU, on the CPU emulator that tests/cuda.rs builds (correctness only, and
# PyTorch's rows missing):
#   LD_LIBRARY_PATH=target/tmp/cuda-emulator BATCHES=1 REPEAT=2 bash scripts/gpu-check.sh
set -uo pipefail
BUNDLE=${1:-.gpu-bundle}
OUT=${OUT:-gpu-check-out}
# Smaller settings only for a dry run of this script elsewhere (e.g. on the CPU emulator).
BATCHES=${BATCHES:-"1 8 32"}
REPEAT=${REPEAT:-50}
mkdir -p "$OUT"
BIN=$(find "$BUNDLE" -type f -name hetsched -perm -u+x | head -n 1)
MODELS=$(dirname "$(find "$BUNDLE" -name model.onnx -path '*squeezenet1_1*' | head -n 1)")/..
if [ -f "$BUNDLE/onnx-node.tgz" ] && [ ! -d "$BUNDLE/onnx-node" ]; then tar xzf "$BUNDLE/onnx-node.tgz" -C "$BUNDLE"; fi
[ -x "$BIN" ] || { echo "no hetsched binary under $BUNDLE" >&2; exit 1; }
status=0

echo "== devices" | tee "$OUT/summary.txt"
"$BIN" devices 2>&1 | tee -a "$OUT/summary.txt"

echo "== models on cuda against the references (rel L2 <= 1e-4)" | tee -a "$OUT/summary.txt"
for m in squeezenet1_1 mobilenet_v2 shufflenet_v2_x1_0 bert_tiny unet_tiny video3d; do
  for set in 0 1; do
    dir="$MODELS/$m"
    [ -d "$dir" ] || dir="tests/data/models/$m"
    [ -d "$dir/test_data_set_$set" ] || continue
    if ! "$BIN" run "$dir" --device cuda --inputs "$dir/test_data_set_$set" --check 2>&1 | tee -a "$OUT/summary.txt"; then status=1; fi
  done
done

# The speed comparison comes first: if the device time runs out, it is what matters most.
echo "== timing: hetsched cuda vs PyTorch eager fp32 and CUDA-graph replay (same run)" | tee -a "$OUT/summary.txt"
for m in squeezenet1_1 mobilenet_v2 shufflenet_v2_x1_0 bert_tiny; do
  for b in $BATCHES; do
    printf '%s b%s hetsched cuda: ' "$m" "$b" | tee -a "$OUT/summary.txt"
    "$BIN" run "$MODELS/$m" --device cuda --batch "$b" --repeat "$REPEAT" 2>&1 | grep median | tee -a "$OUT/summary.txt" || status=1
  done
  # The tiled GEMM kernel (bias and activation fused, one launch) instead of cuBLAS + bias_act:
  # which wins, and from what size, decides the default (HETSCHED_CUDA_GEMM).
  for b in $BATCHES; do
    printf '%s b%s hetsched cuda, own GEMM kernel: ' "$m" "$b" | tee -a "$OUT/summary.txt"
    HETSCHED_CUDA_GEMM=kernel "$BIN" run "$MODELS/$m" --device cuda --batch "$b" --repeat "$REPEAT" 2>&1 | grep median | tee -a "$OUT/summary.txt" || status=1
  done
  # Informational: batch 32 with TF32 GEMMs (PyTorch's fp32 rows keep TF32 off).
  last=${BATCHES##* }
  printf '%s b%s hetsched cuda, tf32: ' "$m" "$last" | tee -a "$OUT/summary.txt"
  "$BIN" run "$MODELS/$m" --device cuda --batch "$last" --repeat "$REPEAT" --tf32 2>&1 | grep median | tee -a "$OUT/summary.txt" || status=1
  # The same at batch 1 without graph replay: what one launch per kernel costs.
  printf '%s b1 hetsched cuda, no graphs: ' "$m" | tee -a "$OUT/summary.txt"
  HETSCHED_CUDA_GRAPHS=0 "$BIN" run "$MODELS/$m" --device cuda --batch 1 --repeat "$REPEAT" 2>&1 | grep median | tee -a "$OUT/summary.txt" || status=1
done
python3 "$(dirname "$0")/torch_baseline.py" --batch "${BATCHES// /,}" --runs "$REPEAT" 2>&1 | tee -a "$OUT/summary.txt" || status=1
echo "== same-run table (timing.md)" | tee -a "$OUT/summary.txt"
python3 "$(dirname "$0")/timing_table.py" "$OUT/summary.txt" > "$OUT/timing.md" || status=1
cat "$OUT/timing.md"

echo "== conformance on cuda" | tee -a "$OUT/summary.txt"
if [ -d "$BUNDLE/onnx-node" ]; then
  for mode in "" --frozen; do
    json="$OUT/conformance-cuda${mode:+-frozen}.json"
    "$BIN" conformance "$BUNDLE/onnx-node" --device cuda $mode --json > "$json" 2>&1 || status=1
    python3 -c "import json;d=json.load(open('$json'));print('cuda${mode:+ frozen}', {k:d[k] for k in ('total','pass','fail','unsupported','error')})" | tee -a "$OUT/summary.txt"
  done
fi

echo "== CUDA test binaries, device tests included (a missing device fails them)" | tee -a "$OUT/summary.txt"
for t in $(find "$BUNDLE" -type f -perm -u+x \( -name 'cuda-*' -o -name 'cuda_nvrtc-*' \) | grep -v '\.d$'); do
  HETSCHED_SHARED="$MODELS/.." HETSCHED_EXPECT_CUDA=1 "$t" --include-ignored --test-threads 1 > "$OUT/$(basename "$t").log" 2>&1 || status=1
  grep -E '^test |test result' "$OUT/$(basename "$t").log" | tee -a "$OUT/summary.txt"
done

echo "== where the device time goes (batch 1 and 32, kernels launched one by one between events)" | tee -a "$OUT/summary.txt"
for m in squeezenet1_1 mobilenet_v2; do
  for b in 1 ${BATCHES##* }; do
    echo "-- $m b$b" >> "$OUT/profile.txt"
    HETSCHED_PROFILE=1 "$BIN" run "$MODELS/$m" --device cuda --batch "$b" --repeat 3 >> "$OUT/profile.txt" 2>&1 || status=1
  done
done
tail -n 8 "$OUT/profile.txt" | tee -a "$OUT/summary.txt"

# Last, as time allows: real architectures exported here with random weights and ONNX Runtime
# references (scripts/zoo.py; each model whose export needs a missing package is skipped).
echo "== real architectures on cuda (scripts/zoo.py)" | tee -a "$OUT/summary.txt"
if python3 -c "import torch, onnxruntime" 2>/dev/null; then
  # The models stay out of $OUT (hundreds of MB; only the logs come back).
  zoo=$(mktemp -d)
  python3 "$(dirname "$0")/zoo.py" "$zoo" resnet50 convnext_tiny efficientnet_b0 swin_t vit_tiny r3d_18 deeplabv3_mobilenet_v3_large bert gpt2 llama > "$OUT/zoo.log" 2>&1
  grep -E '^[a-z0-9_]+: ' "$OUT/zoo.log" | cut -c1-120 | tee -a "$OUT/summary.txt"
  for m in "$zoo"/*/; do
    for set in 0 1; do
      [ -f "$m/model.onnx" ] && [ -d "$m/test_data_set_$set" ] || continue
      # run --check exits non-zero when any output misses its reference.
      if out=$("$BIN" run "$m" --device cuda --inputs "$m/test_data_set_$set" --check 2>&1); then verdict=ok; else verdict=FAILED; status=1; fi
      echo "$(basename "$m")/$set $verdict: $(echo "$out" | grep -E 'rel_l2|error' | sed 's/\].*rel_l2/] rel_l2/' | tr '\n' ' ')" | tee -a "$OUT/summary.txt"
    done
  done
else
  echo "torch or onnxruntime missing: skipped" | tee -a "$OUT/summary.txt"
fi
exit $status
