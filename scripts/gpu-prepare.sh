#!/usr/bin/env bash
# Packs .gpu-bundle/ for scripts/gpu-check.sh on the GPU machine (no cargo, no network there):
# binaries built with --features cuda (../shared/scripts/gpu-bundle.sh), the four shared models,
# and the ONNX node-suite cases CUDA covers, as a tarball. Keeps only the binaries the check runs, so the bundle
# stays under the 64 MiB a device run can carry. Run from the repository root:
#   bash scripts/gpu-prepare.sh
# then, with the device tool: run(command="bash scripts/gpu-check.sh", carry=[".gpu-bundle"]).
set -euo pipefail
shared=${HETSCHED_SHARED:-../shared}
# gpu-bundle.sh refuses a bundle over 64 MiB before the pruning below; its size check is redone here.
bash "$shared/scripts/gpu-bundle.sh" squeezenet1_1 mobilenet_v2 shufflenet_v2_x1_0 bert_tiny || true
[ -x .gpu-bundle/bin/hetsched ] || { echo "gpu-prepare: no hetsched binary in .gpu-bundle/bin" >&2; exit 1; }
for f in .gpu-bundle/bin/*; do
  case $(basename "$f") in
    hetsched | cuda-* | cuda_nvrtc-*) ;;
    *) rm -f "$f" ;;
  esac
done
# The node-suite cases the CUDA kernels cover (tests/conformance/cuda.txt and cuda-frozen.txt):
# which cases a device supports is decided before anything runs, so the others would only be
# counted unsupported.
cat tests/conformance/cuda.txt tests/conformance/cuda-frozen.txt | grep -v '^#' | sed '/^$/d; s|^|onnx-node/|' | sort -u | tar czf .gpu-bundle/onnx-node.tgz -C "$shared" -T -
du -sh .gpu-bundle; ls -la .gpu-bundle/bin
size=$(du -sm .gpu-bundle | cut -f1)
[ "$size" -lt 64 ] || { echo "gpu-prepare: $size MiB is over the 64 MiB that can travel" >&2; exit 1; }
