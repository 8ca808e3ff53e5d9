"""Caffe's normalisation, branching/joining and reshaping layers against numpy references written
here from Caffe's documentation and CPU code: forward values and the gradients of bottoms and
blobs, on random shapes with Caffe's edge rules (BatchNorm's scale factor, Eltwise coefficients
and MAX ties, Crop offsets, Reshape's 0 and -1)."""
import numpy as np
import pytest
import torch

from layer_harness import assert_close, layer_net, run_layer
from runner.config import loading, schema
from runner.errors import UserError
from runner.net.builder import Net

RNG = np.random.default_rng(2016)


def random(*shape):
    return RNG.uniform(-2, 2, shape)


# --------------------------------------------------------------------------- BatchNorm

def batch_norm_reference(x, grad, eps):
    """Normalisation by the batch's statistics (biased variance) and Caffe's backward:
    (dy - mean(dy) - y * mean(dy * y)) / sqrt(var + eps), means per channel."""
    axes = (0, 2, 3)
    mean, variance = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    std = np.sqrt(variance + eps)
    y = (x - mean) / std
    x_grad = (grad - grad.mean(axes, keepdims=True)
              - y * (grad * y).mean(axes, keepdims=True)) / std
    return y, x_grad, mean.ravel(), variance.ravel()


def test_batch_norm_in_train_uses_the_batch_and_accumulates_caffes_three_blobs():
    x1, x2 = random(4, 3, 5, 6), random(4, 3, 5, 6) * 3 + 1
    layer = {"name": "bn", "type": "BatchNorm", "bottom": "x", "top": "y",
             "batch_norm_param": {"moving_average_fraction": 0.9, "eps": 1e-3}}
    net = layer_net(layer, {"x": x1.shape})
    (_, module), = net.layer_modules()
    values_per_channel = 4 * 5 * 6
    correction = values_per_channel / (values_per_channel - 1)
    expected_sums = [np.zeros(3), np.zeros(3), 0.0]
    for x in (x1, x2):
        feed = torch.tensor(x, requires_grad=True)
        top = net.forward({"x": feed})["y"]
        grad = RNG.standard_normal(x.shape)
        (top * torch.from_numpy(grad)).sum().backward()
        y, x_grad, mean, variance = batch_norm_reference(x, grad, 1e-3)
        assert_close(top.detach().numpy(), y)
        assert_close(feed.grad.numpy(), x_grad)
        expected_sums = [0.9 * expected_sums[0] + mean,
                         0.9 * expected_sums[1] + correction * variance,
                         0.9 * expected_sums[2] + 1]
        for blob, expected in zip(module.blobs(), expected_sums):
            assert_close(blob.detach().numpy(), np.reshape(expected, blob.shape))
    assert all(blob.grad is None for blob in module.blobs())      # never learned
    assert [spec[3] for spec in net.learnable_blobs()] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("scale_factor", [7.5, 0.0])
def test_batch_norm_in_test_divides_its_blobs_by_the_scale_factor(scale_factor):
    x = random(2, 3, 4, 4)
    sums_mean, sums_variance = np.array([0.3, -0.7, 1.25]), np.array([2.0, 0.5, 3.25])
    result = run_layer({"name": "bn", "type": "BatchNorm", "bottom": "x", "top": "y"},
                       {"x": x}, phase="TEST",
                       blobs=[sums_mean, sums_variance, np.array([scale_factor])])
    # Caffe: statistics = blob / scale factor, or 0 when the factor is 0
    factor = 1 / scale_factor if scale_factor else 0.0
    mean = (sums_mean * factor).reshape(1, 3, 1, 1)
    std = np.sqrt((sums_variance * factor).reshape(1, 3, 1, 1) + 1e-5)
    assert_close(result.tops[0], (x - mean) / std)
    assert_close(result.bottom_grads["x"], result.top_grads[0] / std)
    # use_global_stats in TRAIN as well (a frozen BatchNorm when fine-tuning)
    frozen = run_layer({"name": "bn", "type": "BatchNorm", "bottom": "x", "top": "y",
                        "batch_norm_param": {"use_global_stats": True}}, {"x": x},
                       blobs=[sums_mean, sums_variance, np.array([scale_factor])])
    assert_close(frozen.tops[0], result.tops[0])


def test_batch_norm_blobs_may_not_be_learned():
    layer = {"name": "bn", "type": "BatchNorm", "bottom": "x", "top": "y",
             "param": [{"lr_mult": 1}]}
    with pytest.raises(UserError, match="lr_mult must be 0"):
        layer_net(layer, {"x": (1, 2, 3, 3)})


# --------------------------------------------------------------------------- Scale and Bias

# (bottom shape, scale_param, operand shape, where the operand starts)
SCALES = [((2, 3, 4, 5), {}, (3,), 1),
          ((2, 3, 4, 5), {"axis": 2, "num_axes": 2}, (4, 5), 2),
          ((2, 3, 4, 5), {"axis": -3, "num_axes": -1}, (3, 4, 5), 1),
          ((2, 3, 4, 5), {"num_axes": 0}, (), 0),
          ((2, 3, 4, 5), {"axis": 0, "num_axes": 2}, (2, 3), 0)]


def at(operand, start, dimensions):
    return operand.reshape(operand.shape + (1,) * (dimensions - start - operand.ndim))


def reduce_to(values, start, operand_shape):
    """Sum `values` over every axis the operand does not span."""
    axes = tuple(range(start)) + tuple(range(start + len(operand_shape), values.ndim))
    return values.sum(axis=axes).reshape(operand_shape)


@pytest.mark.parametrize("shape, param, operand_shape, start", SCALES)
def test_scale_with_bias(shape, param, operand_shape, start):
    x, scale, bias = random(*shape), random(*operand_shape), random(*operand_shape)
    result = run_layer({"name": "s", "type": "Scale", "bottom": "x", "top": "y",
                        "scale_param": {**param, "bias_term": True}}, {"x": x},
                       blobs=[scale, bias])
    assert [tuple(blob.shape) for blob in result.module.blobs()] == [operand_shape] * 2
    grad = result.top_grads[0]
    assert_close(result.tops[0], x * at(scale, start, 4) + at(bias, start, 4))
    assert_close(result.bottom_grads["x"], grad * at(scale, start, 4))
    assert_close(result.blob_grads[0], reduce_to(grad * x, start, operand_shape))
    assert_close(result.blob_grads[1], reduce_to(grad, start, operand_shape))


@pytest.mark.parametrize("operand_shape, start", [((3, 4), 1), ((), 0)])
def test_scale_and_bias_by_a_second_bottom(operand_shape, start):
    x, factor = random(2, 3, 4, 5), random(*operand_shape)
    result = run_layer({"name": "s", "type": "Scale", "bottom": ["x", "f"], "top": "y"},
                       {"x": x, "f": factor})
    assert result.module.blobs() == []
    grad = result.top_grads[0]
    assert_close(result.tops[0], x * at(factor, start, 4))
    assert_close(result.bottom_grads["x"], grad * at(factor, start, 4))
    assert_close(result.bottom_grads["f"], reduce_to(grad * x, start, operand_shape))
    result = run_layer({"name": "b", "type": "Bias", "bottom": ["x", "f"], "top": "y"},
                       {"x": x, "f": factor})
    assert_close(result.tops[0], x + at(factor, start, 4))
    assert_close(result.bottom_grads["f"], reduce_to(result.top_grads[0], start,
                                                     operand_shape))


def test_learned_bias_and_the_scale_fillers():
    x = random(2, 3, 4, 5)
    result = run_layer({"name": "b", "type": "Bias", "bottom": "x", "top": "y",
                        "bias_param": {"axis": 1, "num_axes": 2,
                                       "filler": {"type": "constant", "value": 0.5}}},
                       {"x": x})
    (bias,) = result.module.blobs()
    assert tuple(bias.shape) == (3, 4) and torch.all(bias == 0.5)
    assert_close(result.tops[0], x + 0.5)
    assert_close(result.blob_grads[0], reduce_to(result.top_grads[0], 1, (3, 4)))
    # Caffe: a Scale without a filler starts as the identity, its bias at 0
    scale = run_layer({"name": "s", "type": "Scale", "bottom": "x", "top": "y",
                       "scale_param": {"bias_term": True}}, {"x": x})
    assert_close(scale.tops[0], x)


def test_scale_shape_mismatch_names_the_layer_and_both_shapes():
    with pytest.raises(UserError) as raised:
        layer_net({"name": "s", "type": "Scale", "bottom": ["x", "f"], "top": "y"},
                  {"x": (2, 3, 4, 5), "f": (4,)})
    message = str(raised.value)
    assert "layer 's' (Scale)" in message and "(2, 3, 4, 5)" in message and "(4,)" in message


# --------------------------------------------------------------------------- Eltwise

def eltwise_max_reference(bottoms, grad):
    """EltwiseLayer's MAX: between bottoms 0 and 1 the second wins ties, later bottoms only
    when strictly greater; the gradient goes to the winner."""
    winner = np.where(bottoms[0] > bottoms[1], 0, 1)
    top = np.where(winner == 0, bottoms[0], bottoms[1])
    for index, bottom in enumerate(bottoms[2:], start=2):
        winner = np.where(bottom > top, index, winner)
        top = np.maximum(top, bottom)
    return top, [grad * (winner == index) for index in range(len(bottoms))]


@pytest.mark.parametrize("operation, coeff", [("SUM", []), ("SUM", [0.5, -2.0, 3.0]),
                                              ("PROD", []), ("MAX", [])])
def test_eltwise(operation, coeff):
    # integers: MAX meets ties
    bottoms = [RNG.integers(-2, 3, (2, 3, 4, 4)).astype(float) for _ in range(3)]
    names = ["a", "b", "c"]
    param = {"operation": operation, **({"coeff": coeff} if coeff else {})}
    result = run_layer({"name": "e", "type": "Eltwise", "bottom": names, "top": "y",
                        "eltwise_param": param}, dict(zip(names, bottoms)))
    grad = result.top_grads[0]
    if operation == "SUM":
        weights = coeff or [1.0] * 3
        top = sum(weight * bottom for weight, bottom in zip(weights, bottoms))
        grads = [weight * grad for weight in weights]
    elif operation == "PROD":
        top = bottoms[0] * bottoms[1] * bottoms[2]
        grads = [grad * np.prod([other for j, other in enumerate(bottoms) if j != i], axis=0)
                 for i in range(3)]
    else:
        top, grads = eltwise_max_reference(bottoms, grad)
    assert_close(result.tops[0], top)
    for name, expected in zip(names, grads):
        assert_close(result.bottom_grads[name], expected)


@pytest.mark.parametrize("param, bottoms, problem", [
    ({"coeff": [1.0]}, {"a": (1, 2, 3, 3), "b": (1, 2, 3, 3)}, "1 coeff values for 2 bottoms"),
    ({"operation": "MAX", "coeff": [1, 2]}, {"a": (1, 2, 3, 3), "b": (1, 2, 3, 3)},
     "coeff is for operation SUM only"),
    ({}, {"a": (1, 2, 3, 3), "b": (1, 1, 3, 3)},
     "'a' is (1, 2, 3, 3), 'b' is (1, 1, 3, 3)"),
])
def test_eltwise_errors_name_the_layer(param, bottoms, problem):
    with pytest.raises(UserError) as raised:
        layer_net({"name": "sum", "type": "Eltwise", "bottom": list(bottoms), "top": "y",
                   "eltwise_param": param}, bottoms)
    assert "layer 'sum' (Eltwise)" in str(raised.value) and problem in str(raised.value)


# --------------------------------------------------------------------------- Concat, Slice, Split

@pytest.mark.parametrize("param, axis", [({}, 1), ({"axis": -1}, 3), ({"concat_dim": 2}, 2)])
def test_concat(param, axis):
    shapes = [[2, 3, 4, 5], [2, 3, 4, 5]]
    shapes[1][axis] = 2
    a, b = random(*shapes[0]), random(*shapes[1])
    result = run_layer({"name": "c", "type": "Concat", "bottom": ["a", "b"], "top": "y",
                        "concat_param": param}, {"a": a, "b": b})
    assert_close(result.tops[0], np.concatenate([a, b], axis))
    first, second = np.split(result.top_grads[0], [shapes[0][axis]], axis)
    assert_close(result.bottom_grads["a"], first)
    assert_close(result.bottom_grads["b"], second)


@pytest.mark.parametrize("param, points", [({"slice_point": [1, 4]}, [1, 4]),
                                           ({"axis": 2}, [2, 4]),
                                           ({"slice_dim": 1, "slice_point": [2, 3]}, [2, 3])])
def test_slice(param, points):
    axis = param.get("axis", param.get("slice_dim", 1))
    x = random(2, 6, 6, 3)
    result = run_layer({"name": "s", "type": "Slice", "bottom": "x", "top": ["p", "q", "r"],
                        "slice_param": param}, {"x": x})
    for ours, expected in zip(result.tops, np.split(x, points, axis)):
        assert_close(ours, expected)
    assert_close(result.bottom_grads["x"], np.concatenate(result.top_grads, axis))


def test_split_and_silence():
    x = random(2, 3, 4, 4)
    result = run_layer({"name": "s", "type": "Split", "bottom": "x", "top": ["p", "q", "r"]},
                       {"x": x})
    for top in result.tops:
        assert_close(top, x)
    assert_close(result.bottom_grads["x"], sum(result.top_grads))
    silent = run_layer({"name": "quiet", "type": "Silence", "bottom": "x"}, {"x": x})
    assert silent.tops == [] and not silent.bottom_grads["x"].any()


def test_a_blob_read_by_several_layers_sums_their_gradients():
    """Caffe inserts a Split where a blob has several readers; the gradients add up."""
    text = """layer:
  - {name: input, type: Input, top: x, input_param: {shape: {dim: [2, 3, 4, 4]}}}
  - {name: relu, type: ReLU, bottom: x, top: a}
  - {name: tanh, type: TanH, bottom: x, top: b}
  - {name: sum, type: Eltwise, bottom: [a, b, x], top: y}
"""
    net = Net(loading.parse_config(schema.NetParameter, text, "net.yaml"), "TRAIN").double()
    x = torch.tensor(random(2, 3, 4, 4), requires_grad=True)
    grad = RNG.standard_normal((2, 3, 4, 4))
    top = net.forward({"x": x})["y"]
    (top * torch.from_numpy(grad)).sum().backward()
    values = x.detach().numpy()
    assert_close(top.detach().numpy(), np.maximum(values, 0) + np.tanh(values) + values)
    assert_close(x.grad.numpy(), grad * ((values > 0) + (1 - np.tanh(values) ** 2) + 1))


# --------------------------------------------------------------------------- Crop

@pytest.mark.parametrize("param, offsets", [({}, (0, 0, 0, 0)),
                                            ({"offset": [2]}, (0, 0, 2, 2)),
                                            ({"axis": 1, "offset": [1, 0, 3]}, (0, 1, 0, 3)),
                                            ({"axis": -1, "offset": [1]}, (0, 0, 0, 1))])
def test_crop(param, offsets):
    x, reference = random(2, 4, 7, 8), random(2, 2, 4, 5)
    axis = param.get("axis", 2) % 4
    result = run_layer({"name": "c", "type": "Crop", "bottom": ["x", "ref"], "top": "y",
                        "crop_param": param}, {"x": x, "ref": reference})
    sizes = x.shape[:axis] + reference.shape[axis:]
    window = tuple(slice(offset, offset + size) for offset, size in zip(offsets, sizes))
    assert_close(result.tops[0], x[window])
    expected = np.zeros_like(x)
    expected[window] = result.top_grads[0]
    assert_close(result.bottom_grads["x"], expected)
    assert not result.bottom_grads["ref"].any()


def test_crop_beyond_the_bottom_names_both_shapes():
    with pytest.raises(UserError, match=r"layer 'c' \(Crop\): axis 3: offset 4 \+ 5 .*\(2, 1, 7, 8\)"):
        layer_net({"name": "c", "type": "Crop", "bottom": ["x", "ref"], "top": "y",
                   "crop_param": {"offset": [1, 4]}}, {"x": (2, 1, 7, 8), "ref": (2, 1, 4, 5)})


# --------------------------------------------------------------------------- Reshape, Flatten

@pytest.mark.parametrize("layer_type, param, shape", [
    ("Reshape", {"shape": {"dim": [0, -1]}}, (2, 60)),
    ("Reshape", {"shape": {"dim": [0, 0, 2, -1]}}, (2, 3, 2, 10)),
    ("Reshape", {"axis": 1, "num_axes": 1, "shape": {"dim": [3, 1]}}, (2, 3, 1, 4, 5)),
    ("Reshape", {"axis": -1, "shape": {"dim": [1, 1]}}, (2, 3, 4, 5, 1, 1)),
    ("Reshape", {"shape": {"dim": [-1]}}, (120,)),
    ("Flatten", {}, (2, 60)),
    ("Flatten", {"axis": 2}, (2, 3, 20)),
    ("Flatten", {"axis": 1, "end_axis": 2}, (2, 12, 5)),
    ("Flatten", {"axis": 0, "end_axis": -2}, (24, 5)),
])
def test_reshape_and_flatten(layer_type, param, shape):
    x = random(2, 3, 4, 5)
    result = run_layer({"name": "r", "type": layer_type, "bottom": "x", "top": "y",
                        f"{layer_type.lower()}_param": param}, {"x": x})
    assert_close(result.tops[0], x.reshape(shape))
    assert_close(result.bottom_grads["x"], result.top_grads[0].reshape(x.shape))


# --------------------------------------------------------------------------- Reduction

REDUCTIONS = {"SUM": (lambda v: v.sum(-1), lambda v: np.ones_like(v)),
              "ASUM": (lambda v: np.abs(v).sum(-1), np.sign),
              "SUMSQ": (lambda v: (v ** 2).sum(-1), lambda v: 2 * v),
              "MEAN": (lambda v: v.mean(-1), lambda v: np.full_like(v, 1 / v.shape[-1]))}


@pytest.mark.parametrize("operation", REDUCTIONS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reduction(operation, axis):
    x = random(2, 3, 4)
    first = axis % 3
    result = run_layer({"name": "r", "type": "Reduction", "bottom": "x", "top": "y",
                        "reduction_param": {"operation": operation, "axis": axis,
                                            "coeff": -1.5}}, {"x": x})
    reduce, derivative = REDUCTIONS[operation]
    values = x.reshape(*x.shape[:first], -1)
    assert_close(result.tops[0], -1.5 * reduce(values))
    grad = np.asarray(result.top_grads[0])[..., None]
    assert_close(result.bottom_grads["x"], (-1.5 * grad * derivative(values)).reshape(x.shape))


# --------------------------------------------------------------------------- loss_weight

def test_loss_weight_on_any_top_joins_the_objective():
    text = """layer:
  - {name: input, type: Input, top: [x, label], input_param: {shape: {dim: [2, 1, 4, 4]}}}
  - {name: conv, type: Convolution, bottom: x, top: y,
     convolution_param: {num_output: 1, kernel_size: 3, pad: 1, weight_filler: {type: msra}}}
  - {name: energy, type: Reduction, bottom: y, top: energy, loss_weight: 0.25,
     reduction_param: {operation: SUMSQ}}
  - {name: loss, type: EuclideanLoss, bottom: [y, label], top: loss}
"""
    net = Net(loading.parse_config(schema.NetParameter, text, "net.yaml"), "TRAIN").double()
    x, label = torch.tensor(random(2, 1, 4, 4)), torch.tensor(random(2, 1, 4, 4))
    blobs = net.forward({"x": x, "label": label})
    y = blobs["y"].detach().numpy()
    expected = 0.25 * (y ** 2).sum() + ((y - label.numpy()) ** 2).sum() / (2 * 2)
    assert_close(net.loss(blobs).item(), expected)
    assert net.loss_names == [("energy", 0.25), ("loss", 1.0)]
