"""Caffe's layers that branch and join blobs: Split, Concat, Slice, Eltwise and Silence.

A blob read by several layers needs no Split here: Caffe inserts one so that the gradients of
its readers add up, and autograd adds them up by itself. An explicit Split layer gives each top
the bottom's values (the gradients of its tops add up the same way)."""
import torch

from runner.net.layers.base import Layer, canonical_axis, same_shapes


class Split(Layer):
    type_name = "Split"
    top_count = (1, None)

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.tops = len(layer.top)

    def top_shapes(self, bottom_shapes):
        return list(bottom_shapes) * self.tops

    def forward(self, bottom):
        return (bottom,) * self.tops


class Silence(Layer):
    """Caffe's Silence: reads its bottoms and outputs nothing (so that no blob is left unused)."""

    type_name = "Silence"
    bottom_count = (1, None)
    top_count = (0, 0)

    def __init__(self, layer, bottom_shapes):
        super().__init__()

    def top_shapes(self, bottom_shapes):
        return []

    def forward(self, *bottoms):
        return ()


def legacy_axis(param, legacy_key, shape, where):
    """The axis of Concat and Slice: the deprecated `concat_dim`/`slice_dim` when set, else
    `axis` (negative: from the end)."""
    legacy = getattr(param, legacy_key)
    if legacy is not None:
        if param.axis != 1:
            raise ValueError(f"{where}: give axis or {legacy_key}, not both")
        return canonical_axis(legacy, shape, f"{where}.{legacy_key}")
    return canonical_axis(param.axis, shape, f"{where}.axis")


class Concat(Layer):
    """Caffe's Concat: the bottoms joined along `axis` (default 1, the channels)."""

    type_name = "Concat"
    bottom_count = (1, None)

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.names = list(layer.bottom)
        self.axis = legacy_axis(layer.concat_param, "concat_dim", bottom_shapes[0],
                                "concat_param")

    def top_shapes(self, bottom_shapes):
        first = tuple(bottom_shapes[0])
        for name, shape in zip(self.names, bottom_shapes):
            if len(shape) != len(first) or any(
                    size != other for axis, (size, other) in enumerate(zip(shape, first))
                    if axis != self.axis):
                raise ValueError(f"bottoms must have the same shape except on axis "
                                 f"{self.axis}: {self.names[0]!r} is {first}, {name!r} is "
                                 f"{tuple(shape)}")
        return [(*first[:self.axis], sum(shape[self.axis] for shape in bottom_shapes),
                 *first[self.axis + 1:])]

    def forward(self, *bottoms):
        return (torch.cat(bottoms, self.axis),)


class Slice(Layer):
    """Caffe's Slice: the bottom cut along `axis` at `slice_point`s, or into equal parts."""

    type_name = "Slice"
    top_count = (1, None)

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.slice_param
        self.axis = legacy_axis(param, "slice_dim", bottom_shapes[0], "slice_param")
        self.points = list(param.slice_point)
        self.tops = len(layer.top)
        if self.points and len(self.points) != self.tops - 1:
            raise ValueError(f"{len(self.points)} slice_point values for {self.tops} tops "
                             f"(give one fewer than the tops)")

    def sizes(self, shape):
        length = shape[self.axis]
        if not self.points:
            if length % self.tops:
                raise ValueError(f"axis {self.axis} of shape {tuple(shape)} does not split into "
                                 f"{self.tops} equal parts")
            return [length // self.tops] * self.tops
        bounds = [0, *self.points, length]
        sizes = [end - start for start, end in zip(bounds, bounds[1:])]
        if min(sizes) <= 0:
            raise ValueError(f"slice_point {self.points} must increase strictly within axis "
                             f"{self.axis} of shape {tuple(shape)}")
        return sizes

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        return [(*shape[:self.axis], size, *shape[self.axis + 1:])
                for size in self.sizes(shape)]

    def forward(self, bottom):
        return tuple(torch.split(bottom, self.sizes(bottom.shape), self.axis))


class Eltwise(Layer):
    """Caffe's Eltwise over bottoms of one shape: SUM (with a coefficient per bottom), PROD,
    or MAX, whose gradient goes to the bottom that won (ties as Caffe breaks them: between the
    first two bottoms the second, then only a strictly greater later bottom)."""

    type_name = "Eltwise"
    bottom_count = (2, None)

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.eltwise_param
        self.names = list(layer.bottom)
        self.operation = param.operation
        if param.coeff and param.operation != "SUM":
            raise ValueError("eltwise_param.coeff is for operation SUM only")
        if param.coeff and len(param.coeff) != len(bottom_shapes):
            raise ValueError(f"{len(param.coeff)} coeff values for {len(bottom_shapes)} "
                             "bottoms (give one per bottom)")
        self.coeff = list(param.coeff) or [1.0] * len(bottom_shapes)

    def top_shapes(self, bottom_shapes):
        same_shapes(self.names, bottom_shapes)
        return [bottom_shapes[0]]

    def forward(self, *bottoms):
        if self.operation == "SUM":
            top = bottoms[0] if self.coeff[0] == 1 else self.coeff[0] * bottoms[0]
            for coeff, bottom in zip(self.coeff[1:], bottoms[1:]):
                top = top + (bottom if coeff == 1 else coeff * bottom)
            return (top,)
        if self.operation == "PROD":
            top = bottoms[0]
            for bottom in bottoms[1:]:
                top = top * bottom
            return (top,)
        top = torch.where(bottoms[0] > bottoms[1], bottoms[0], bottoms[1])
        for bottom in bottoms[2:]:
            top = torch.where(bottom > top, bottom, top)
        return (top,)


LAYERS = (Split, Silence, Concat, Slice, Eltwise)
