"""Caffe's computing layers against references written here in numpy from Caffe's documentation
and its CPU code's arithmetic (not from our layers): forward values, and gradients of bottoms
and parameter blobs, on random shapes including Caffe's edge rules."""
import math

import numpy as np
import pytest

from layer_harness import assert_close, run_layer
from runner.config import schema

RNG = np.random.default_rng(20170606)


def random(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape)


# --------------------------------------------------------------------------- neuron layers

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# type, parameters, (forward, dtop/dbottom) of x (and y, the forward), input range
NEURONS = {
    "ReLU": ({}, lambda x: np.maximum(x, 0), lambda x, y: (x > 0) * 1.0, (-2, 2)),
    "leaky ReLU": ({"relu_param": {"negative_slope": 0.1}},
                   lambda x: np.where(x > 0, x, 0.1 * x),
                   lambda x, y: np.where(x > 0, 1.0, 0.1), (-2, 2)),
    "ELU": ({"elu_param": {"alpha": 0.7}}, lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
            lambda x, y: np.where(x > 0, 1.0, y + 0.7), (-2, 2)),
    "TanH": ({}, np.tanh, lambda x, y: 1 - y ** 2, (-2, 2)),
    "Sigmoid": ({}, sigmoid, lambda x, y: y * (1 - y), (-4, 4)),
    "AbsVal": ({}, np.abs, lambda x, y: np.sign(x), (-2, 2)),
    "BNLL": ({}, lambda x: np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x))),
             lambda x, y: sigmoid(x), (-30, 30)),
    "Power": ({"power_param": {"power": 2.5, "scale": 0.5, "shift": 1.5}},
              lambda x: (1.5 + 0.5 * x) ** 2.5,
              lambda x, y: 2.5 * 0.5 * (1.5 + 0.5 * x) ** 1.5, (-2, 2)),
    "Power scale 0": ({"power_param": {"power": 2.0, "scale": 0.0, "shift": 3.0}},
                      lambda x: np.full_like(x, 9.0), lambda x, y: 0 * x, (-2, 2)),
    "Exp": ({"exp_param": {"base": 2.0, "scale": 0.5, "shift": 1.0}},
            lambda x: 2.0 ** (1 + 0.5 * x), lambda x, y: y * math.log(2) * 0.5, (-2, 2)),
    "Exp e": ({}, np.exp, lambda x, y: y, (-2, 2)),
    "Log": ({"log_param": {"base": 10.0, "scale": 2.0, "shift": 5.0}},
            lambda x: np.log10(5 + 2 * x), lambda x, y: 2 / ((5 + 2 * x) * math.log(10)),
            (-2, 2)),
    "Log e": ({}, np.log, lambda x, y: 1 / x, (0.1, 3)),
    # Caffe has no Threshold backward; the step's gradient is zero
    "Threshold": ({"threshold_param": {"threshold": 0.3}}, lambda x: (x > 0.3) * 1.0,
                  lambda x, y: 0 * x, (-2, 2)),
}


@pytest.mark.parametrize("name", NEURONS)
def test_neuron_layer(name):
    settings, forward, derivative, (low, high) = NEURONS[name]
    layer_type = name.split()[0]
    if name == "leaky ReLU":
        layer_type = "ReLU"
    x = random(2, 3, 4, 5, low=low, high=high)
    result = run_layer({"name": "n", "type": layer_type, "bottom": "x", "top": "y", **settings},
                       {"x": x})
    y = forward(x)
    assert_close(result.tops[0], y)
    assert_close(result.bottom_grads["x"], result.top_grads[0] * derivative(x, y))


@pytest.mark.parametrize("channel_shared", [False, True])
def test_prelu(channel_shared):
    x = random(2, 3, 4, 4)
    slopes = random(1 if channel_shared else 3)
    result = run_layer({"name": "p", "type": "PReLU", "bottom": "x", "top": "y",
                        "prelu_param": {"channel_shared": channel_shared}}, {"x": x},
                       blobs=[slopes])
    per_channel = slopes.reshape(1, -1, 1, 1)
    assert_close(result.tops[0], np.where(x > 0, x, per_channel * x))
    grad = result.top_grads[0]
    assert_close(result.bottom_grads["x"], grad * np.where(x > 0, 1.0, per_channel))
    slope_grad = (grad * np.where(x > 0, 0.0, x)).sum(axis=(0, 2, 3))
    assert_close(result.blob_grads[0], slope_grad.sum(keepdims=True) if channel_shared
                 else slope_grad)


@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_dropout_scales_kept_values_in_train_and_is_the_identity_in_test(ratio):
    x = random(4, 8, 16, 16, low=0.5, high=2)
    layer = {"name": "d", "type": "Dropout", "bottom": "x", "top": "y",
             "dropout_param": {"dropout_ratio": ratio}}
    train = run_layer(layer, {"x": x})
    kept = train.tops[0] != 0
    assert abs(1 - kept.mean() - ratio) < 0.02                    # 8,192 values
    assert_close(train.tops[0], np.where(kept, x / (1 - ratio), 0))
    assert_close(train.bottom_grads["x"], np.where(kept, train.top_grads[0] / (1 - ratio), 0))
    test = run_layer(layer, {"x": x}, phase="TEST")
    assert_close(test.tops[0], x)
    assert_close(test.bottom_grads["x"], test.top_grads[0])


# --------------------------------------------------------------------------- convolution

def tap_slices(start, count, step):
    return slice(start, start + step * (count - 1) + 1, step)


def convolution_reference(x, weight, bias, stride, pad, dilation, group, grad):
    """Caffe's Convolution as a sum over kernel taps, and its adjoint for the gradients."""
    batch, channels, height, width = x.shape
    outputs, per_group, kernel_h, kernel_w = weight.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    out_h = (height + 2 * pad[0] - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * pad[1] - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    top = np.zeros((batch, outputs, out_h, out_w)) + bias.reshape(1, -1, 1, 1)
    padded_grad, weight_grad = np.zeros_like(padded), np.zeros_like(weight)
    outs_per_group = outputs // group
    for g in range(group):
        ins, outs = slice(g * per_group, (g + 1) * per_group), \
            slice(g * outs_per_group, (g + 1) * outs_per_group)
        for ky in range(kernel_h):
            for kx in range(kernel_w):
                window = (slice(None), ins, tap_slices(ky * dilation[0], out_h, stride[0]),
                          tap_slices(kx * dilation[1], out_w, stride[1]))
                patch, tap = padded[window], weight[outs, :, ky, kx]
                top[:, outs] += np.einsum("ncyx,oc->noyx", patch, tap)
                padded_grad[window] += np.einsum("noyx,oc->ncyx", grad[:, outs], tap)
                weight_grad[outs, :, ky, kx] += np.einsum("noyx,ncyx->oc", grad[:, outs], patch)
    x_grad = padded_grad[:, :, pad[0]:pad[0] + height, pad[1]:pad[1] + width]
    return top, x_grad, weight_grad, grad.sum(axis=(0, 2, 3))


def deconvolution_reference(x, weight, bias, stride, pad, dilation, group, grad):
    """Caffe's Deconvolution: every input pixel scattered through the kernel (weights (in,
    out/group, kh, kw)), `pad` cropped from each side; and its adjoint."""
    batch, channels, height, width = x.shape
    _, outs_per_group, kernel_h, kernel_w = weight.shape
    ins_per_group = channels // group
    full_h = stride[0] * (height - 1) + dilation[0] * (kernel_h - 1) + 1
    full_w = stride[1] * (width - 1) + dilation[1] * (kernel_w - 1) + 1
    full = np.zeros((batch, outs_per_group * group, full_h, full_w))
    full_grad = np.zeros_like(full)
    full_grad[:, :, pad[0]:full_h - pad[0], pad[1]:full_w - pad[1]] = grad
    x_grad, weight_grad = np.zeros_like(x), np.zeros_like(weight)
    for g in range(group):
        ins, outs = slice(g * ins_per_group, (g + 1) * ins_per_group), \
            slice(g * outs_per_group, (g + 1) * outs_per_group)
        for ky in range(kernel_h):
            for kx in range(kernel_w):
                window = (slice(None), outs, tap_slices(ky * dilation[0], height, stride[0]),
                          tap_slices(kx * dilation[1], width, stride[1]))
                tap = weight[ins, :, ky, kx]
                full[window] += np.einsum("ncyx,co->noyx", x[:, ins], tap)
                x_grad[:, ins] += np.einsum("noyx,co->ncyx", full_grad[window], tap)
                weight_grad[ins, :, ky, kx] += np.einsum("ncyx,noyx->co", x[:, ins],
                                                         full_grad[window])
    top = full[:, :, pad[0]:full_h - pad[0], pad[1]:full_w - pad[1]] + bias.reshape(1, -1, 1, 1)
    return top, x_grad, weight_grad, grad.sum(axis=(0, 2, 3))


# (channels in, num_output, kernel (h, w), stride, pad, dilation, group, input H x W)
CONVOLUTIONS = [
    (3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, (7, 6)),
    (4, 6, (3, 2), (2, 1), (0, 1), (1, 1), 2, (9, 8)),
    (4, 4, (3, 3), (1, 2), (2, 0), (2, 1), 4, (8, 9)),
    (6, 3, (2, 3), (3, 2), (1, 1), (1, 2), 3, (7, 7)),
]


def convolution_param(num_output, kernel, stride, pad, dilation, group):
    return {"num_output": num_output, "kernel_h": kernel[0], "kernel_w": kernel[1],
            "stride": list(stride), "pad": list(pad), "dilation": list(dilation),
            "group": group, "weight_filler": {"type": "gaussian"},
            "bias_filler": {"type": "gaussian"}}


@pytest.mark.parametrize("kind, reference", [("Convolution", convolution_reference),
                                             ("Deconvolution", deconvolution_reference)])
@pytest.mark.parametrize("case", CONVOLUTIONS)
def test_convolution_and_deconvolution_with_group_and_dilation(kind, reference, case):
    channels, num_output, kernel, stride, pad, dilation, group, size = case
    x = random(2, channels, *size)
    result = run_layer({"name": "c", "type": kind, "bottom": "x", "top": "y",
                        "convolution_param": convolution_param(num_output, kernel, stride, pad,
                                                               dilation, group)}, {"x": x})
    weight, bias = (blob.detach().numpy() for blob in result.module.blobs())
    top, x_grad, weight_grad, bias_grad = reference(x, weight, bias, stride, pad, dilation,
                                                    group, result.top_grads[0])
    assert_close(result.tops[0], top)
    assert_close(result.bottom_grads["x"], x_grad)
    assert_close(result.blob_grads[0], weight_grad)
    assert_close(result.blob_grads[1], bias_grad)


def test_convolution_without_bias_has_one_blob():
    result = run_layer({"name": "c", "type": "Convolution", "bottom": "x", "top": "y",
                        "convolution_param": {"num_output": 2, "kernel_size": 3,
                                              "bias_term": False}}, {"x": random(1, 1, 5, 5)})
    assert [tuple(blob.shape) for blob in result.module.blobs()] == [(2, 1, 3, 3)]


# --------------------------------------------------------------------------- pooling

def caffe_pooled_size(size, kernel, stride, pad, round_up=True):
    """PoolingLayer::Reshape: ceil (or floor) of a float division, then the last window pulled
    back inside the image when there is padding."""
    division = (size + 2 * pad - kernel) / stride
    pooled = int(math.ceil(division) if round_up else math.floor(division)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def pooling_reference(x, method, kernel, stride, pad, grad, round_up=True):
    """PoolingLayer::Forward_cpu and Backward_cpu, loop for loop."""
    batch, channels, height, width = x.shape
    out_h = caffe_pooled_size(height, kernel[0], stride[0], pad[0], round_up)
    out_w = caffe_pooled_size(width, kernel[1], stride[1], pad[1], round_up)
    top = np.zeros((batch, channels, out_h, out_w))
    x_grad = np.zeros_like(x)
    for n in range(batch):
        for c in range(channels):
            for ph in range(out_h):
                for pw in range(out_w):
                    hstart, wstart = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
                    hend = min(hstart + kernel[0], height + pad[0])
                    wend = min(wstart + kernel[1], width + pad[1])
                    pool_size = (hend - hstart) * (wend - wstart)
                    hstart, wstart = max(hstart, 0), max(wstart, 0)
                    hend, wend = min(hend, height), min(wend, width)
                    if method == "MAX":
                        best, where = -np.inf, None
                        for h in range(hstart, hend):
                            for w in range(wstart, wend):
                                if x[n, c, h, w] > best:
                                    best, where = x[n, c, h, w], (h, w)
                        top[n, c, ph, pw] = best
                        x_grad[(n, c, *where)] += grad[n, c, ph, pw]
                    else:
                        window = (n, c, slice(hstart, hend), slice(wstart, wend))
                        top[n, c, ph, pw] = x[window].sum() / pool_size
                        x_grad[window] += grad[n, c, ph, pw] / pool_size
    return top, x_grad


# (input H x W, kernel, stride, pad): the last window hanging over the edge (ceil), pulled back
# inside when it would start in the padding, rectangular windows, windows wider than the pad
POOLINGS = [((6, 6), (3, 3), (2, 2), (0, 0)),
            ((7, 5), (3, 2), (2, 2), (0, 1)),
            ((5, 5), (2, 2), (3, 3), (1, 1)),
            ((6, 7), (3, 3), (2, 3), (1, 2)),
            ((9, 4), (4, 3), (3, 1), (2, 1))]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size, kernel, stride, pad", POOLINGS)
def test_pooling_follows_caffes_ceil_rule_and_divisor(method, size, kernel, stride, pad):
    # small integers: MAX meets ties, which Caffe gives to the first maximum in scan order
    x = RNG.integers(-2, 3, (2, 3, *size)).astype(float)
    param = {"pool": method, "kernel_h": kernel[0], "kernel_w": kernel[1],
             "stride_h": stride[0], "stride_w": stride[1], "pad_h": pad[0], "pad_w": pad[1]}
    result = run_layer({"name": "p", "type": "Pooling", "bottom": "x", "top": "y",
                        "pooling_param": param}, {"x": x})
    top, x_grad = pooling_reference(x, method, kernel, stride, pad, result.top_grads[0])
    assert_close(result.tops[0], top)
    assert_close(result.bottom_grads["x"], x_grad)


def test_pooling_shape_examples_by_hand():
    def pooled(size, kernel, stride, pad=0, round_mode="CEIL"):
        result = run_layer({"name": "p", "type": "Pooling", "bottom": "x", "top": "y",
                            "pooling_param": {"kernel_size": kernel, "stride": stride,
                                              "pad": pad, "round_mode": round_mode}},
                           {"x": random(1, 1, size, size)})
        return result.tops[0].shape[2]

    assert pooled(6, 3, 2) == 3              # ceil(3 / 2) + 1; floor would give 2
    assert pooled(6, 3, 2, round_mode="FLOOR") == 2
    assert pooled(5, 2, 3, pad=1) == 2       # ceil(5 / 3) + 1 = 3, its window starts in the pad
    assert pooled(13, 3, 2) == 6 and pooled(112, 3, 2) == 56


def test_global_and_floor_pooling():
    x = random(2, 3, 5, 7)
    result = run_layer({"name": "p", "type": "Pooling", "bottom": "x", "top": "y",
                        "pooling_param": {"pool": "AVE", "global_pooling": True}}, {"x": x})
    assert_close(result.tops[0], x.mean(axis=(2, 3), keepdims=True))
    result = run_layer({"name": "p", "type": "Pooling", "bottom": "x", "top": "y",
                        "pooling_param": {"kernel_size": 2, "stride": 2,
                                          "round_mode": "FLOOR"}}, {"x": x})
    top, x_grad = pooling_reference(x, "MAX", (2, 2), (2, 2), (0, 0), result.top_grads[0],
                                    round_up=False)
    assert_close(result.tops[0], top)
    assert_close(result.bottom_grads["x"], x_grad)


# --------------------------------------------------------------------------- inner product

@pytest.mark.parametrize("axis, transpose", [(1, False), (1, True), (2, False), (-1, True)])
def test_inner_product(axis, transpose):
    x = random(2, 3, 4, 5)
    result = run_layer({"name": "ip", "type": "InnerProduct", "bottom": "x", "top": "y",
                        "inner_product_param": {"num_output": 6, "axis": axis,
                                                "transpose": transpose,
                                                "weight_filler": {"type": "xavier"},
                                                "bias_filler": {"type": "gaussian"}}},
                       {"x": x})
    weight, bias = (blob.detach().numpy() for blob in result.module.blobs())
    first = axis % 4
    leading, inputs = x.shape[:first], math.prod(x.shape[first:])
    matrix = weight if transpose else weight.T                   # (inputs, outputs)
    assert matrix.shape == (inputs, 6)
    vectors = x.reshape(-1, inputs)
    assert_close(result.tops[0], (vectors @ matrix + bias).reshape(*leading, 6))
    grad = result.top_grads[0].reshape(-1, 6)
    assert_close(result.bottom_grads["x"], (grad @ matrix.T).reshape(x.shape))
    weight_grad = vectors.T @ grad
    assert_close(result.blob_grads[0], weight_grad if transpose else weight_grad.T)
    assert_close(result.blob_grads[1], grad.sum(axis=0))


# --------------------------------------------------------------------------- pixel shuffle

@pytest.mark.parametrize("factor, channels", [(3, 1), (2, 3)])
def test_pixel_shuffle_and_its_caffe_deconvolution(factor, channels):
    x = random(2, channels * factor ** 2, 4, 5)
    result = run_layer({"name": "ps", "type": "PixelShuffle", "bottom": "x", "top": "y",
                        "pixel_shuffle_param": {"upscale_factor": factor}}, {"x": x})
    # ESPCN's periodic shuffle: channel c*r*r + i*r + j is pixel (i, j) of each r x r block
    blocks = x.reshape(2, channels, factor, factor, 4, 5).transpose(0, 1, 4, 2, 5, 3)
    assert_close(result.tops[0], blocks.reshape(2, channels, 4 * factor, 5 * factor))
    back = result.top_grads[0].reshape(2, channels, 4, factor, 5, factor)
    assert_close(result.bottom_grads["x"],
                 back.transpose(0, 1, 3, 5, 2, 4).reshape(x.shape))
    caffe_layer = schema.LayerParameter(name="ps", type="PixelShuffle", bottom=["x"], top=["y"])
    layer, (weight,) = result.module.caffe_form(caffe_layer)
    assert layer.type == "Deconvolution" and layer.convolution_param.group == channels
    top, _, _, _ = deconvolution_reference(x, weight.numpy().astype(float), np.zeros(channels),
                                           (factor, factor), (0, 0), (1, 1), channels,
                                           result.top_grads[0])
    assert_close(top, result.tops[0])
