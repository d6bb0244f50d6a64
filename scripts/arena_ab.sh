#!/bin/bash
# The CPU activation arena on and off, alternated, two rounds per model and batch, one thread:
# median ms, the process's page faults (perf stat) and peak RSS. Run from the repository root
# after `cargo build --release`, with ../shared beside it (BENCHMARKS "The CPU activation arena").
for m in ../shared/models/squeezenet1_1 ../shared/models/mobilenet_v2 ../shared/models/shufflenet_v2_x1_0 ../shared/models/bert_tiny tests/data/models/unet_tiny tests/data/models/video3d; do
 for b in 1 8; do
  for round in 1 2; do
   for e in 1 0; do
    out=$(HETSCHED_CPU_ARENA=$e perf stat -x, -e page-faults ./target/release/hetsched run $m --batch $b --threads 1 --repeat 31 2>&1)
    med=$(echo "$out" | grep -o "median of 30 runs: [0-9.]*" | awk '{print $5}')
    rss=$(echo "$out" | grep -o "peak resident memory [0-9.]*" | awk '{print $4}')
    pf=$(echo "$out" | grep page-faults | cut -d, -f1)
    echo "$(basename $m) b$b arena=$e ms=$med faults=$pf rss=$rss"
   done
  done
 done
done
