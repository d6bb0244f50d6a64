#!/usr/bin/env python3
"""Writes the project's own test models under tests/data/models, in the layout of
../shared/models. unet_tiny: a small encoder-decoder segmentation net (model.onnx with a dynamic `batch`, test_data_set_0 at batch 1 and
test_data_set_1 at batch 2, references from ONNX Runtime CPU). It uses the ops the four shared
models lack and real models have: constant Pad, standalone BatchNormalization, ConvTranspose,
bilinear and nearest Resize, variadic Sum, InstanceNormalization, Split, DepthToSpace, softmax
over channels. Weights are random (fixed seed), scaled so each Conv output has about unit variance.
mixed_f16: f16 weights and tensors with Casts at the edges, as fp16 exports have.
video3d: 3-D convolutions (one grouped), pooling and ConvTranspose, as video and volumetric nets have.

Usage: pip install onnx onnxruntime numpy; python3 scripts/gen_test_models.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "models")
inits, nodes = [], []


def const(name, array):
    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    inits.append(numpy_helper.from_array(array, name))
    return name


def conv(x, cin, cout, k, name, **attrs):
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) / np.sqrt(cin * k * k)
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    nodes.append(helper.make_node("Conv", [x, const(name + ".w", w), const(name + ".b", b)], [name], **attrs))
    return name


def node(op, inputs, name, outputs=None, **attrs):
    # Node names double as their output names.
    nodes.append(helper.make_node(op, inputs, outputs or [name], name=name, **attrs))
    return name


x = node("Pad", ["input", const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), const("pad_value", np.float32(0.0))], "padded", mode="constant")
e1 = node("Relu", [conv(x, 3, 8, 3, "enc1")], "e1")
p1 = node("MaxPool", [e1], "pool1", kernel_shape=[2, 2], strides=[2, 2])
e2 = node("Relu", [conv(p1, 8, 16, 3, "enc2", pads=[1, 1, 1, 1])], "e2")
# Batch norm after the activation: nothing to fold it into.
bn = node("BatchNormalization", [e2, const("bn.scale", 1 + 0.1 * rng.standard_normal(16).astype(np.float32)), const("bn.bias", 0.1 * rng.standard_normal(16).astype(np.float32)),
          const("bn.mean", 0.5 + 0.1 * rng.standard_normal(16).astype(np.float32)), const("bn.var", 0.5 + rng.random(16).astype(np.float32))], "bn", epsilon=1e-5)
wt = (rng.standard_normal((16, 8, 2, 2)) / np.sqrt(16 * 4 / 4)).astype(np.float32)
up1 = node("ConvTranspose", [bn, const("up1.w", wt), const("up1.b", (0.1 * rng.standard_normal(8)).astype(np.float32))], "up1", strides=[2, 2], kernel_shape=[2, 2])
bilinear = node("Resize", [bn, "", const("scales2", np.array([1, 1, 2, 2], np.float32))], "bilinear", mode="linear", coordinate_transformation_mode="half_pixel")
up2 = conv(bilinear, 16, 8, 1, "up2")
s = node("Sum", [up1, up2, e1], "sum")
inorm = node("InstanceNormalization", [s, const("in.scale", 1 + 0.1 * rng.standard_normal(8).astype(np.float32)), const("in.bias", 0.1 * rng.standard_normal(8).astype(np.float32))], "inorm", epsilon=1e-5)
node("Split", [inorm, const("halves", np.array([4, 4], np.int64))], "split", outputs=["value", "gate"], axis=1)
glu = node("Mul", ["value", node("Sigmoid", ["gate"], "gate_sig")], "glu")
logits = conv(glu, 4, 3, 1, "head")
node("Softmax", [logits], "probs", axis=1)
# A 2x sub-pixel upsampling of a 12-channel map (nearest-resized first), as super-resolution heads do.
near = node("Resize", [glu, "", const("scales_half", np.array([1, 1, 0.5, 0.5], np.float32))], "near", mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
node("DepthToSpace", [conv(near, 4, 12, 3, "sr", pads=[1, 1, 1, 1])], "subpixel", blocksize=2, mode="CRD")

graph = helper.make_graph(
    nodes, "unet_tiny",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3, 32, 32]), helper.make_tensor_value_info("subpixel", TensorProto.FLOAT, ["batch", 3, 32, 32])],
    inits,
)


def write(name, graph, make_inputs):
    """Saves `graph` as tests/data/models/NAME with ONNX Runtime's outputs at batch 1 and 2."""
    out = os.path.join(ROOT, name)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hetsched gen_test_models.py")
    onnx.checker.check_model(model, full_check=True)
    os.makedirs(out, exist_ok=True)
    onnx.save(model, os.path.join(out, "model.onnx"))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for i, batch in enumerate([1, 2]):
        d = os.path.join(out, f"test_data_set_{i}")
        os.makedirs(d, exist_ok=True)
        feeds = make_inputs(batch)
        for k, (n, v) in enumerate(feeds.items()):
            with open(os.path.join(d, f"input_{k}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(v, n).SerializeToString())
        names = [o.name for o in graph.output]
        for k, (n, v) in enumerate(zip(names, session.run(None, feeds))):
            with open(os.path.join(d, f"output_{k}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(v, n).SerializeToString())
    print("wrote", out, "with onnxruntime", ort.__version__)


write("unet_tiny", graph, lambda b: {"input": rng.standard_normal((b, 3, 32, 32)).astype(np.float32)})

# mixed_f16: a model stored in half precision, as fp16 exports are: f16 weights and an f16 image
# input, a Cast from an f32 input, f16 layer norm, MatMuls, softmax, Conv and MaxPool, a Cast
# back to f32 on one output and an f16 output.
inits, nodes = [], []
D = 32
h = lambda a: np.asarray(a, dtype=np.float16)
const("w1", h(rng.standard_normal((D, 64)) / np.sqrt(D)))
const("b1", h(0.1 * rng.standard_normal(64)))
const("w2", h(rng.standard_normal((64, D)) / 8))
const("ln.g", h(1 + 0.1 * rng.standard_normal(D)))
const("ln.b", h(0.1 * rng.standard_normal(D)))
const("cw", h(rng.standard_normal((8, 4, 3, 3)) / 6))
const("cb", h(0.1 * rng.standard_normal(8)))
node("Cast", ["x"], "xh", to=TensorProto.FLOAT16)
node("LayerNormalization", ["xh", "ln.g", "ln.b"], "ln", axis=-1)
node("Add", [node("MatMul", ["ln", "w1"], "h1"), "b1"], "h2")
node("MatMul", [node("Relu", ["h2"], "h3"), "w2"], "h4")
node("Softmax", [node("Add", ["h4", "xh"], "h5")], "sm", axis=-1)
node("Cast", ["sm"], "y", to=TensorProto.FLOAT)
node("MaxPool", [node("Relu", [node("Conv", ["img", "cw", "cb"], "co", pads=[1, 1, 1, 1])], "cr")], "z", kernel_shape=[2, 2], strides=[2, 2])
graph = helper.make_graph(
    nodes, "mixed_f16",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, D]), helper.make_tensor_value_info("img", TensorProto.FLOAT16, ["batch", 4, 16, 16])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, D]), helper.make_tensor_value_info("z", TensorProto.FLOAT16, ["batch", 8, 8, 8])],
    inits,
)
write("mixed_f16", graph, lambda b: {"x": rng.standard_normal((b, 8, D)).astype(np.float32), "img": h(rng.standard_normal((b, 4, 16, 16)))})

# video3d: a small 3-D (video / volumetric) net: strided, padded and grouped 3-D convolutions, 3-D max and
# average pooling, a pointwise 3-D convolution, a strided 3-D ConvTranspose, global pooling and a
# linear head, as in R3D / C3D classifiers and 3-D U-Nets.
inits, nodes = [], []


def conv3d(x, cin, cout, k, name, group=1, **attrs):
    w = rng.standard_normal((cout, cin // group) + tuple(k)).astype(np.float32) / np.sqrt(cin // group * np.prod(k))
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    nodes.append(helper.make_node("Conv", [x, const(name + ".w", w), const(name + ".b", b)], [name], group=group, **attrs))
    return name


v1 = node("Relu", [conv3d("clip", 3, 8, (3, 5, 5), "stem", strides=[1, 2, 2], pads=[1, 2, 2, 1, 2, 2])], "v1")
v2 = node("MaxPool", [v1], "vpool", kernel_shape=[2, 3, 3], strides=[2, 2, 2], pads=[0, 1, 1, 0, 1, 1])
v3 = node("Relu", [conv3d(v2, 8, 16, (3, 3, 3), "block", pads=[1, 1, 1, 1, 1, 1], dilations=[1, 1, 1])], "v3")
# A grouped (channel-separated) 3-D convolution, as CSN and X3D have.
v3g = node("Relu", [conv3d(v3, 16, 16, (3, 3, 3), "grouped", group=4, pads=[1, 1, 1, 1, 1, 1])], "v3g")
v4 = conv3d(v3g, 16, 8, (1, 1, 1), "squeeze")
wt3 = (rng.standard_normal((8, 4, 2, 2, 2)) / np.sqrt(8)).astype(np.float32)
node("ConvTranspose", [v4, const("vup.w", wt3), const("vup.b", (0.1 * rng.standard_normal(4)).astype(np.float32))], "volume", strides=[2, 2, 2], kernel_shape=[2, 2, 2])
v5 = node("AveragePool", [v3], "vavg", kernel_shape=[1, 2, 2], strides=[1, 2, 2], count_include_pad=1, pads=[0, 1, 1, 0, 0, 0])
pooled = node("Flatten", [node("GlobalAveragePool", [v5], "vgap")], "vflat", axis=1)
node("Gemm", [pooled, const("fc.w", (rng.standard_normal((10, 16)) / 4).astype(np.float32)), const("fc.b", (0.1 * rng.standard_normal(10)).astype(np.float32))], "logits", transB=1)
graph = helper.make_graph(
    nodes, "video3d",
    [helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["batch", 3, 8, 24, 24])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]), helper.make_tensor_value_info("volume", TensorProto.FLOAT, ["batch", 4, 8, 12, 12])],
    inits,
)
write("video3d", graph, lambda b: {"clip": rng.standard_normal((b, 3, 8, 24, 24)).astype(np.float32)})
