"""What every computing layer is: a torch Module that knows its parameter blobs, their fillers and
the shapes of its tops; and the checks of the settings several layer families share."""
import torch
from torch import nn


class Layer(nn.Module):
    """A computing layer: knows its own parameter blobs and the shapes of its tops.

    It is built from its LayerParameter, whose `phase` the net has set (TRAIN or TEST), and the
    shapes of its bottoms; `forward` takes the bottoms and returns a tuple of tops."""

    type_name = None      # the Caffe type this class builds
    bottom_count = (1, 1)  # (fewest, most) bottoms and tops, as Caffe's Min/Max/ExactNum*Blobs;
    top_count = (1, 1)     # None: no upper bound
    fixed_blobs = False   # True: the blobs are not learned (Caffe forces their lr_mult to 0)
    size_keys = ""        # the keys that set the size of its parameter blobs, named when the
                          # net cannot be allocated ("" when its bottom's shape sets it)

    def blobs(self):
        """Parameter blobs in Caffe's order (weights, then bias)."""
        return []

    def fillers(self):
        """The FillerParameter of each blob, in the same order."""
        return []

    def top_shapes(self, bottom_shapes):
        """Shapes of the tops for these bottom shapes; ValueError when they do not fit."""
        return list(bottom_shapes)

    def share_blob(self, index, owner):
        """Use `owner` (another layer's Parameter of the same shape) as blob `index` from now on:
        Caffe's weight sharing, gradients accumulating in the one blob."""
        blob = self.blobs()[index]
        name = next(name for name, parameter in self._parameters.items() if parameter is blob)
        setattr(self, name, owner)

    def caffe_form(self, layer):
        """(LayerParameter, blobs) that Caffe runs for this layer: itself, except for srcaffe's
        own layer types, which are written as the Caffe layers that compute the same."""
        return layer, self.blobs()


class WeightsAndBias(Layer):
    """A layer whose blobs are weights and, with `bias_term`, a bias of `num_output` values
    (Convolution, Deconvolution, InnerProduct), filled by `weight_filler` and `bias_filler`."""

    @staticmethod
    def required_outputs(param, where):
        """`num_output`, which Caffe requires."""
        if param.num_output is None:
            raise ValueError(f"{where}.num_output is required")
        return param.num_output

    def make_blobs(self, param, weight_shape):
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(param.num_output)) if param.bias_term else None
        self.weight_filler, self.bias_filler = param.weight_filler, param.bias_filler

    def blobs(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def fillers(self):
        return [self.weight_filler, self.bias_filler][:len(self.blobs())]


def image_shape(shape):
    if len(shape) != 4:
        raise ValueError(f"needs an N x C x H x W bottom, got shape {shape}")
    return shape


def canonical_axis(axis, shape, what="axis"):
    """Caffe's CanonicalAxisIndex: a negative axis counts from the end."""
    count = len(shape)
    if not -count <= axis < count:
        raise ValueError(f"{what} {axis} is out of range for a bottom of shape {shape}")
    return axis % count


def same_shapes(names, shapes, what="bottoms"):
    """ValueError naming both shapes when the bottoms differ in shape."""
    for name, shape in zip(names[1:], shapes[1:]):
        if tuple(shape) != tuple(shapes[0]):
            raise ValueError(f"{what} must have the same shape: {names[0]!r} is "
                             f"{tuple(shapes[0])}, {name!r} is {tuple(shape)}")
