#!/usr/bin/env python3
"""hetsched's CPU backend against ONNX Runtime's CPU provider, timed alternately in the same run.

    python3 scripts/cpu_vs_ort.py MODEL_DIR... [--batch 1,8] [--threads 1,all] [--rounds 5]
        [--repeat 20] [--load] [--json FILE] [--hetsched target/release/hetsched]
        [--baseline OTHER_HETSCHED]

For each model, batch and thread count, both sides get the same inputs (random, written once as
input_K.pb) and run in their own child process, `--repeat` times after a warm-up; the rounds
alternate hetsched, ORT, hetsched, ORT... so drift of the machine reaches both alike. Each cell is
the median over rounds of each side's median, and each side's peak RSS (the child's ru_maxrss)
is the largest over its rounds. `--threads 1` means hetsched `--threads 1` against ORT
`intra_op_num_threads=1`; `all` means both defaults (one thread per core).

`--ops` instead prints, per model, where each side spends its time: hetsched's per-op-type totals
(`HETSCHED_PROFILE`) beside ONNX Runtime's own profiler (`enable_profiling`), per run, grouped by
the base op (fused forms such as `Conv+Relu` or ORT's `FusedConv` under `Conv`).

`--baseline OTHER` times a second hetsched binary (an earlier build) in each round too, before
the first, and adds its median and its ratio to ORT: a before/after comparison in the same run.

`--load` repeats every measurement with a busy process spinning on every core and reports each
side's slowdown (loaded median / unloaded median): the contention criterion of issue 17.

Prints a Markdown table: medians, the ratio hetsched / ORT, peak RSS, and the geometric mean of
the ratios per thread count. Needs onnx and onnxruntime.
"""
import argparse
import json
import math
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

# A child's own peak resident memory (VmHWM), printed as `hetsched run` prints it.
HWM_PRINT = "\nprint('peak resident memory %.1f MiB' % (int([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]) / 1024))\n"

# Both ORT children open the session the same way: argv model, inputs (.npy, comma-separated),
# threads (0: ORT's default), repeat.
ORT_SESSION = r"""
import sys, time, statistics, json, collections
import numpy as np, onnxruntime as ort
model, inputs, threads, repeat = sys.argv[1], sys.argv[2].split(','), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions()
if threads > 0:
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
sess = ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])
feeds = {meta.name: np.load(inputs[i]) for i, meta in enumerate(sess.get_inputs())}
"""

ORT_CHILD = ORT_SESSION + r"""
sess.run(None, feeds)
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    sess.run(None, feeds)
    times.append((time.perf_counter() - t0) * 1e3)
print(f"median {statistics.median(times):.4f}")
""" + HWM_PRINT

ORT_PROFILE_CHILD = ORT_SESSION + r"""
for _ in range(3):
    sess.run(None, feeds)
so.enable_profiling = True
import os, tempfile
so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), 'ort_profile')
sess = ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])
for _ in range(repeat + 1):
    sess.run(None, feeds)
path = sess.end_profiling()
events = json.load(open(path))
os.remove(path)
runs = [e for e in events if e.get('name') == 'model_run']
# Skip the profiled session's first run: it includes its own warm-up.
start = runs[1]['ts'] if len(runs) > 1 else 0
by_op = collections.defaultdict(float)
for e in events:
    if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time') and e['ts'] >= start:
        by_op[e['args']['op_name']] += e['dur'] / 1e3 / repeat
print(json.dumps(by_op))
"""

ELEM_TYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32, onnx.TensorProto.BOOL: np.bool_,
}


def model_path(folder):
    return folder if folder.endswith(".onnx") else os.path.join(folder, "model.onnx")


def write_inputs(model_file, batch, seq, out_dir, rng):
    """Random inputs for the graph's real inputs (initializers excluded); symbolic dims named
    like a batch take `batch`, the others `seq`, as `hetsched run --batch/--seq` binds them."""
    model = onnx.load(model_file, load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    paths = []
    for i, inp in enumerate(x for x in model.graph.input if x.name not in weights):
        tt = inp.type.tensor_type
        shape = []
        for d, dim in enumerate(tt.shape.dim):
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            else:
                name = dim.dim_param.lower()
                shape.append(batch if d == 0 or "batch" in name or name in ("n", "b") else seq)
        dtype = ELEM_TYPES.get(tt.elem_type)
        if dtype is None:
            raise SystemExit(f"{model_file}: input {inp.name} has an element type this script does not generate")
        if np.issubdtype(dtype, np.floating):
            array = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            array = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            # Token ids, masks and type ids: small values are valid for every vocabulary.
            array = rng.integers(0, 2, shape).astype(dtype)
        with open(os.path.join(out_dir, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(array, inp.name).SerializeToString())
        # The ORT child reads .npy, so it need not import onnx (its RSS is then ORT's own).
        np.save(os.path.join(out_dir, f"input_{i}.npy"), array)
        paths.append(os.path.join(out_dir, f"input_{i}.npy"))
    return paths


def run_measured(argv):
    """Runs a child; returns its output and its peak RSS in bytes, as it reports it (VmHWM).
    The kernel's ru_maxrss of a forked child keeps the parent's resident size from before the
    exec, so this script's own memory would leak into it."""
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}: {stderr.strip()[-600:]}")
    m = re.search(r"peak resident memory ([\d.]+) MiB", stdout + stderr)
    return stdout + stderr, float(m[1]) * 2**20 if m else 0


HETSCHED_MEDIAN = re.compile(r"median of \d+ runs: ([\d.]+) ms")
ORT_MEDIAN = re.compile(r"median ([\d.]+)")


def hetsched_once(args, model_file, input_dir, batch, threads, binary=None):
    argv = [binary or args.hetsched, "run", model_file, "--inputs", input_dir, "--batch", str(batch),
            "--seq", str(args.seq), "--repeat", str(args.repeat + 1)]
    if threads > 0:
        argv += ["--threads", str(threads)]
    text, rss = run_measured(argv)
    m = HETSCHED_MEDIAN.search(text)
    if not m:
        raise RuntimeError(f"no median in hetsched's output: {text[-400:]}")
    return float(m[1]), rss


def ort_once(args, model_file, inputs, threads):
    argv = [sys.executable, "-c", ORT_CHILD, model_file, ",".join(inputs), str(threads), str(args.repeat)]
    text, rss = run_measured(argv)
    return float(ORT_MEDIAN.search(text)[1]), rss


HETSCHED_OP_LINE = re.compile(r"^(\S+)\s+(\d+) nodes\s+([\d.]+) ms$")


def base_op(name):
    """`Conv+Relu/grouped` and ORT's `FusedConv` group under `Conv`."""
    name = name.split("+")[0].split("/")[0]
    return {"FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul"}.get(name, name)


def op_breakdown(args, model_file, batch, threads, rng):
    """Per base op: (hetsched ms per run, ORT ms per run), each side's median run."""
    with tempfile.TemporaryDirectory() as input_dir:
        inputs = write_inputs(model_file, batch, args.seq, input_dir, rng)
        argv = [args.hetsched, "run", model_file, "--inputs", input_dir, "--batch", str(batch), "--seq", str(args.seq), "--repeat", str(args.repeat + 1)]
        if threads > 0:
            argv += ["--threads", str(threads)]
        env = dict(os.environ, HETSCHED_PROFILE="ops")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-400:])
        # One block of lines per run (each op type once, sorted); the first includes planning.
        per_run, current = [], {}
        for line in proc.stderr.splitlines():
            m = HETSCHED_OP_LINE.match(line.strip())
            if not m:
                continue
            if m[1] in current:
                per_run.append(current)
                current = {}
            current[m[1]] = float(m[3])
        if current:
            per_run.append(current)
        per_run = [{op: sum(ms for raw, ms in run.items() if base_op(raw) == op) for op in {base_op(r) for r in run}} for run in per_run]
        per_run = per_run[1:] or per_run
        per_run.sort(key=lambda r: sum(r.values()))
        ours = per_run[len(per_run) // 2]
        text, _ = run_measured([sys.executable, "-c", ORT_PROFILE_CHILD, model_file, ",".join(inputs), str(threads), str(args.repeat)])
        theirs = {}
        for op, ms in json.loads(text.strip().splitlines()[-1]).items():
            theirs[base_op(op)] = theirs.get(base_op(op), 0.0) + ms
    return ours, theirs


def print_ops(name, batch, threads, ours, theirs):
    print(f"\n{name} b{batch} threads={'all' if threads == 0 else threads}: time per run by op\n")
    print("| op | hetsched ms | ORT ms | hetsched - ORT ms |")
    print("| --- | ---: | ---: | ---: |")
    ops = sorted(set(ours) | set(theirs), key=lambda o: -(ours.get(o, 0) - theirs.get(o, 0)))
    for op in ops:
        a, b = ours.get(op, 0.0), theirs.get(op, 0.0)
        print(f"| {op} | {a:.3f} | {b:.3f} | {a - b:+.3f} |")
    print(f"| total (kernels) | {sum(ours.values()):.3f} | {sum(theirs.values()):.3f} | {sum(ours.values()) - sum(theirs.values()):+.3f} |")


def spin():
    while True:
        pass


def measure(args, model_file, batch, threads, rng):
    with tempfile.TemporaryDirectory() as input_dir:
        inputs = write_inputs(model_file, batch, args.seq, input_dir, rng)
        ours, theirs, base, ours_rss, theirs_rss = [], [], [], 0, 0
        for _ in range(args.rounds):
            if args.baseline:
                base.append(hetsched_once(args, model_file, input_dir, batch, threads, args.baseline)[0])
            ms, rss = hetsched_once(args, model_file, input_dir, batch, threads)
            ours.append(ms)
            ours_rss = max(ours_rss, rss)
            ms, rss = ort_once(args, model_file, inputs, threads)
            theirs.append(ms)
            theirs_rss = max(theirs_rss, rss)
    return statistics.median(ours), statistics.median(theirs), ours_rss, theirs_rss, statistics.median(base) if base else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--threads", default="1,all")
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--load", action="store_true")
    p.add_argument("--ops", action="store_true")
    p.add_argument("--json")
    p.add_argument("--hetsched", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "hetsched"))
    p.add_argument("--baseline", help="another hetsched binary (an earlier build), timed in each round beside the other two: "
                   "its ratio to ORT in the same run is a before/after column that the machine's drift reaches alike")
    args = p.parse_args()
    if args.baseline and not os.path.exists(args.baseline):
        raise SystemExit(f"{args.baseline} does not exist")
    if not os.path.exists(args.hetsched):
        raise SystemExit(f"{args.hetsched} does not exist: build it with `cargo build --release` or pass --hetsched")
    batches = [int(b) for b in args.batch.split(",")]
    thread_counts = [0 if t == "all" else int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    for folder in args.models:
        model_file = model_path(folder)
        name = os.path.basename(os.path.dirname(model_file)) if not folder.endswith(".onnx") else os.path.basename(folder)
        for threads in thread_counts:
            for batch in batches:
                label = f"{name} b{batch} threads={'all' if threads == 0 else threads}"
                print(f"{label} ...", file=sys.stderr, flush=True)
                if args.ops:
                    print_ops(name, batch, threads, *op_breakdown(args, model_file, batch, threads, rng))
                    continue
                try:
                    ours, theirs, ours_rss, theirs_rss, base = measure(args, model_file, batch, threads, rng)
                except RuntimeError as e:
                    print(f"{label}: {e}", file=sys.stderr)
                    rows.append({"model": name, "batch": batch, "threads": threads, "error": str(e)[:300]})
                    continue
                row = {"model": name, "batch": batch, "threads": threads, "hetsched_ms": ours, "ort_ms": theirs,
                       "ratio": ours / theirs, "hetsched_peak_rss": ours_rss, "ort_peak_rss": theirs_rss}
                if base is not None:
                    row["baseline_ms"], row["baseline_ratio"] = base, base / theirs
                if args.load:
                    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(os.cpu_count())]
                    for s in spinners:
                        s.start()
                    try:
                        loaded_ours, loaded_theirs, _, _, _ = measure(args, model_file, batch, threads, rng)
                    finally:
                        for s in spinners:
                            s.terminate()
                    row["hetsched_loaded_ms"], row["ort_loaded_ms"] = loaded_ours, loaded_theirs
                    row["hetsched_slowdown"], row["ort_slowdown"] = loaded_ours / ours, loaded_theirs / theirs
                print(f"{label}: hetsched {ours:.3f} ms, ORT {theirs:.3f} ms, ratio {ours / theirs:.2f}", file=sys.stderr)
                rows.append(row)
    if args.ops:
        return
    print_table(rows, args.load)
    _, baseline = run_measured([sys.executable, "-c", "import numpy, onnxruntime" + HWM_PRINT])
    print(f"\nORT's peak RSS includes its Python child's interpreter, numpy and the onnxruntime module: "
          f"{baseline / 2**20:.0f} MiB before any session.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": rows}, f, indent=1)


def print_table(rows, load):
    mib = lambda b: f"{b / 2**20:.0f}"
    head = "| model | batch | threads | hetsched ms | ORT ms | hetsched / ORT | hetsched peak RSS MiB | ORT peak RSS MiB |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    based = any("baseline_ms" in r for r in rows)
    if based:
        head += " baseline ms | baseline / ORT |"
        rule += " ---: | ---: |"
    if load:
        head += " hetsched slowdown under load | ORT slowdown under load |"
        rule += " ---: | ---: |"
    print(head)
    print(rule)
    for r in rows:
        threads = "all" if r["threads"] == 0 else str(r["threads"])
        if "error" in r:
            print(f"| {r['model']} | {r['batch']} | {threads} | failed: {r['error'][:80]} | | | | |")
            continue
        cells = [r["model"], str(r["batch"]), threads, f"{r['hetsched_ms']:.3f}", f"{r['ort_ms']:.3f}",
                 f"{r['ratio']:.2f}x", mib(r["hetsched_peak_rss"]), mib(r["ort_peak_rss"])]
        if based:
            cells += [f"{r['baseline_ms']:.3f}", f"{r['baseline_ratio']:.2f}x"]
        if load:
            cells += [f"{r['hetsched_slowdown']:.2f}x", f"{r['ort_slowdown']:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    for threads in sorted({r["threads"] for r in rows if "error" not in r}):
        ratios = [r["ratio"] for r in rows if r.get("threads") == threads and "error" not in r]
        gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        print(f"\nGeometric mean hetsched / ORT at threads={'all' if threads == 0 else threads}: "
              f"{gm:.2f}x over {len(ratios)} rows; worst {max(ratios):.2f}x")
        if based:
            old = [r["baseline_ratio"] for r in rows if r.get("threads") == threads and "error" not in r]
            print(f"Baseline at threads={'all' if threads == 0 else threads}: "
                  f"{math.exp(sum(math.log(x) for x in old) / len(old)):.2f}x; worst {max(old):.2f}x")


if __name__ == "__main__":
    main()
