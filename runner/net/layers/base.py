"""What every computing layer is: a torch Module that knows its parameter blobs, their fillers and
the shapes of its tops; and the checks of the settings several layer families share."""
from torch import nn


class Layer(nn.Module):
    """A computing layer: knows its own parameter blobs and the shapes of its tops."""

    type_name = None      # the Caffe type this class builds
    bottom_count = 1      # exact numbers of bottoms and tops, as Caffe's Exact*Blobs()
    top_count = 1
    is_loss = False       # loss layers weigh their top 1 in the objective unless told otherwise
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


def spatial_pair(values, key, default, minimum):
    """A one-value-or-H-and-W setting (kernel_size, stride, pad, dilation) as (h, w)."""
    if not values:
        if default is None:
            raise ValueError(f"convolution_param.{key} is required")
        return (default, default)
    if len(values) > 2:
        raise ValueError(f"convolution_param.{key}: give one value, or H and W; got {values}")
    if min(values) < minimum:
        raise ValueError(f"convolution_param.{key} must be at least {minimum}, got {values}")
    return (values[0], values[-1])


def image_shape(shape):
    if len(shape) != 4:
        raise ValueError(f"needs an N x C x H x W bottom, got shape {shape}")
    return shape
