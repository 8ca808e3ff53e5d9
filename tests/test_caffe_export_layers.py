"""`runner export --format caffe` for every layer type we support, checked by OpenCV's Caffe
importer (`cv2.dnn.readNetFromCaffe`, a client we did not write): per layer, and on whole nets of
the newer kinds (an Eltwise residual, BatchNorm + Scale with shared weights, Pooling and Concat,
ESPCN's pixel shuffle) through `runner predict`'s own path."""
import cv2
import numpy as np
import pytest
import torch

from runner import export
from runner.files import snapshot
from runner.infer import deploy, tiles, torch_engine
from runner.net.layers.registry import LAYERS
from sr_models import ROOT, save_initial_model
from test_caffe_model import butterfly_y, opencv_output
from test_deploy import BRANCHING_NET

INPUT = ("  - {name: data, type: Input, top: data, "
         "input_param: {shape: {dim: [1, 4, 6, 7]}}}\n")


def randomized(blobs):
    """Every blob away from its filler's start: BatchNorm statistics with a scale factor that
    is not 1 and positive variances, everything else uniform in [-1, 1)."""
    generator = np.random.default_rng(7)
    for name, arrays in blobs.items():
        if name.startswith("bn"):
            mean, variance, factor = arrays
            factor[:] = 3.0
            mean[:] = generator.uniform(-1, 1, mean.shape) * 3.0
            variance[:] = generator.uniform(0.5, 2.0, variance.shape) * 3.0
        else:
            for array in arrays:
                array[:] = generator.uniform(-1, 1, array.shape)


# layer type -> the layers after the 1x4x6x7 input `data`; the last layer's first top is the
# output compared
LAYER_NETS = {
    "Convolution": """  - {name: conv, type: Convolution, bottom: data, top: out,
     convolution_param: {num_output: 6, kernel_size: 3, pad: 2, dilation: 2, group: 2}}""",
    "Deconvolution": """  - {name: deconv, type: Deconvolution, bottom: data, top: out,
     convolution_param: {num_output: 2, kernel_size: 4, stride: 2, pad: 1, group: 2}}""",
    "Pooling": """  - {name: pool, type: Pooling, bottom: data, top: out,
     pooling_param: {pool: MAX, kernel_size: 3, stride: 2, pad: 1}}""",
    "InnerProduct": """  - {name: ip, type: InnerProduct, bottom: data, top: out,
     inner_product_param: {num_output: 5}}""",
    "ReLU": """  - {name: relu, type: ReLU, bottom: data, top: out, relu_param: {negative_slope: 0.2}}""",
    "PReLU": """  - {name: prelu, type: PReLU, bottom: data, top: out}""",
    "ELU": """  - {name: elu, type: ELU, bottom: data, top: out, elu_param: {alpha: 0.5}}""",
    "TanH": """  - {name: tanh, type: TanH, bottom: data, top: out}""",
    "Sigmoid": """  - {name: sigmoid, type: Sigmoid, bottom: data, top: out}""",
    "AbsVal": """  - {name: abs, type: AbsVal, bottom: data, top: out}""",
    "Power": """  - {name: power, type: Power, bottom: data, top: out,
     power_param: {power: 2, scale: 0.5, shift: 1}}""",
    "Exp": """  - {name: exp, type: Exp, bottom: data, top: out,
     exp_param: {base: 2, scale: 0.5, shift: 0.25}}""",
    # OpenCV's Log is ln alone: it ignores log_param (see below)
    "Log": """  - {name: abs, type: AbsVal, bottom: data, top: positive}
  - {name: log, type: Log, bottom: positive, top: out}""",
    "BNLL": """  - {name: bnll, type: BNLL, bottom: data, top: out}""",
    "Threshold": """  - {name: threshold, type: Threshold, bottom: data, top: out,
     threshold_param: {threshold: 0.1}}""",
    "Dropout": """  - {name: dropout, type: Dropout, bottom: data, top: out}""",
    "BatchNorm": """  - {name: bn, type: BatchNorm, bottom: data, top: out,
     batch_norm_param: {eps: 0.001}}""",
    "Scale": """  - {name: scale, type: Scale, bottom: data, top: out, scale_param: {bias_term: true}}""",
    "Bias": """  - {name: bias, type: Bias, bottom: data, top: out}""",
    "Eltwise": """  - {name: tanh, type: TanH, bottom: data, top: other}
  - {name: sum, type: Eltwise, bottom: [data, other, data], top: out,
     eltwise_param: {coeff: [0.5, -2, 1.5]}}""",
    "Concat": """  - {name: tanh, type: TanH, bottom: data, top: other}
  - {name: concat, type: Concat, bottom: [data, other], top: out}""",
    "Split": """  - {name: split, type: Split, bottom: data, top: [a, b]}
  - {name: sum, type: Eltwise, bottom: [a, b], top: out, eltwise_param: {operation: PROD}}""",
    "Slice": """  - {name: slice, type: Slice, bottom: data, top: [a, b], slice_param: {slice_point: 1}}
  - {name: sum, type: Eltwise, bottom: [b, b], top: out, eltwise_param: {operation: MAX}}""",
    "Crop": """  - {name: pool, type: Pooling, bottom: data, top: small,
     pooling_param: {pool: AVE, kernel_size: 3, stride: 1}}
  - {name: crop, type: Crop, bottom: [data, small], top: out, crop_param: {offset: [1, 2]}}""",
    "Reshape": """  - {name: reshape, type: Reshape, bottom: data, top: out,
     reshape_param: {shape: {dim: [0, 2, -1, 7]}}}""",
    "Flatten": """  - {name: flatten, type: Flatten, bottom: data, top: out}""",
    "Silence": """  - {name: split, type: Split, bottom: data, top: [a, b]}
  - {name: quiet, type: Silence, bottom: b}
  - {name: tanh, type: TanH, bottom: a, top: out}""",
    "Reduction": """  - {name: reduce, type: Reduction, bottom: data, top: out,
     reduction_param: {operation: SUMSQ, axis: 1, coeff: 0.5}}""",
    "PixelShuffle": """  - {name: shuffle, type: PixelShuffle, bottom: data, top: out,
     pixel_shuffle_param: {upscale_factor: 2}}""",
}

# Layer types OpenCV 4.14's Caffe importer does not run (asserted below, so the list stays
# true): the net fails to load or to compute.
OPENCV_LACKS = {"Threshold", "Bias", "Reduction"}


def test_every_supported_layer_has_an_export_case():
    assert set(LAYER_NETS) | {"HDF5Data", "Input", "EuclideanLoss"} == set(LAYERS) | \
        {"HDF5Data", "Input"}


def ours_and_opencvs(folder, layers):
    """The output of a net (the 1x4x6x7 input, then `layers`) with randomized blobs, computed by
    its deploy net here and by OpenCV from the exported pair (a cv2.error when OpenCV cannot)."""
    net_file = folder / "net.yaml"
    net_file.write_text(f"name: layers\nlayer:\n{INPUT}{layers}\n")
    model_path = save_initial_model(folder / "layer.model", net_file, edit=randomized)
    prototxt, caffemodel = export.export(model_path, folder / "caffe")
    _, deployed, net = torch_engine.trained_deploy_net(model_path, snapshot.load_model(model_path))
    data = np.random.default_rng(3).uniform(-1, 1, (1, 4, 6, 7)).astype(np.float32)
    with torch.no_grad():
        ours = net.eval()({"data": torch.from_numpy(data)})[deploy.output_blob(deployed)]
    opencv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    opencv_net.setInput(data, "data")
    theirs = opencv_net.forward()                   # the last layer's output
    assert theirs.size == ours.numel(), (theirs.shape, ours.shape)
    return ours.numpy(), theirs.reshape(ours.shape)


@pytest.mark.parametrize("layer_type", LAYER_NETS)
def test_opencv_runs_the_exported_layer_as_we_do(layer_type, tmp_path):
    try:
        ours, theirs = ours_and_opencvs(tmp_path, LAYER_NETS[layer_type])
    except cv2.error as error:
        assert layer_type in OPENCV_LACKS, f"{layer_type}: {str(error).splitlines()[-1]}"
        return
    assert layer_type not in OPENCV_LACKS, f"OpenCV runs {layer_type} now"
    difference = np.abs(theirs - ours).max()
    print(f"{layer_type}: OpenCV vs ours, max abs difference {difference:.2e}")
    assert difference < 1e-4


def test_opencv_log_ignores_caffes_base_scale_and_shift(tmp_path):
    layers = LAYER_NETS["Log"][:-1] + ",\n     log_param: {base: 10, scale: 2, shift: 0.5}}"
    ours, theirs = ours_and_opencvs(tmp_path, layers)
    assert np.abs(theirs - ours).max() > 0.1


# --------------------------------------------------------------------------- whole nets

def trained_looking(blobs):
    """The fillers' kernels, with BatchNorm statistics (scale factor 2), Scale layers and
    biases away from their starts, so that every stored value matters."""
    generator = np.random.default_rng(11)
    for name, arrays in blobs.items():
        if name.startswith("bn"):
            mean, variance, factor = arrays
            factor[:] = 2.0
            mean[:] = generator.uniform(-0.4, 0.4, mean.shape)
            variance[:] = generator.uniform(1.0, 3.0, variance.shape)
        elif name.startswith("scale"):
            arrays[0][:] = generator.uniform(0.5, 1.5, arrays[0].shape)
            arrays[1][:] = generator.uniform(-0.1, 0.1, arrays[1].shape)
        elif len(arrays) == 2:
            arrays[1][:] = generator.uniform(-0.05, 0.05, arrays[1].shape)


# name -> (net file, training data's scale (None: the net's own), LR crop of the butterfly)
SR_NETS = {"vdsr (Eltwise residual)": (ROOT / "configs" / "vdsr_net.yaml", 3, 32),
           "drrn (BatchNorm + Scale, shared weights)": (ROOT / "configs" / "drrn_net.yaml", 3,
                                                        20),
           "espcn (PixelShuffle)": (ROOT / "configs" / "espcn_net.yaml", None, 64),
           "branching (Split, Pooling, Concat)": (None, 2, 48)}


@pytest.mark.parametrize("name", SR_NETS)
def test_opencv_runs_the_newer_nets_as_runner_predict_does(name, tmp_path):
    net_file, scale, crop = SR_NETS[name]
    if net_file is None:
        net_file = tmp_path / "branching.yaml"
        net_file.write_text(BRANCHING_NET)
    model_path = save_initial_model(tmp_path / "net.model", net_file, edit=trained_looking,
                                    scale=scale or 0)
    prototxt, caffemodel = export.export(model_path, tmp_path / "caffe")
    model = torch_engine.load_for_inference(model_path)
    plane = butterfly_y()[100:100 + crop, 90:90 + crop]
    ours = tiles.super_resolve(model, plane)          # what `runner predict` computes for Y
    theirs = opencv_output(prototxt, caffemodel, model, plane)
    assert ours.shape == theirs.shape == (crop * model.scale,) * 2
    assert ours.std() > 0.05
    difference = np.abs(theirs - ours).max()
    print(f"{name}: OpenCV vs runner predict, max abs difference {difference:.2e}")
    assert difference < 1e-4
