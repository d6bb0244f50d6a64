#!/usr/bin/env python3
"""PyTorch fp32 baselines on the GPU for the shared models' architectures (torchvision
squeezenet1_1 / mobilenet_v2 / shufflenet_v2_x1_0 with random weights; a 2-layer, 128-wide
BERT from transformers when installed): eager median latency and CUDA-graph replay median, per
batch, and the replay host to host (pinned inputs uploaded, first output downloaded). Eager and
replay time device-resident tensors, like hetsched's "on the device" figure; host to host is
comparable with hetsched's run latency. It times the torchvision/transformers equivalents, not
the ONNX files themselves.

Usage: torch_baseline.py --batch 1,8,32 [--runs 50]
"""
import argparse, statistics, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--batch", default="1,8,32")
ap.add_argument("--runs", type=int, default=50)
a = ap.parse_args()
dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def models():
    import torchvision.models as tv
    yield "squeezenet1_1", tv.squeezenet1_1(), lambda b: (torch.randn(b, 3, 224, 224, device=dev),)
    yield "mobilenet_v2", tv.mobilenet_v2(), lambda b: (torch.randn(b, 3, 224, 224, device=dev),)
    yield "shufflenet_v2_x1_0", tv.shufflenet_v2_x1_0(), lambda b: (torch.randn(b, 3, 224, 224, device=dev),)
    try:
        from transformers import BertConfig, BertModel
        cfg = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
        yield "bert_tiny", BertModel(cfg), lambda b: (torch.randint(0, 1000, (b, 16), device=dev), torch.ones(b, 16, dtype=torch.long, device=dev))
    except ImportError:
        print("bert_tiny: transformers not installed, skipped")


def median_ms(fn):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


with torch.no_grad():
    for name, model, make in models():
        model = model.eval().to(dev)
        for b in [int(x) for x in a.batch.split(",")]:
            inputs = make(b)
            eager = median_ms(lambda: model(*inputs))
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    model(*inputs)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = model(*inputs)
            out = out if torch.is_tensor(out) else out[0]
            replay = median_ms(g.replay)
            # Host to host, as hetsched's `run` is timed: pinned inputs in, replay, first output
            # back into pinned memory.
            host_in = [x.cpu().pin_memory() for x in inputs]
            host_out = torch.empty(out.shape, dtype=out.dtype).pin_memory()

            def host_to_host():
                for h, d in zip(host_in, inputs):
                    d.copy_(h, non_blocking=True)
                g.replay()
                host_out.copy_(out, non_blocking=True)

            h2h = median_ms(host_to_host)
            print(f"{name:20s} b{b:<3d} torch eager {eager:8.3f} ms   cuda-graph replay {replay:8.3f} ms   replay host to host {h2h:8.3f} ms", flush=True)
