#!/usr/bin/env python3
"""Export torchvision architectures and small Hugging Face text models (random weights, fixed
seed) to ONNX with a dynamic batch (and sequence), with ONNX Runtime reference outputs at batch 1
and 2 (sequence 16), in the ONNX test layout:

    OUT/NAME/model.onnx, OUT/NAME/test_data_set_{0,1}/{input_0,output_0}.pb

Real architectures beyond the four shared models, for checking hetsched on every device:

    python3 scripts/zoo.py /tmp/zoo [NAME...]
    for m in /tmp/zoo/*/; do hetsched run $m --inputs $m/test_data_set_0 --check --device cpu; done

Needs torch, torchvision, transformers, ultralytics (for the YOLO detectors) and onnxruntime
(not CI's dependencies: this is a developer tool). Small inputs (96x96 unless a model needs more) keep the software GPU devices quick.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper


def tvm():
    """torchvision.models, imported when a torchvision architecture is asked for."""
    import torchvision.models
    return torchvision.models

# name -> (constructor, input side)
MODELS = {
    "resnet18": (lambda: tvm().resnet18(), 96),
    "resnet50": (lambda: tvm().resnet50(), 96),
    "densenet121": (lambda: tvm().densenet121(), 96),
    "googlenet": (lambda: tvm().googlenet(aux_logits=False, init_weights=True), 96),
    "inception_v3": (lambda: tvm().inception_v3(aux_logits=False, init_weights=True), 107),
    "mnasnet0_5": (lambda: tvm().mnasnet0_5(), 96),
    "mobilenet_v3_small": (lambda: tvm().mobilenet_v3_small(), 96),
    "mobilenet_v3_large": (lambda: tvm().mobilenet_v3_large(), 96),
    "efficientnet_b0": (lambda: tvm().efficientnet_b0(), 96),
    "efficientnet_v2_s": (lambda: tvm().efficientnet_v2_s(), 96),
    "regnet_y_400mf": (lambda: tvm().regnet_y_400mf(), 96),
    "convnext_tiny": (lambda: tvm().convnext_tiny(), 96),
    "shufflenet_v2_x0_5": (lambda: tvm().shufflenet_v2_x0_5(), 96),
    "squeezenet1_0": (lambda: tvm().squeezenet1_0(), 96),
    "alexnet": (lambda: tvm().alexnet(), 224),
    "swin_t": (lambda: tvm().swin_t(), 96),
    "vit_tiny": (lambda: tvm().VisionTransformer(image_size=96, patch_size=16, num_layers=4, num_heads=3, hidden_dim=192, mlp_dim=768), 96),
    "deeplabv3_mobilenet_v3_large": (lambda: tvm().segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=False), 96),
    "lraspp_mobilenet_v3_large": (lambda: tvm().segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None), 96),
    "r3d_18": (lambda: tvm().video.r3d_18(), None),
    "r2plus1d_18": (lambda: tvm().video.r2plus1d_18(), None),
    "s3d": (lambda: tvm().video.s3d(), None),
    "resnext50_32x4d": (lambda: tvm().resnext50_32x4d(), 96),
    "swin_v2_t": (lambda: tvm().swin_v2_t(), 96),
    "maxvit_t": (lambda: tvm().maxvit_t(), 224),
    # Sequence models: (batch, 16 steps, 64 features) through two recurrent layers and a head.
    "lstm": (lambda: Recurrent(torch.nn.LSTM), (16, 64)),
    "gru": (lambda: Recurrent(torch.nn.GRU), (16, 64)),
    # Wider: 256 features and hidden units, each step's product 4x the work of `lstm`'s.
    "lstm256": (lambda: Recurrent(torch.nn.LSTM, features=256, hidden=256), (16, 256)),
}


class Recurrent(torch.nn.Module):
    """A two-layer recurrent encoder (hidden 128 unless told) with a linear head on every step."""

    def __init__(self, cell, features=64, hidden=128):
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(hidden, 32)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def export_yolo(name, out):
    """An Ultralytics detector built from its YAML (random weights), exported by Ultralytics
    itself at 160x160 with a dynamic batch (needs `pip install ultralytics`)."""
    import shutil
    from ultralytics import YOLO
    torch.manual_seed(0)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    exported = YOLO(name + ".yaml").export(format="onnx", imgsz=160, dynamic=True, simplify=False, opset=17)
    path = os.path.join(folder, "model.onnx")
    shutil.move(exported, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for i, batch in enumerate((1, 2)):
        write_case(folder, i, sess, {sess.get_inputs()[0].name: rng.random((batch, 3, 160, 160)).astype(np.float32)})
    report(name, path)


YOLO_MODELS = ["yolov8n", "yolo11n"]


def text_model(kind):
    """A small randomly initialised Hugging Face encoder or decoder (hidden 64, 2 layers)."""
    import transformers as tf
    common = dict(vocab_size=1000, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, hidden_size=64)
    if kind == "bert":
        return tf.BertModel(tf.BertConfig(**common))
    if kind == "roberta":
        return tf.RobertaModel(tf.RobertaConfig(**common))
    if kind == "distilbert":
        return tf.DistilBertModel(tf.DistilBertConfig(vocab_size=1000, n_layers=2, n_heads=4, dim=64, hidden_dim=128))
    if kind == "gpt2":
        return tf.GPT2Model(tf.GPT2Config(vocab_size=1000, n_layer=2, n_head=4, n_embd=64, use_cache=False))
    if kind == "llama":
        return tf.LlamaModel(tf.LlamaConfig(**common, num_key_value_heads=2, use_cache=False))
    if kind == "t5_encoder":
        return tf.T5EncoderModel(tf.T5Config(vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4))
    raise ValueError(kind)


# name -> architecture, for token-id inputs [batch, seq]
TEXT_MODELS = ["bert", "roberta", "distilbert", "gpt2", "llama", "t5_encoder"]
SEQ = 16


class LastHidden(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ids, mask=None):
        if mask is None:
            return self.inner(input_ids=ids).last_hidden_state
        return self.inner(input_ids=ids, attention_mask=mask).last_hidden_state


def export_masked(name, out):
    """BERT as served: token ids and an attention mask (padding at the end of the second row)."""
    torch.manual_seed(0)
    model = LastHidden(text_model("bert")).eval()
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    ids, mask = torch.randint(0, 1000, (1, SEQ)), torch.ones(1, SEQ, dtype=torch.int64)
    axes = {k: {0: "batch", 1: "sequence"} for k in ["input_ids", "attention_mask", "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask), path, input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=18, dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for i, batch in enumerate((1, 2)):
        mask = np.ones((batch, SEQ), np.int64)
        mask[-1, SEQ - 5:] = 0
        write_case(folder, i, sess, {"input_ids": rng.integers(0, 1000, (batch, SEQ)).astype(np.int64), "attention_mask": mask})
    report(name, path)


def export_text(name, out):
    torch.manual_seed(0)
    model = LastHidden(text_model(name)).eval()
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    ids = torch.randint(0, 1000, (1, SEQ))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "last_hidden_state": {0: "batch", 1: "sequence"}}
    with torch.no_grad():
        try:
            torch.onnx.export(model, (ids,), path, input_names=["input_ids"], output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=18, dynamo=False)
        except Exception as e:  # decoders' masking code only traces with the dynamo exporter
            print(f"{name}: TorchScript export failed ({str(e)[:80]}), using dynamo", flush=True)
            dims = ({0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("sequence", max=512)},)
            # A sample of batch 2: the exporter would specialise a dimension of 1.
            torch.onnx.export(model, (torch.randint(0, 1000, (2, SEQ)),), path, input_names=["input_ids"], output_names=["last_hidden_state"],
                              dynamic_shapes=dims, opset_version=18, dynamo=True, external_data=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for i, batch in enumerate((1, 2)):
        write_case(folder, i, sess, {"input_ids": rng.integers(0, 1000, (batch, SEQ)).astype(np.int64)})
    report(name, path)


def write_case(folder, i, sess, feeds):
    outputs = sess.run(None, feeds)
    case = os.path.join(folder, f"test_data_set_{i}")
    os.makedirs(case, exist_ok=True)
    for k, (name, data) in enumerate(feeds.items()):
        with open(os.path.join(case, f"input_{k}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(data, name).SerializeToString())
    for k, (meta, value) in enumerate(zip(sess.get_outputs(), outputs)):
        with open(os.path.join(case, f"output_{k}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(value, meta.name).SerializeToString())


def report(name, path):
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print(f"{name}: {os.path.getsize(path) / 1e6:.1f} MB, ops {' '.join(ops)}", flush=True)


def export(name, out):
    if name == "bert_masked":
        return export_masked(name, out)
    if name in TEXT_MODELS:
        return export_text(name, out)
    if name in YOLO_MODELS:
        return export_yolo(name, out)
    make, side = MODELS[name]
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        # Zero-initialised heads (ViT) and identity BatchNorm statistics would hide errors.
        for p in model.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.02)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    shape = (1, 3, 8, 64, 64) if side is None else (1,) + side if isinstance(side, tuple) else (1, 3, side, side)
    x = torch.randn(*shape)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=18, dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for i, batch in enumerate((1, 2)):
        write_case(folder, i, sess, {"input": rng.standard_normal((batch,) + shape[1:]).astype(np.float32)})
    report(name, path)


def main():
    # Anything option-like (`--help`) prints the usage: taken as the output folder, it would
    # export every model under a folder of that name.
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    out = sys.argv[1]
    for name in sys.argv[2:] or list(MODELS) + TEXT_MODELS + ["bert_masked"] + YOLO_MODELS:
        try:
            export(name, out)
        except Exception as e:  # one architecture's export failure should not stop the rest
            print(f"{name}: export failed: {e}", flush=True)


if __name__ == "__main__":
    main()
