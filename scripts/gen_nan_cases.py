#!/usr/bin/env python3
"""Writes tests/data/nan: small models fed NaN and infinities, with ONNX Runtime CPU's outputs
as references, in the ONNX test layout (model.onnx, test_data_set_0/input_K.pb, output_K.pb).
Each case is one op family whose kernels tend to lose NaN (max/min based activations, pooling,
reductions, fused convolution epilogues, arg/top-k selection) or a short chain of them.
tests/nan.rs runs every case on every available device.

MaxPool, GlobalMaxPool, ReduceMax and ReduceMin take their references from numpy instead (a NaN
in the window or row gives NaN, as IEEE 754's maximum and PyTorch): ONNX Runtime's answer there
follows its SIMD evaluation order (`maxps` keeps a NaN only when it comes last, so most windows
with a NaN give a number and some give NaN), which no other kernel can reproduce.

Also writes tests/data/nan/squeezenet_nan_pixel.pb: ONNX Runtime's output for the shared
squeezenet1_1 fed its test_data_set_0 input with pixel (0, 0, 100, 100) set to NaN (the test
builds that input from ../shared).

Usage: pip install onnx onnxruntime numpy; python3 scripts/gen_nan_cases.py [SHARED_DIR]
"""
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "nan")
rng = np.random.default_rng(11)
NAN, INF = np.float32(np.nan), np.float32(np.inf)


def specials(shape, every=7):
    """Random values with NaN, +Inf and -Inf sprinkled in."""
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[::every] = NAN
    flat[3::every * 3] = INF
    flat[5::every * 3] = -INF
    return x


def write(name, nodes, inputs, outputs, inits=(), opset=17, reference=None):
    """inputs: [(name, array)]; outputs: [(name, elem_type)]; reference: the outputs from the
    input arrays, where ONNX Runtime's are not the semantics to follow (see above)."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        initializer=[numpy_helper.from_array(a, n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    results = sess.run(None, {n: a for n, a in inputs}) if reference is None else reference(*[a for _, a in inputs])
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(model, os.path.join(d, "model.onnx"))
    for i, (n, a) in enumerate(inputs):
        with open(os.path.join(d, "test_data_set_0", f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a, n).SerializeToString())
    for i, ((n, _), r) in enumerate(zip(outputs, results)):
        with open(os.path.join(d, "test_data_set_0", f"output_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(r), n).SerializeToString())


F = TensorProto.FLOAT
I64 = TensorProto.INT64


def unary(op, **attrs):
    write(op.lower(), [helper.make_node(op, ["x"], ["y"], **attrs)], [("x", specials((4, 33)))], [("y", F)])


def main():
    for op in ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Sqrt", "Exp", "Softsign", "Softplus", "Elu", "Selu", "HardSigmoid", "HardSwish", "Sign", "Floor", "Round"]:
        unary(op)
    unary("LeakyRelu", alpha=0.1)
    write("clip", [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", specials((4, 33)))], [("y", F)], [("lo", np.float32(0.0)), ("hi", np.float32(6.0))])
    for op in ["Max", "Min", "Add", "Mul", "Div"]:
        write(op.lower() + "_binary", [helper.make_node(op, ["a", "b"], ["y"])], [("a", specials((4, 33), 5)), ("b", specials((4, 33), 3))], [("y", F)])
    numpy_reduce = {"ReduceMax": lambda x: [np.max(x, axis=1)], "ReduceMin": lambda x: [np.min(x, axis=1)]}
    for op in ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"]:
        write(op.lower(), [helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)] if op == "ReduceSum" else [helper.make_node(op, ["x"], ["y"], axes=[1], keepdims=0)],
              [("x", specials((6, 20), 9))], [("y", F)], [("axes", np.array([1], np.int64))] if op == "ReduceSum" else [], reference=numpy_reduce.get(op))
    img = specials((1, 4, 9, 9), 13)

    def max_pool_3x3_pad1(x):
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        return [np.max(np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3)), axis=(-2, -1))]

    write("maxpool", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], [("x", img)], [("y", F)], reference=max_pool_3x3_pad1)
    write("averagepool", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2])], [("x", img)], [("y", F)])
    write("globalmaxpool", [helper.make_node("GlobalMaxPool", ["x"], ["y"])], [("x", img)], [("y", F)], reference=lambda x: [np.max(x, axis=(2, 3), keepdims=True)])
    w = (rng.standard_normal((8, 4, 3, 3)) / 6).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    write("conv_relu", [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])], [("x", img)], [("y", F)], [("w", w), ("b", b)])
    write("conv_clip", [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], [("x", img)], [("y", F)],
          [("w", w), ("b", b), ("lo", np.float32(0.0)), ("hi", np.float32(6.0))])
    write("matmul", [helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", specials((5, 16), 17))], [("y", F)], [("w", rng.standard_normal((16, 8)).astype(np.float32))])
    write("softmax", [helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", specials((6, 10), 23))], [("y", F)])
    write("argmax", [helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)], [("x", specials((6, 10), 7))], [("y", I64)])
    write("argmin", [helper.make_node("ArgMin", ["x"], ["y"], axis=1, keepdims=0)], [("x", specials((6, 10), 7))], [("y", I64)])
    write("topk", [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [("x", specials((6, 10), 4))], [("v", F), ("i", I64)], [("k", np.array([4], np.int64))])
    write("cast_int", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)], [("x", specials((4, 33)))], [("y", TensorProto.FLOAT16)])
    # A chain as a classifier has: conv+relu, max pool, global average pool, a Gemm head.
    head = rng.standard_normal((5, 8)).astype(np.float32)
    write("classifier", [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]), helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "h"], ["y"], transB=1)],
        [("x", np.where(np.arange(324).reshape(1, 4, 9, 9) == 200, NAN, rng.standard_normal((1, 4, 9, 9))).astype(np.float32))], [("y", F)], [("w", w), ("b", b), ("h", head)])

    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    sq = os.path.join(shared, "models", "squeezenet1_1")
    if os.path.isdir(sq):
        t = onnx.TensorProto()
        with open(os.path.join(sq, "test_data_set_0", "input_0.pb"), "rb") as f:
            t.ParseFromString(f.read())
        x = numpy_helper.to_array(t).copy()
        x[0, 0, 100, 100] = np.nan
        sess = ort.InferenceSession(os.path.join(sq, "model.onnx"), providers=["CPUExecutionProvider"])
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        with open(os.path.join(ROOT, "squeezenet_nan_pixel.pb"), "wb") as f:
            f.write(numpy_helper.from_array(y, sess.get_outputs()[0].name).SerializeToString())
        print(f"squeezenet1_1 with a NaN pixel: {int(np.isnan(y).sum())} of {y.size} logits NaN")
    else:
        print(f"no {sq}: squeezenet_nan_pixel.pb not written")


if __name__ == "__main__":
    main()
