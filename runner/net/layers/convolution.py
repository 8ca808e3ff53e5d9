"""Caffe's Convolution and Deconvolution layers, computed through runner/net/fast_paths.py."""
from runner.net import fast_paths, subpixel
from runner.net.layers.base import WeightsAndBias, image_shape
from runner.net.structure import spatial


class Convolution(WeightsAndBias):
    """Caffe's Convolution: weights (out, in/group, kh, kw), then bias (out)."""

    type_name = "Convolution"
    size_keys = "convolution_param.num_output or kernel_size"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.convolution_param
        where = "convolution_param"
        outputs = self.required_outputs(param, where)
        self.kernel = spatial(param, "kernel_size", "kernel", None, 1, where)
        self.stride = spatial(param, "stride", "stride", 1, 1, where)
        self.pad = spatial(param, "pad", "pad", 0, 0, where)
        self.dilation = spatial(param, "dilation", "dilation", 1, 1, where)
        self.group = param.group
        channels = image_shape(bottom_shapes[0])[1]
        for what, number in (("input channels", channels), ("num_output", outputs)):
            if number % self.group:
                raise ValueError(f"{what} ({number}) not divisible by group ({self.group})")
        self.in_channels, self.out_channels = channels, outputs
        self.make_blobs(param, self.weight_shape())

    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.group, *self.kernel)

    def output_size(self, size, kernel_extent, stride, pad):
        return (size + 2 * pad - kernel_extent) // stride + 1

    def top_shapes(self, bottom_shapes):
        batch, channels, *sizes = image_shape(bottom_shapes[0])
        if channels != self.in_channels:
            raise ValueError(f"built for {self.in_channels} input channels, got {channels}")
        outputs = tuple(self.output_size(size, dilation * (kernel - 1) + 1, stride, pad)
                        for size, kernel, stride, pad, dilation
                        in zip(sizes, self.kernel, self.stride, self.pad, self.dilation))
        if min(outputs) < 1:
            raise ValueError(f"a {sizes[0]}x{sizes[1]} input gives no output "
                             f"({outputs[0]}x{outputs[1]})")
        return [(batch, self.out_channels, *outputs)]

    def forward(self, bottom):
        return (fast_paths.conv2d(bottom, self.weight, self.bias, self.stride, self.pad,
                                  self.dilation, self.group),)


class Deconvolution(Convolution):
    """Caffe's Deconvolution (a transposed convolution): weights (in, out/group, kh, kw) —
    PyTorch's ConvTranspose2d layout — then bias (out)."""

    type_name = "Deconvolution"
    weight_read_in_order = True             # by fast_paths.subpixel_weights

    def weight_shape(self):
        return (self.in_channels, self.out_channels // self.group, *self.kernel)

    def output_size(self, size, kernel_extent, stride, pad):
        return subpixel.transposed_size(size, kernel_extent, stride, pad)

    def forward(self, bottom):
        # the same result as F.conv_transpose2d, computed as a sub-pixel convolution
        return (fast_paths.conv_transpose2d(bottom, self.weight, self.bias, self.stride,
                                            self.pad, self.dilation, self.group),)


LAYERS = (Convolution, Deconvolution)
