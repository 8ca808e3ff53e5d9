"""Every configuration key srcaffe reads: its type, default and meaning, in one place.

Net and solver messages follow BVLC Caffe's `caffe.proto` (same names, field numbers, types and
defaults) for the subset we support, so a Caffe prototxt parses unchanged; `runner/config/caffe_proto.py`
builds the protobuf descriptor from these classes and `runner/config/proto/srcaffe.proto` is generated
from them. The prep config (YAML only) is declared the same way. Loaders validate a file into
these frozen dataclasses once (`from_mapping`); nothing downstream reads raw dicts.
"""
import dataclasses
import math
from dataclasses import dataclass, field

from runner.config import memory
from runner.errors import UserError, did_you_mean


@dataclass(frozen=True)
class ProtoEnum:
    """A protobuf enum; config files name its values (`phase: TRAIN`)."""

    name: str
    values: tuple
    numbers: tuple = ()   # each value's number where they are not 0, 1, 2, ... (V1's LayerType,
                          # ReductionOp)

    def value_numbers(self):
        """(number, value) of every value, as caffe.proto numbers them."""
        return tuple(zip(self.numbers or range(len(self.values)), self.values))


PHASE = ProtoEnum("Phase", ("TRAIN", "TEST"))
VARIANCE_NORM = ProtoEnum("VarianceNorm", ("FAN_IN", "FAN_OUT", "AVERAGE"))
DIM_CHECK_MODE = ProtoEnum("DimCheckMode", ("STRICT", "PERMISSIVE"))
POOL_METHOD = ProtoEnum("PoolMethod", ("MAX", "AVE", "STOCHASTIC"))
ROUND_MODE = ProtoEnum("RoundMode", ("CEIL", "FLOOR"))
ELTWISE_OP = ProtoEnum("EltwiseOp", ("PROD", "SUM", "MAX"))
REDUCTION_OP = ProtoEnum("ReductionOp", ("SUM", "ASUM", "SUMSQ", "MEAN"), numbers=(1, 2, 3, 4))
SOLVER_MODE = ProtoEnum("SolverMode", ("CPU", "GPU"))
DIM_CHECK_MODE = ProtoEnum("DimCheckMode", ("STRICT", "PERMISSIVE"))

# proto scalar type -> the Python type a config value must have
SCALAR_TYPES = {"string": str, "bool": bool, "float": float, "double": float,
                "int32": int, "uint32": int, "int64": int}
# the values each integer type holds: YAML is held to them exactly as protobuf holds a prototxt
INTEGER_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1),
                  "int64": (-2 ** 63, 2 ** 63 - 1)}
FLOAT32_MAX = 3.4028234663852886e38


def option(number, kind, doc, default=None, *, repeated=False, choices=(), minimum=None,
           packed=False, checked_first=False, allocates=False):
    """Declare one key: Caffe field number, proto type (or enum/message class), one-line meaning.

    `default` is Caffe's default; None means "not set" (proto2 has_field false).
    `choices` restricts a string's values; `minimum` bounds a number from below.
    `checked_first`: validated before the message's other keys (a layer's type, so that an
    unsupported type is reported as such, not as an unknown key of its parameters).
    `allocates`: the net holds at least this many float32 values because of the key alone
    (channels, samples), so a value whose floats exceed the machine's memory is refused here.
    """
    metadata = {"number": number, "kind": kind, "doc": doc, "repeated": repeated,
                "choices": tuple(choices), "minimum": minimum, "packed": packed,
                "checked_first": checked_first, "allocates": allocates}
    if repeated:
        items = tuple(default or ())
        return field(default_factory=lambda: list(items), metadata=metadata)
    if isinstance(kind, type):
        return field(default_factory=kind if default is None else lambda: default,
                     metadata=metadata)
    return field(default=default, metadata=metadata)


def keys(message_class):
    """The declared keys of a schema class, in declaration order."""
    return dataclasses.fields(message_class)


# --------------------------------------------------------------------------- net messages

@dataclass(frozen=True)
class BlobShape:
    dim: list = option(1, "int64", "size of each axis (N, C, H, W)", repeated=True, packed=True)


@dataclass(frozen=True)
class BlobProto:
    shape: BlobShape = option(7, BlobShape, "the blob's shape")
    data: list = option(5, "float", "the values, row-major", repeated=True, packed=True)
    num: int = option(1, "int32", "legacy 4-D shape: N", 0)
    channels: int = option(2, "int32", "legacy 4-D shape: C", 0)
    height: int = option(3, "int32", "legacy 4-D shape: H", 0)
    width: int = option(4, "int32", "legacy 4-D shape: W", 0)


FILLER_TYPES = ("constant", "gaussian", "msra", "xavier", "uniform", "bilinear",
                "positive_unitball")


@dataclass(frozen=True)
class FillerParameter:
    type: str = option(1, "string", "how to initialise a blob", "constant", choices=FILLER_TYPES)
    value: float = option(2, "float", "constant: the value", 0.0)
    min: float = option(3, "float", "uniform: lower bound", 0.0)
    max: float = option(4, "float", "uniform: upper bound", 1.0)
    mean: float = option(5, "float", "gaussian: mean", 0.0)
    std: float = option(6, "float", "gaussian: standard deviation", 1.0)
    sparse: int = option(7, "int32", "gaussian: expected non-zero inputs per output (the rest "
                         "zeroed); -1: dense", -1)
    variance_norm: str = option(8, VARIANCE_NORM, "xavier/msra: normalise by fan_in, fan_out or "
                                "their average", "FAN_IN")


@dataclass(frozen=True)
class NetStateRule:
    phase: str = option(1, PHASE, "the layer exists only in this phase (TRAIN or TEST)")


@dataclass(frozen=True)
class ParamSpec:
    name: str = option(1, "string", "share this blob with every other blob of the same name "
                       "(the first layer that names it owns it)")
    share_mode: str = option(2, DIM_CHECK_MODE, "STRICT: a shared blob must have the owner's "
                             "shape; PERMISSIVE: only its number of values")
    lr_mult: float = option(3, "float", "multiplier on the solver's learning rate for this blob",
                            1.0)
    decay_mult: float = option(4, "float", "multiplier on the solver's weight_decay for this "
                               "blob", 1.0)


@dataclass(frozen=True)
class ConvolutionParameter:
    num_output: int = option(1, "uint32", "number of output channels", minimum=1,
                             allocates=True)
    bias_term: bool = option(2, "bool", "whether to add a learned bias", True)
    pad: list = option(3, "uint32", "zero padding on each side (one value, or H and W)",
                       repeated=True)
    kernel_size: list = option(4, "uint32", "kernel side (one value, or H and W)",
                               repeated=True)
    group: int = option(5, "uint32", "number of groups the channels are split into", 1,
                        minimum=1)
    stride: list = option(6, "uint32", "stride (one value, or H and W); a Deconvolution's "
                          "upscaling factor", repeated=True)
    weight_filler: FillerParameter = option(7, FillerParameter, "initial weights")
    bias_filler: FillerParameter = option(8, FillerParameter, "initial biases")
    dilation: list = option(18, "uint32", "kernel dilation (one value, or H and W)",
                            repeated=True)
    pad_h: int = option(9, "uint32", "zero padding on top and bottom (instead of pad)", 0)
    pad_w: int = option(10, "uint32", "zero padding on left and right (instead of pad)", 0)
    kernel_h: int = option(11, "uint32", "kernel height (with kernel_w, instead of kernel_size)")
    kernel_w: int = option(12, "uint32", "kernel width (with kernel_h, instead of kernel_size)")
    stride_h: int = option(13, "uint32", "vertical stride (with stride_w, instead of stride)")
    stride_w: int = option(14, "uint32", "horizontal stride (with stride_h, instead of stride)")


@dataclass(frozen=True)
class HDF5DataParameter:
    source: str = option(1, "string", "text file listing the .h5 files to read, one per line")
    batch_size: int = option(2, "uint32", "samples per batch", minimum=1, allocates=True)
    shuffle: bool = option(3, "bool", "visit samples in a new random order every epoch", False)
    dataset: list = option(1000, "string", "srcaffe extension: the HDF5 dataset read for each "
                           "top, in order (default: the top names, as in Caffe)", repeated=True)


@dataclass(frozen=True)
class InputParameter:
    shape: list = option(1, BlobShape, "shape of each top", repeated=True)


@dataclass(frozen=True)
class PReLUParameter:
    filler: FillerParameter = option(1, FillerParameter, "initial slopes",
                                     FillerParameter(type="constant", value=0.25))
    channel_shared: bool = option(2, "bool", "one slope for all channels", False)


@dataclass(frozen=True)
class ReLUParameter:
    negative_slope: float = option(1, "float", "slope for negative inputs (leaky ReLU)", 0.0)


@dataclass(frozen=True)
class PoolingParameter:
    pool: str = option(1, POOL_METHOD, "MAX or AVE (STOCHASTIC is not supported)", "MAX")
    kernel_size: int = option(2, "uint32", "window side (or kernel_h and kernel_w)")
    stride: int = option(3, "uint32", "window step (or stride_h and stride_w)", 1)
    pad: int = option(4, "uint32", "implicit padding on each side (or pad_h and pad_w)", 0)
    kernel_h: int = option(5, "uint32", "window height")
    kernel_w: int = option(6, "uint32", "window width")
    stride_h: int = option(7, "uint32", "vertical step")
    stride_w: int = option(8, "uint32", "horizontal step")
    pad_h: int = option(9, "uint32", "padding on top and bottom", 0)
    pad_w: int = option(10, "uint32", "padding on left and right", 0)
    global_pooling: bool = option(12, "bool", "pool over the whole height and width", False)
    round_mode: str = option(13, ROUND_MODE, "output size rounding: CEIL (Caffe's rule, the "
                             "last window may hang over the edge) or FLOOR", "CEIL")


@dataclass(frozen=True)
class InnerProductParameter:
    num_output: int = option(1, "uint32", "number of outputs", minimum=1, allocates=True)
    bias_term: bool = option(2, "bool", "whether to add a learned bias", True)
    weight_filler: FillerParameter = option(3, FillerParameter, "initial weights")
    bias_filler: FillerParameter = option(4, FillerParameter, "initial biases")
    axis: int = option(5, "int32", "first axis flattened into each input vector (negative: "
                       "from the end)", 1)
    transpose: bool = option(6, "bool", "weights stored (inputs, outputs) instead of "
                             "(outputs, inputs)", False)


@dataclass(frozen=True)
class ELUParameter:
    alpha: float = option(1, "float", "x < 0: alpha * (exp(x) - 1)", 1.0)


@dataclass(frozen=True)
class PowerParameter:
    power: float = option(1, "float", "y = (shift + scale * x) ^ power", 1.0)
    scale: float = option(2, "float", "multiplier of x", 1.0)
    shift: float = option(3, "float", "added to scale * x", 0.0)


@dataclass(frozen=True)
class ExpParameter:
    base: float = option(1, "float", "y = base ^ (shift + scale * x); -1: e", -1.0)
    scale: float = option(2, "float", "multiplier of x", 1.0)
    shift: float = option(3, "float", "added to scale * x", 0.0)


@dataclass(frozen=True)
class LogParameter:
    base: float = option(1, "float", "y = log_base(shift + scale * x); -1: e", -1.0)
    scale: float = option(2, "float", "multiplier of x", 1.0)
    shift: float = option(3, "float", "added to scale * x", 0.0)


@dataclass(frozen=True)
class ThresholdParameter:
    threshold: float = option(1, "float", "y = 1 where x > threshold, else 0", 0.0)


@dataclass(frozen=True)
class DropoutParameter:
    dropout_ratio: float = option(1, "float", "TRAIN: share of values zeroed (the rest scaled "
                                  "by 1 / (1 - ratio)); TEST: identity", 0.5)


@dataclass(frozen=True)
class ScaleParameter:
    axis: int = option(1, "int32", "first axis of the bottom the scale spans (negative: from "
                       "the end)", 1)
    num_axes: int = option(2, "int32", "axes the learned scale spans (-1: all from axis on, 0: "
                           "a scalar); ignored with a second bottom", 1)
    filler: FillerParameter = option(3, FillerParameter, "initial scale (default: constant 1)")
    bias_term: bool = option(4, "bool", "also add a learned bias of the scale's shape", False)
    bias_filler: FillerParameter = option(5, FillerParameter, "initial bias")


@dataclass(frozen=True)
class BiasParameter:
    axis: int = option(1, "int32", "first axis of the bottom the bias spans (negative: from "
                       "the end)", 1)
    num_axes: int = option(2, "int32", "axes the learned bias spans (-1: all from axis on, 0: "
                           "a scalar); ignored with a second bottom", 1)
    filler: FillerParameter = option(3, FillerParameter, "initial bias")


@dataclass(frozen=True)
class BatchNormParameter:
    use_global_stats: bool = option(1, "bool", "normalise by the stored statistics instead of "
                                    "the batch's (default: false in TRAIN, true in TEST)")
    moving_average_fraction: float = option(2, "float", "decay of the stored statistics per "
                                            "TRAIN pass", 0.999)
    eps: float = option(3, "float", "added to the variance", 1e-5)


@dataclass(frozen=True)
class EltwiseParameter:
    operation: str = option(1, ELTWISE_OP, "PROD, SUM or MAX of the bottoms", "SUM")
    coeff: list = option(2, "float", "SUM: one coefficient per bottom (default: all 1)",
                         repeated=True)
    stable_prod_grad: bool = option(3, "bool", "PROD: gradient by products of the other "
                                    "bottoms (the only way here; false is accepted)", True)


@dataclass(frozen=True)
class ConcatParameter:
    concat_dim: int = option(1, "uint32", "deprecated: the axis (use axis)")
    axis: int = option(2, "int32", "axis the bottoms are joined along (negative: from the end)",
                       1)


@dataclass(frozen=True)
class SliceParameter:
    slice_dim: int = option(1, "uint32", "deprecated: the axis (use axis)")
    slice_point: list = option(2, "uint32", "indices where the axis is cut (default: equal "
                               "parts, one per top)", repeated=True)
    axis: int = option(3, "int32", "axis that is cut (negative: from the end)", 1)


@dataclass(frozen=True)
class CropParameter:
    axis: int = option(1, "int32", "first axis cropped to the second bottom's size", 2)
    offset: list = option(2, "uint32", "start of the crop: one for every cropped axis, or one "
                          "per axis", repeated=True)


@dataclass(frozen=True)
class ReshapeParameter:
    shape: BlobShape = option(1, BlobShape, "new shape: 0 copies the bottom's axis, -1 is "
                              "inferred")
    axis: int = option(2, "int32", "first bottom axis replaced (negative: from the end)", 0)
    num_axes: int = option(3, "int32", "bottom axes replaced (-1: all from axis on)", -1)


@dataclass(frozen=True)
class FlattenParameter:
    axis: int = option(1, "int32", "first axis flattened", 1)
    end_axis: int = option(2, "int32", "last axis flattened (negative: from the end)", -1)


@dataclass(frozen=True)
class ReductionParameter:
    operation: str = option(1, REDUCTION_OP, "SUM, ASUM (of absolute values), SUMSQ (of "
                            "squares) or MEAN", "SUM")
    axis: int = option(2, "int32", "first axis reduced; all following axes are reduced too", 0)
    coeff: float = option(3, "float", "multiplier of the result", 1.0)


@dataclass(frozen=True)
class PixelShuffleParameter:
    upscale_factor: int = option(1, "uint32", "r: (N, C*r*r, H, W) becomes (N, C, H*r, W*r)",
                                 minimum=1)


LAYER_TYPES = ("HDF5Data", "Input", "Convolution", "Deconvolution", "Pooling", "InnerProduct",
               "ReLU", "PReLU", "ELU", "TanH", "Sigmoid", "AbsVal", "Power", "Exp", "Log",
               "BNLL", "Threshold", "Dropout", "BatchNorm", "Scale", "Bias", "Eltwise",
               "Concat", "Split", "Slice", "Crop", "Reshape", "Flatten", "Silence",
               "Reduction", "PixelShuffle", "EuclideanLoss")


@dataclass(frozen=True)
class LayerParameter:
    name: str = option(1, "string", "the layer's name (weights are matched by it)", "")
    type: str = option(2, "string", "the layer type", choices=LAYER_TYPES, checked_first=True)
    bottom: list = option(3, "string", "names of the input blobs", repeated=True)
    top: list = option(4, "string", "names of the output blobs", repeated=True)
    phase: str = option(10, PHASE, "the phase the layer computes in (default: its net's)")
    loss_weight: list = option(5, "float", "weight of each top in the objective (loss layers: 1)",
                               repeated=True)
    param: list = option(6, ParamSpec, "lr_mult/decay_mult per parameter blob (weights, then "
                         "bias)", repeated=True)
    blobs: list = option(7, BlobProto, "stored parameter values (in .caffemodel files)",
                         repeated=True)
    include: list = option(8, NetStateRule, "include the layer only when a rule matches",
                           repeated=True)
    exclude: list = option(9, NetStateRule, "exclude the layer when a rule matches",
                           repeated=True)
    concat_param: ConcatParameter = option(104, ConcatParameter, "Concat settings")
    convolution_param: ConvolutionParameter = option(106, ConvolutionParameter,
                                                     "Convolution/Deconvolution settings")
    dropout_param: DropoutParameter = option(108, DropoutParameter, "Dropout settings")
    eltwise_param: EltwiseParameter = option(110, EltwiseParameter, "Eltwise settings")
    exp_param: ExpParameter = option(111, ExpParameter, "Exp settings")
    hdf5_data_param: HDF5DataParameter = option(112, HDF5DataParameter, "HDF5Data settings")
    inner_product_param: InnerProductParameter = option(117, InnerProductParameter,
                                                        "InnerProduct settings")
    pooling_param: PoolingParameter = option(121, PoolingParameter, "Pooling settings")
    power_param: PowerParameter = option(122, PowerParameter, "Power settings")
    relu_param: ReLUParameter = option(123, ReLUParameter, "ReLU settings")
    slice_param: SliceParameter = option(126, SliceParameter, "Slice settings")
    threshold_param: ThresholdParameter = option(128, ThresholdParameter, "Threshold settings")
    prelu_param: PReLUParameter = option(131, PReLUParameter, "PReLU settings")
    reshape_param: ReshapeParameter = option(133, ReshapeParameter, "Reshape settings")
    log_param: LogParameter = option(134, LogParameter, "Log settings")
    flatten_param: FlattenParameter = option(135, FlattenParameter, "Flatten settings")
    reduction_param: ReductionParameter = option(136, ReductionParameter, "Reduction settings")
    batch_norm_param: BatchNormParameter = option(139, BatchNormParameter, "BatchNorm settings")
    elu_param: ELUParameter = option(140, ELUParameter, "ELU settings")
    bias_param: BiasParameter = option(141, BiasParameter, "Bias settings")
    scale_param: ScaleParameter = option(142, ScaleParameter, "Scale settings")
    input_param: InputParameter = option(143, InputParameter, "Input settings")
    crop_param: CropParameter = option(144, CropParameter, "Crop settings")
    pixel_shuffle_param: PixelShuffleParameter = option(
        1001, PixelShuffleParameter, "srcaffe's PixelShuffle settings (not Caffe's)")


# --------------------------------------------------------------------------- legacy net forms
# Read so that old files load; runner/config/upgrade.py turns them into the current form, and
# nothing downstream sees them.

# Caffe's V1LayerParameter.LayerType: each enum value, its number in caffe.proto, and the layer
# type Caffe's UpgradeV1LayerType names it (types srcaffe does not build are refused by that
# name, as current files naming them are). V1 had no PReLU.
V1_LAYER_TYPES = {
    "NONE": (0, None), "ABSVAL": (35, "AbsVal"), "ACCURACY": (1, "Accuracy"),
    "ARGMAX": (30, "ArgMax"), "BNLL": (2, "BNLL"), "CONCAT": (3, "Concat"),
    "CONTRASTIVE_LOSS": (37, "ContrastiveLoss"), "CONVOLUTION": (4, "Convolution"),
    "DATA": (5, "Data"), "DECONVOLUTION": (39, "Deconvolution"), "DROPOUT": (6, "Dropout"),
    "DUMMY_DATA": (32, "DummyData"), "EUCLIDEAN_LOSS": (7, "EuclideanLoss"),
    "ELTWISE": (25, "Eltwise"), "EXP": (38, "Exp"), "FLATTEN": (8, "Flatten"),
    "HDF5_DATA": (9, "HDF5Data"), "HDF5_OUTPUT": (10, "HDF5Output"),
    "HINGE_LOSS": (28, "HingeLoss"), "IM2COL": (11, "Im2col"), "IMAGE_DATA": (12, "ImageData"),
    "INFOGAIN_LOSS": (13, "InfogainLoss"), "INNER_PRODUCT": (14, "InnerProduct"),
    "LRN": (15, "LRN"), "MEMORY_DATA": (29, "MemoryData"),
    "MULTINOMIAL_LOGISTIC_LOSS": (16, "MultinomialLogisticLoss"), "MVN": (34, "MVN"),
    "POOLING": (17, "Pooling"), "POWER": (26, "Power"), "RELU": (18, "ReLU"),
    "SIGMOID": (19, "Sigmoid"), "SIGMOID_CROSS_ENTROPY_LOSS": (27, "SigmoidCrossEntropyLoss"),
    "SILENCE": (36, "Silence"), "SOFTMAX": (20, "Softmax"), "SOFTMAX_LOSS": (21, "SoftmaxWithLoss"),
    "SPLIT": (22, "Split"), "SLICE": (33, "Slice"), "TANH": (23, "TanH"),
    "WINDOW_DATA": (24, "WindowData"), "THRESHOLD": (31, "Threshold"),
}
V1_LAYER_TYPE = ProtoEnum("LayerType", tuple(V1_LAYER_TYPES),
                          tuple(number for number, _ in V1_LAYER_TYPES.values()))
# V1LayerParameter's per-type parameter fields and their numbers in caffe.proto. They hold the
# same messages as LayerParameter's fields of the same names: each one LayerParameter declares
# is declared in V1LayerParameter too (at its V1 number), the others name a layer type srcaffe
# does not build.
V1_LAYER_PARAMS = {
    "accuracy_param": 27, "argmax_param": 23, "concat_param": 9, "contrastive_loss_param": 40,
    "convolution_param": 10, "data_param": 11, "dropout_param": 12, "dummy_data_param": 26,
    "eltwise_param": 24, "exp_param": 41, "hdf5_data_param": 13, "hdf5_output_param": 14,
    "hinge_loss_param": 29, "image_data_param": 15, "infogain_loss_param": 16,
    "inner_product_param": 17, "lrn_param": 18, "memory_data_param": 22, "mvn_param": 34,
    "pooling_param": 19, "power_param": 21, "relu_param": 30, "sigmoid_param": 38,
    "softmax_param": 39, "slice_param": 31, "tanh_param": 37, "threshold_param": 25,
    "window_data_param": 20, "transform_param": 36, "loss_param": 42,
}


def _v1_layer_parameter():
    """Caffe's V1LayerParameter (the `layers` entries of nets written before 2015): the fields
    below, and each of LayerParameter's per-type parameters that V1 had, at V1's number."""
    own = {
        "name": option(4, "string", "the layer's name", ""),
        "type": option(5, V1_LAYER_TYPE, "the layer type, as an enum (CONVOLUTION, RELU, ...)"),
        "bottom": option(2, "string", "names of the input blobs", repeated=True),
        "top": option(3, "string", "names of the output blobs", repeated=True),
        "include": option(32, NetStateRule, "include the layer only when a rule matches",
                          repeated=True),
        "exclude": option(33, NetStateRule, "exclude the layer when a rule matches",
                          repeated=True),
        "blobs": option(6, BlobProto, "stored parameter values", repeated=True),
        "param": option(1001, "string", "each parameter blob's name, for sharing",
                        repeated=True),
        "blob_share_mode": option(1002, DIM_CHECK_MODE, "each shared blob's shape check",
                                  repeated=True),
        "blobs_lr": option(7, "float", "each parameter blob's lr_mult", repeated=True),
        "weight_decay": option(8, "float", "each parameter blob's decay_mult", repeated=True),
        "loss_weight": option(35, "float", "weight of each top in the objective",
                              repeated=True),
    }
    params = {key.name: option(V1_LAYER_PARAMS[key.name], key.metadata["kind"], key.metadata["doc"])
              for key in keys(LayerParameter) if key.name in V1_LAYER_PARAMS}
    declared = {**own, **params}
    message = dataclasses.make_dataclass(
        "V1LayerParameter", [(name, object, spec) for name, spec in declared.items()],
        frozen=True)
    message.__module__ = __name__
    return message


V1LayerParameter = _v1_layer_parameter()


@dataclass(frozen=True)
class NetParameter:
    name: str = option(1, "string", "the net's name", "")
    input: list = option(3, "string", "deprecated deploy inputs (use an Input layer)",
                         repeated=True)
    input_shape: list = option(8, BlobShape, "deprecated: shape of each `input`", repeated=True)
    input_dim: list = option(4, "int64", "deprecated: 4 dims per `input`", repeated=True)
    layer: list = option(100, LayerParameter, "the layers, in order", repeated=True)
    layers: list = option(2, V1LayerParameter, "deprecated V1 layers (enum types, blobs_lr, "
                          "weight_decay): upgraded to `layer` on read", repeated=True)


# --------------------------------------------------------------------------- solver

# Caffe's, then srcaffe's (not Caffe's) over the training clock: poly_seconds, base_lr *
# (1 - seconds / max_seconds) ^ power
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "poly_seconds")
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
# srcaffe's autocast key: none, or the lower precision training's forward passes run in
AUTOCAST_TYPES = ("none", "bfloat16")
# Caffe's deprecated SolverParameter.SolverType enum
SOLVER_TYPE_ENUM = ProtoEnum("SolverType", ("SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA",
                                            "ADAM"))


@dataclass(frozen=True)
class SolverParameter:
    net: str = option(24, "string", "net file holding the TRAIN and TEST phases, relative to "
                      "the solver file or the working directory")
    train_net: str = option(1, "string", "net file for training only (instead of `net`)")
    test_net: list = option(2, "string", "net file(s) for testing only (instead of `net`)",
                            repeated=True)
    test_iter: list = option(3, "int64", "batches per test pass, one entry per test net",
                             repeated=True, minimum=1)
    test_interval: int = option(4, "int64", "iterations between test passes (0: never)", 0,
                                minimum=0)
    test_initialization: bool = option(32, "bool", "also test before the first iteration", True)
    base_lr: float = option(5, "float", "the base learning rate", 0.0, minimum=0)
    display: int = option(6, "int64", "iterations between log lines (0: none)", 0, minimum=0)
    average_loss: int = option(33, "int64", "displayed loss is averaged over this many "
                               "iterations", 1, minimum=1)
    max_iter: int = option(7, "int64", "the last iteration", 0, minimum=0)
    iter_size: int = option(36, "int64", "batches whose gradients are accumulated per update", 1,
                            minimum=1)
    lr_policy: str = option(8, "string", "learning-rate schedule (poly_seconds is srcaffe's: "
                            "poly over max_seconds of training instead of max_iter iterations)",
                            choices=LR_POLICIES)
    gamma: float = option(9, "float", "step/exp/inv/multistep/sigmoid: decay factor", 0.0)
    power: float = option(10, "float", "inv/poly/poly_seconds: exponent", 0.0)
    momentum: float = option(11, "float", "SGD/Nesterov momentum; Adam beta1; AdaDelta decay",
                             0.0, minimum=0)
    weight_decay: float = option(12, "float", "regularisation strength", 0.0, minimum=0)
    regularization_type: str = option(29, "string", "weight decay norm", "L2",
                                      choices=("L1", "L2"))
    stepsize: int = option(13, "int64", "step/sigmoid: iterations per step", 0, minimum=0)
    stepvalue: list = option(34, "int64", "multistep: iterations at which lr drops",
                             repeated=True)
    clip_gradients: float = option(35, "float", "rescale gradients whose global L2 norm exceeds "
                                   "this (negative: never)", -1.0)
    snapshot: int = option(14, "int64", "iterations between snapshots (0: none)", 0, minimum=0)
    snapshot_prefix: str = option(15, "string", "path prefix of snapshot files (default: the "
                                  "solver file's path without extension)")
    solver_mode: str = option(17, SOLVER_MODE, "CPU or GPU (CUDA)", "GPU")
    device_id: int = option(18, "int64", "GPU index", 0, minimum=0)
    random_seed: int = option(20, "int64", "seed of every random generator (negative: from "
                              "the clock)", -1)
    type: str = option(40, "string", "update rule", "SGD", choices=SOLVER_TYPES)
    delta: float = option(31, "float", "AdaGrad/RMSProp/AdaDelta/Adam: numerical stability "
                          "term", 1e-8, minimum=0)
    momentum2: float = option(39, "float", "Adam beta2", 0.999, minimum=0)
    rms_decay: float = option(38, "float", "RMSProp: decay of the squared-gradient average",
                              0.99, minimum=0)
    snapshot_after_train: bool = option(28, "bool", "snapshot after the last iteration", True)
    solver_type: str = option(30, SOLVER_TYPE_ENUM, "deprecated: the update rule as an enum "
                              "(SGD, NESTEROV, ...), upgraded to `type` on read")
    ema_decay: float = option(1001, "float", "srcaffe's, not Caffe's: 0, or the decay of an "
                              "exponential moving average of the weights (e.g. 0.999), moved "
                              "after every update as average = d * average + (1 - d) * weights, "
                              "d = min(ema_decay, (1 + iter) / (10 + iter)): a warm-up, so that "
                              "early averages are not dominated by the initial weights. The test "
                              "nets and the .model snapshots use the average (the .solverstate "
                              "keeps the weights); blobs with lr_mult 0 (BatchNorm's statistics) "
                              "are taken as they are, not averaged", 0.0, minimum=0)
    snapshot_keep: int = option(1002, "int64", "srcaffe's, not Caffe's: 0 keeps every "
                                "snapshot; N keeps the newest N and the one test net #0 scored "
                                "the best PSNR (what `runner ship --best` chooses), removing "
                                "the other pairs as each new snapshot is written", 0, minimum=0)
    warmup_iter: int = option(1003, "int64", "srcaffe's, not Caffe's: 0, or the iterations over "
                              "which the rate rises linearly to lr_policy's, the policy's rate "
                              "times min(1, (iter + 1) / warmup_iter): a high base_lr's first "
                              "updates, taken before Adam's averages know the gradients' scale, "
                              "do not throw the weights far", 0, minimum=0)
    max_seconds: float = option(1004, "float", "srcaffe's, not Caffe's: 0, or the seconds of "
                                "training after which the run ends as it would at max_iter "
                                "(whichever comes first), and over which lr_policy poly_seconds "
                                "decays: the solver loop's wall time, test passes and snapshots "
                                "included, start-up not, summed over resumes (each solverstate "
                                "stores it)", 0.0, minimum=0)
    autocast: str = option(1005, "string", "srcaffe's, not Caffe's: none, or bfloat16: training's "
                           "forward passes run under PyTorch's autocast (the backward follows), "
                           "convolutions and matrix products in bfloat16 (twice the arithmetic "
                           "rate and half the memory traffic where the CPU has avx512_bf16 or "
                           "AMX, or on a GPU); the weights, their updates, the test passes and the "
                           "snapshots stay float32, and so does the loss where it meets the "
                           "float32 label (EuclideanLoss, or a difference with the label)",
                           "none",
                           choices=AUTOCAST_TYPES)


# --------------------------------------------------------------------------- prep (YAML only)

@dataclass(frozen=True)
class PrepConfig:
    scale: int = option(None, "int32", "upscaling factor", 3, minimum=2)
    hr_size: int = option(None, "int32", "side of an HR (label) subimage in pixels: lr_size "
                          "* scale, the LR subimage's footprint; or, with input lr and the "
                          "paper's degradation, lr_size * scale + 1 for a net whose output is "
                          "one pixel more (a 9x9 deconvolution at an even stride: 2 * (19 - 1) "
                          "+ 9 - 2 * 3 = 39 = 2 * 19 + 1), the extra row and column at the "
                          "bottom and right, past the footprint, where inference lines up such "
                          "a net's extra pixel (windows without that pixel in the image are "
                          "skipped); with input bicubic, lr_size", 21, minimum=1)
    lr_size: int = option(None, "int32", "side of an LR subimage (hr_size / scale rounded down, "
                          "or hr_size when input is bicubic)", 7, minimum=1)
    stride: int = option(None, "int32", "training subimage stride, in HR pixels", 19, minimum=1)
    test_stride: int = option(None, "int32", "test subimage stride, in HR pixels", 21,
                              minimum=1)
    lr_padding: int = option(None, "int32", "zero padding around each input subimage (the "
                             "tutorial's option)", 0, minimum=0)
    lr_context: int = option(None, "int32", "pixels of the real image kept around each input "
                             "subimage (the authors' recipe: 2 gives 11x11 LR inputs for 21x21 "
                             "labels; windows without that much image around them are skipped)",
                             0, minimum=0)
    border_context: str = option(None, "string", "windows whose lr_context would leave the "
                                 "image: skip (default), or mirror: cut them all the same from "
                                 "the image mirrored past its border, as inference extends it "
                                 "for an unpadded net, with one more window flush with the "
                                 "bottom and right edges, so that training sees the image's "
                                 "border as inference shows it", "skip",
                                 choices=("skip", "mirror"))
    input: str = option(None, "string", "lr: the downscaled image (FSRCNN); bicubic: it "
                        "upscaled back to HR size (SRCNN)", "lr", choices=("lr", "bicubic"))
    label_border: int = option(None, "int32", "pixels cropped from each side of the label "
                               "(SRCNN without padding: 6)", 0, minimum=0)
    y_conversion: str = option(None, "string", "matlab: rgb2ycbcr, BT.601 studio range; "
                               "opencv: cv2 YCrCb, full range", "matlab",
                               choices=("matlab", "opencv"))
    degradation: str = option(None, "string", "paper: MATLAB bicubic imresize of the whole "
                              "image; tutorial: cv2.resize of each subimage", "paper",
                              choices=("paper", "tutorial"))
    augment_scales: list = option(None, "float", "extra downscaled copies of each training "
                                  "image (paper: 0.9, 0.8, 0.7, 0.6)", repeated=True)
    augment_rotations: list = option(None, "int32", "extra rotated copies in degrees (paper: 90, "
                                     "180, 270)", repeated=True, choices=(90, 180, 270))
    train_sets: list = option(None, "string", "dataset folders for training", ("T91",),
                              repeated=True)
    test_sets: list = option(None, "string", "dataset folders for testing (none: no test "
                             "split)", ("Set5",), repeated=True)
    validation_sets: list = option(None, "string", "dataset folders whose images are held out "
                                   "for validation: a valid split cut like the test split, "
                                   "those images never trained on (choose snapshots and "
                                   "hyper-parameters on it, not on the test sets)", repeated=True)
    validation_images: int = option(None, "int32", "images held out of each validation set, "
                                    "evenly spaced in name order (0: all of them)", 0,
                                    minimum=0)
    output_dir: str = option(None, "string", "folder for the HDF5 files and source lists of the "
                             "splits (train.h5 and train.txt, valid.*, test.*)", "results/data/x3")
    max_pairs_per_file: int = option(None, "int32", "at most this many pairs in one HDF5 file: "
                                     "a split is written as train1.h5, train2.h5, ... (valid1.h5, "
                                     "test1.h5, ...), all named in its source list, and "
                                     "training reads them one at a time (0: one file per "
                                     "split, train.h5, valid.h5, test.h5)", 0, minimum=0)


# --------------------------------------------------------------------------- validation

def is_message(kind):
    """True for a nested message class (not an enum, not a scalar type name)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _check_scalar(value, kind, meta, source, path):
    """The value converted to the key's Python type, or a UserError saying what is wrong."""
    choices, minimum = meta["choices"], meta["minimum"]
    if isinstance(kind, ProtoEnum):
        if value not in kind.values:
            raise UserError(source, f"{path}: {value!r} is not one of {', '.join(kind.values)}")
        return value
    expected = SCALAR_TYPES[kind]
    # bool is an int subclass in Python: `true` must not pass for a number, nor 1 for a bool
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise UserError(source, f"{path}: expected {kind}, got {type(value).__name__} {value!r}")
    if expected is float and not math.isfinite(value):
        raise UserError(source, f"{path}: expected a finite number, got {value!r}")
    if kind == "float" and abs(value) > FLOAT32_MAX:
        raise UserError(source, f"{path}: {value!r} is out of range for float (at most "
                        f"{FLOAT32_MAX:.8g} either side of 0)")
    if kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        if not low <= value <= high:
            raise UserError(source, f"{path}: {value} is out of range for {kind} ({low} to "
                            f"{high})")
    if minimum is not None and value < minimum:
        raise UserError(source, f"{path}: must be at least {minimum}, got {value}")
    if meta["allocates"]:
        memory.check_fits(value * memory.FLOAT32_BYTES, source,
                          f"{path}: {value} (at least {value} float32 values)")
    if choices and value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise UserError(source, f"{path}: {value!r} is not one of {', '.join(map(str, choices))}{hint}")
    return value


def unknown_key(message_class, name):
    """What is wrong with a key that `message_class` does not declare: a typo, or a part of a
    legacy form that is not read."""
    if message_class is V1LayerParameter and name == "layer":
        return ("'layer' inside a `layers` entry is Caffe's V0 net format (2013), which is not "
                "read: upgrade the file with Caffe's upgrade_net_proto_text first")
    if message_class is V1LayerParameter and name in V1_LAYER_PARAMS:
        return (f"{name!r} is the parameter of a layer type srcaffe does not build (it builds "
                f"{', '.join(LAYER_TYPES)})")
    return f"unknown key {name!r}{did_you_mean(name, [key.name for key in keys(message_class)])}"


def from_mapping(message_class, mapping, source, path=""):
    """Validate a plain mapping (from YAML or a parsed prototxt) into `message_class`.

    `source` names the file for error messages; `path` is the dotted key path so far.
    """
    label = path or message_class.__name__
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UserError(source, f"{label}: expected a mapping of keys, got "
                        f"{type(mapping).__name__}")
    declared = {key.name: key for key in keys(message_class)}
    values = {}
    first = [name for name in mapping
             if name in declared and declared[name].metadata["checked_first"]]
    for name, value in sorted(mapping.items(), key=lambda item: item[0] not in first):
        if name not in declared:
            raise UserError(source, f"{label}: {unknown_key(message_class, str(name))}")
        values[name] = _convert(declared[name], value, source, f"{path}.{name}" if path else name)
    return message_class(**values)


def _convert(key, value, source, path):
    meta = key.metadata
    kind = meta["kind"]
    if meta["repeated"]:
        # YAML may give a single value where a prototxt would repeat the key once
        items = value if isinstance(value, list) else [value]
        return [_convert_one(kind, meta, item, source, f"{path}[{index}]")
                for index, item in enumerate(items)]
    return _convert_one(kind, meta, value, source, path)


def _convert_one(kind, meta, value, source, path):
    if is_message(kind):
        return from_mapping(kind, value, source, path)
    return _check_scalar(value, kind, meta, source, path)


def field_default(key):
    """A dataclass field's default value (messages have theirs from a factory)."""
    if key.default_factory is not dataclasses.MISSING:
        return key.default_factory()
    return key.default


def to_mapping(message, *, include_defaults=False):
    """A message as plain data (for YAML dumps and snapshots); keys left at default omitted."""
    result = {}
    for key in keys(type(message)):
        value = getattr(message, key.name)
        is_default = value in ([], None) or value == field_default(key)
        if is_message(key.metadata["kind"]):
            value = ([to_mapping(item, include_defaults=include_defaults) for item in value]
                     if key.metadata["repeated"]
                     else to_mapping(value, include_defaults=include_defaults))
        if include_defaults or not is_default:
            result[key.name] = value
    return result


def changed_keys(before, after):
    """["key: old -> new", ...] for each top-level key whose value differs between two messages
    of one class (defaults counted as set), in the schema's order."""
    old, new = (to_mapping(message, include_defaults=True) for message in (before, after))
    return [f"{key}: {old.get(key)} -> {new.get(key)}" for key in new if old.get(key) != new[key]]


def describe(message_class, indent=""):
    """Reference text for a schema class: each key with its type, default and meaning."""
    lines = []
    for key in keys(message_class):
        meta = key.metadata
        kind = meta["kind"]
        type_name = (kind.__name__ if is_message(kind) else
                     kind.name if isinstance(kind, ProtoEnum) else kind)
        if meta["repeated"]:
            type_name = f"list of {type_name}"
        default = "" if key.default is dataclasses.MISSING or key.default is None \
            else f" = {key.default!r}"
        allowed = kind.values if isinstance(kind, ProtoEnum) else meta["choices"]
        choices = f" [{' | '.join(map(str, allowed))}]" if allowed else ""
        lines.append(f"{indent}{key.name} ({type_name}{default}){choices}: {meta['doc']}")
        if is_message(kind) and not indent:
            lines.extend(describe(kind, indent + "    "))
    return lines
