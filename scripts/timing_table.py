#!/usr/bin/env python3
"""The same-run timing table of scripts/gpu-check.sh: hetsched CUDA against PyTorch eager fp32 and
PyTorch's CUDA-graph replay, per model and batch, as Markdown, with the issue's two criteria:
faster than eager, and within 1.25x of graph replay. Device-resident figures are compared with
device-resident ones (hetsched's kernel time on the device against PyTorch's timings of tensors
already on the GPU), host-to-host with host-to-host.

Usage: timing_table.py gpu-check-out/summary.txt > gpu-check-out/timing.md
"""
import re
import sys

ours, own_gemm, torch = {}, {}, {}
ours_re = re.compile(r"^(\S+) b(\d+) hetsched cuda(, own GEMM kernel)?: median of \d+ runs: ([\d.]+) ms host to host(?:, ([\d.]+) ms on the device)?")
torch_re = re.compile(r"^(\S+)\s+b(\d+)\s+torch eager\s+([\d.]+) ms\s+cuda-graph replay\s+([\d.]+) ms(?:\s+replay host to host\s+([\d.]+) ms)?")
for line in open(sys.argv[1]):
    if m := ours_re.match(line):
        key = (m[1], int(m[2]))
        (own_gemm if m[3] else ours)[key] = (float(m[4]), float(m[5]) if m[5] else None)
    elif m := torch_re.match(line):
        torch[(m[1], int(m[2]))] = (float(m[3]), float(m[4]), float(m[5]) if m[5] else None)


def ms(v):
    return "-" if v is None else f"{v:.3f}"


print("| model | batch | hetsched device ms | hetsched host-to-host ms | own GEMM device ms | torch eager ms | torch graph replay ms | replay host-to-host ms | eager / hetsched | hetsched / replay | criteria |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for key in sorted(set(ours) | set(torch)):
    (h2h, dev), own, t = ours.get(key, (None, None)), own_gemm.get(key, (None, None)), torch.get(key)
    best = min(v for v in (dev, own[1]) if v is not None) if dev is not None or own[1] is not None else None
    if t and best:
        vs_eager, vs_replay = t[0] / best, best / t[1]
        verdict = "ok" if vs_eager > 1 and vs_replay <= 1.25 else "MISSED"
        cells = [f"{vs_eager:.2f}x", f"{vs_replay:.2f}x", verdict]
    else:
        cells = ["-", "-", "no pair"]
    row = [key[0], str(key[1]), ms(dev), ms(h2h), ms(own[1]), ms(t and t[0]), ms(t and t[1]), ms(t and t[2])] + cells
    print("| " + " | ".join(row) + " |")
