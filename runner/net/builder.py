"""The net: a torch Module built from a NetParameter, layer by layer from the registry.

A `Net` is one phase (TRAIN or TEST) of a net file, built as Caffe's Net::Init builds it: layers
kept or dropped by their include/exclude rules, connected by bottom/top blob names in file order
(a top that repeats its bottom is computed in place), every layer's shapes checked once at build
time, and every parameter blob filled by its layer's filler from one generator, in layer order,
so a seed gives the same weights. Blobs named alike by `param { name }` are then shared as
Caffe's Net::AppendParam shares them: the first layer that names one owns it, the others use
the owner's blob (same shape, or same count under PERMISSIVE, which is refused here unless the
shapes agree), so their gradients add up in it; its lr_mult and decay_mult are the value any
sharer sets (Caffe refuses two different ones; here a value left at the default 1 counts as
unset). Data layers (HDF5Data, Input) build no module: their tops are fed to `forward` from
outside (runner/train/feeder.py in training, runner/net/feeds.py for their shapes). Before any
weight is allocated, the net is laid out on torch's `meta` device (shapes, no memory) and its
weights and one batch's activations are checked against the machine's memory, so an absurd
size is one error line naming the layer and its key.
"""
import math
from dataclasses import replace

import torch
from torch import nn

from runner.config import memory, schema
from runner.errors import UserError
from runner.files import snapshot
from runner.net import conv_chain, fast_paths, fillers, row_bands, structure
from runner.net.feeds import FED_LAYERS, Feed
from runner.net.layers.convolution import Convolution
from runner.net.layers.registry import LAYERS
from runner.net.structure import LOSS_TYPES, phase_layers, scale_of


class Net(nn.Module):
    """One phase of a net file as a torch Module that maps named blobs to named blobs.

    `generator` draws the initial weights (None: torch's global generator). `input_shapes`
    ({blob: (N, C, H, W)}) gives the shapes of fed blobs; those not given come from the net
    (Input shapes) or from the first .h5 file an HDF5Data layer's source list names.
    """

    def __init__(self, net_param, phase, source="<net>", generator=None, input_shapes=None):
        super().__init__()
        if phase not in schema.PHASE.values:
            raise ValueError(f"phase must be one of {schema.PHASE.values}, got {phase!r}")
        self.source = str(source)
        self.phase = phase
        self.name = net_param.name
        self.scale = scale_of(net_param)
        self.layer_params = phase_layers(net_param, phase, self.source)
        self.data_layers = [layer for layer in self.layer_params if layer.type == "HDF5Data"]
        self.input_names = [top for layer in self.layer_params if layer.type in FED_LAYERS
                            for top in layer.top]
        self._feeds = self._find_feeds(self._given_feeds(input_shapes or {}))
        self.layers = nn.ModuleList()
        self._module_at = {}          # index in layer_params -> the computing layer's module
        self._check_memory()
        self._walk(self._feeds, build=True)
        self._steps = [(self.layer_params[index], module)
                       for index, module in self._module_at.items()]
        self._inference_plans = {}     # (kept, fed channels, kernel) -> their Chains
        self.loss_names = self._loss_names()
        self._fill(generator)
        self._learnable = self._share_parameters(
            [self._param_specs_of(layer, module) for layer, module in self._steps])

    # ------------------------------------------------------------------ building

    def _error(self, layer, problem):
        return UserError(self.source, f"layer {layer.name!r} ({layer.type}): {problem}")

    def _given_feeds(self, input_shapes):
        unknown = sorted(set(input_shapes) - set(self.input_names))
        if unknown:
            raise UserError(self.source, f"shape given for {unknown[0]!r}, which no data or "
                            "Input layer produces")
        return {name: Feed(tuple(shape), self.source) for name, shape in input_shapes.items()}

    def _find_feeds(self, given):
        feeds = dict(given)
        for layer in self.layer_params:
            if layer.type in FED_LAYERS:
                needed = [top for top in layer.top if top not in given]
                feeds.update(FED_LAYERS[layer.type](layer, self.source, needed))
        return feeds

    def _check_memory(self):
        """Lay the net out on the meta device (shapes, no memory), layer by layer, and refuse
        it at the first layer that takes its weights and one batch's activations beyond the
        machine's memory, naming that layer and the keys that set its size."""
        limit, total = memory.available_bytes(), [0]

        def account(layer, module=None, tops=()):
            weights = sum(blob.numel() for blob in module.blobs()) if module else 0
            total[0] += (weights + sum(math.prod(shape) for shape in tops)) \
                * memory.FLOAT32_BYTES
            if total[0] <= limit:
                return
            if weights:
                shapes = " and ".join("x".join(map(str, blob.shape)) for blob in module.blobs())
                keys = LAYERS[layer.type].size_keys or "the sizes of the layers before it"
                memory.check_fits(total[0], self.source, f"the net up to layer {layer.name!r} "
                                  f"({layer.type}), whose weights are {shapes},", f"lower {keys}")
            keys = " or ".join(sorted({feed.size_key for feed in self._feeds.values()
                                       if feed.size_key})) or "the batch size"
            memory.check_fits(total[0], self.source, f"the net up to layer {layer.name!r} "
                              f"({layer.type}), whose tops for one batch are "
                              f"{', '.join('x'.join(map(str, shape)) for shape in tops)},",
                              f"lower {keys} or the input size")

        try:
            with torch.device("meta"):
                self._walk(self._feeds, build=True, account=account)
        except (RuntimeError, TypeError, OverflowError) as error:
            raise UserError(self.source, f"sizes beyond what can be allocated ({error})") \
                from None
        self.layers, self._module_at = nn.ModuleList(), {}

    def _walk(self, feeds, build=False, account=None):
        """Caffe's setup/reshape pass: each layer's top shapes, from the fed blobs' shapes, as
        rows (layer name, type, top shapes, parameter count). With `build`, each computing
        layer's module is first created for the shapes of its bottoms; `account(layer,
        module=, tops=)` is told of each module once built and of each layer's top shapes."""
        shapes, rows, names_with_blobs = {}, [], set()
        for index, layer in enumerate(self.layer_params):
            if layer.type is None:
                raise UserError(self.source, f"layer {layer.name!r}: no type (one of "
                                f"{', '.join(schema.LAYER_TYPES)})")
            if layer.type in FED_LAYERS:
                if layer.bottom or not layer.top:
                    raise self._error(layer, "takes no bottom and at least one top")
                tops, count = [feeds[top].shape for top in layer.top], 0
            else:
                bottoms = self._bottom_shapes(layer, shapes)
                if build:
                    self._module_at[index] = self._build(layer, bottoms, feeds)
                module = self._module_at[index]
                if account:
                    account(layer, module=module)
                if module.blobs():
                    if layer.name in names_with_blobs:
                        # weights are saved, loaded and copied by layer name
                        raise self._error(layer, "another layer with parameters has this name")
                    names_with_blobs.add(layer.name)
                tops = self._top_shapes(layer, module, bottoms, feeds)
                count = sum(blob.numel() for blob in module.blobs())
            if account:
                account(layer, tops=tops)
            self._record_tops(layer, tops, shapes)
            rows.append((layer.name, layer.type, tops, count))
        return rows

    def _check_counts(self, layer, layer_class):
        for what, (fewest, most), got in (("bottom", layer_class.bottom_count, len(layer.bottom)),
                                          ("top", layer_class.top_count, len(layer.top))):
            if got < fewest or (most is not None and got > most):
                wanted = (fewest if fewest == most else f"at least {fewest}" if most is None
                          else f"{fewest} to {most}")
                raise self._error(layer, f"takes {wanted} {what}(s), got {got}")

    def _bottom_shapes(self, layer, shapes):
        for name in layer.bottom:
            if name not in shapes:
                raise UserError(self.source, f"layer {layer.name!r}: bottom {name!r} is "
                                "produced by no earlier layer")
        return [shapes[name] for name in layer.bottom]

    def _build(self, layer, bottom_shapes, feeds):
        layer_class = LAYERS[layer.type]
        self._check_counts(layer, layer_class)
        try:
            # as in Caffe's Net::Init, a layer computes in its net's phase unless it sets its own
            module = layer_class(layer if layer.phase else replace(layer, phase=self.phase),
                                 bottom_shapes)
        except ValueError as error:
            raise self._shape_error(layer, error, feeds) from None
        self.layers.append(module)
        return module

    def _top_shapes(self, layer, module, bottom_shapes, feeds):
        try:
            return module.top_shapes(bottom_shapes)
        except ValueError as error:
            raise self._shape_error(layer, error, feeds) from None

    def _shape_error(self, layer, error, feeds):
        """A layer's complaint about its bottoms; a fed bottom of the wrong shape is most
        likely the data's fault, so the error names the data's file."""
        fed = [feeds[name] for name in layer.bottom if name in feeds]
        notes = "; ".join(feed.note for feed in fed if feed.note)
        where = fed[0].where if fed else self.source
        return UserError(where, f"layer {layer.name!r} ({layer.type}): {error}"
                         + (f" ({notes})" if notes else ""))

    def _record_tops(self, layer, top_shapes, shapes):
        for index, (name, shape) in enumerate(zip(layer.top, top_shapes)):
            in_place = index < len(layer.bottom) and layer.bottom[index] == name
            if name in shapes and not in_place:
                raise self._error(layer, f"top {name!r} is already produced by an earlier "
                                  "layer (only a top that repeats its bottom works in place)")
            shapes[name] = tuple(shape)

    def _loss_names(self):
        losses = []
        for layer, module in self._steps:
            weights = list(layer.loss_weight)
            if weights and len(weights) != len(layer.top):
                raise self._error(layer, f"{len(weights)} loss_weight values for "
                                  f"{len(layer.top)} tops")
            if not weights and layer.type in LOSS_TYPES:
                weights = [1.0] + [0.0] * (len(layer.top) - 1)
            losses += [(top, weight) for top, weight in zip(layer.top, weights) if weight]
        return losses

    def _param_specs_of(self, layer, module):
        """The ParamSpec of each blob: the layer's `param` entries, then Caffe's default (lr_mult
        and decay_mult 1; lr_mult 0 for blobs that are not learned, such as BatchNorm's)."""
        blobs = module.blobs()
        if len(layer.param) > len(blobs):
            raise self._error(layer, f"{len(layer.param)} param entries for "
                              f"{len(blobs)} parameter blobs")
        if module.fixed_blobs and any(spec.lr_mult for spec in layer.param):
            raise self._error(layer, "its blobs are statistics, not learned: their lr_mult must "
                              "be 0 (Caffe's rule)")
        unset = schema.ParamSpec(lr_mult=0.0) if module.fixed_blobs else schema.ParamSpec()
        return list(layer.param) + [unset] * (len(blobs) - len(layer.param))

    def _share_parameters(self, specs_by_step):
        """Caffe's Net::AppendParam over every blob in layer order: [layer name, blob index,
        parameter, lr_mult, decay_mult] of each blob a layer owns; named blobs seen before are
        replaced by their owner's."""
        learnable, owners = [], {}
        for (layer, module), specs in zip(self._steps, specs_by_step):
            for index, (blob, spec) in enumerate(zip(module.blobs(), specs)):
                if not spec.name or spec.name not in owners:
                    if spec.name:
                        owners[spec.name] = len(learnable)
                    learnable.append([layer.name, index, blob, spec.lr_mult, spec.decay_mult])
                    continue
                owner = learnable[owners[spec.name]]
                if tuple(blob.shape) != tuple(owner[2].shape):
                    permissive = spec.share_mode == "PERMISSIVE" and \
                        blob.numel() == owner[2].numel()
                    raise self._error(layer, f"cannot share param {spec.name!r} of layer "
                                      f"{owner[0]!r}: its shape is {tuple(owner[2].shape)}, "
                                      f"blob {index} here is {tuple(blob.shape)}"
                                      + (" (PERMISSIVE sharing of another shape with the same "
                                         "count is not supported)" if permissive else ""))
                module.share_blob(index, owner[2])
                for slot, key in ((3, "lr_mult"), (4, "decay_mult")):
                    owner[slot] = self._shared_multiplier(layer, spec.name, key, owner[slot],
                                                          getattr(spec, key))
        for _, _, blob, lr_mult, _ in learnable:
            # as in Caffe, lr_mult 0 freezes a blob: no gradient is computed for it
            blob.requires_grad_(lr_mult != 0)
        return [tuple(entry) for entry in learnable]

    def _shared_multiplier(self, layer, name, key, owners, sharers):
        default = getattr(schema.ParamSpec(), key)
        if sharers == default or sharers == owners:
            return owners
        if owners != default:
            raise self._error(layer, f"shared param {name!r} has mismatched {key} ({sharers} "
                              f"here, {owners} where it was set before)")
        return sharers

    def _fill(self, generator):
        for layer, module in self._steps:
            for blob, filler in zip(module.blobs(), module.fillers()):
                try:
                    fillers.fill(blob, filler, generator)
                except ValueError as error:
                    raise self._error(layer, str(error)) from None

    # ------------------------------------------------------------------ running

    def forward(self, blobs, keep=None):
        """All blobs of one pass, given the fed ones ({name: tensor}); in-place tops hold the
        last value written, as in Caffe. With `keep` (blob names), only those are returned and
        every other blob is dropped once no later layer reads it: inference then holds two
        activations at a time, not all of them, and on the CPU without autograd the runs of
        convolutions go through our own kernel in one pass (runner/net/conv_chain.py), or where
        it does not run, those that widen a blob and narrow it again band by band
        (runner/net/row_bands.py)."""
        blobs = dict(blobs)
        last_reads = None if keep is None else self._last_reads()
        chains = {chain.first: chain for chain in self._inference_chains(blobs, keep)}
        index = 0
        while index < len(self._steps):
            layer, module = self._steps[index]
            chain = chains.get(index)
            if chain is not None:
                tops = (chain.run(blobs[layer.bottom[0]]),)
                index = chain.last
                layer = self._steps[index][0]
            else:
                tops = module(*[blobs[name] for name in layer.bottom])
            blobs.update(zip(layer.top, tops))
            if keep is not None:
                for name in [name for name in blobs if name not in keep
                             and last_reads.get(name, -1) <= index]:
                    del blobs[name]
            index += 1
        return blobs

    def _inference_chains(self, fed, keep):
        """The Chains for a pass with these fed blobs and `keep`: conv_chain's where its kernel
        runs, row_bands' for the rest; none in training, with autograd, off the CPU or with the
        fast paths off."""
        if (keep is None or torch.is_grad_enabled() or not fast_paths.enabled()
                or any(blob.device.type != "cpu" or blob.dim() != 4 for blob in fed.values())):
            return []
        channels = {name: blob.shape[1] for name, blob in fed.items()}
        kernel = conv_chain.library() is not None
        key = (frozenset(keep), tuple(sorted(channels.items())), kernel)
        if key not in self._inference_plans:
            chains = conv_chain.plan(self._steps, set(keep)) if kernel else []
            taken = {step for chain in chains for step in range(chain.first, chain.last + 1)}
            self._inference_plans[key] = chains + [
                chain for chain in row_bands.plan(self._steps, set(keep), channels)
                if taken.isdisjoint(range(chain.first, chain.last + 1))]
        return self._inference_plans[key]

    def _last_reads(self):
        """{blob name: index of the last step that reads it}."""
        return structure.last_reads([layer for layer, _ in self._steps])

    def loss(self, blobs):
        """The objective: the sum of loss_weight * (sum of the top) over weighted tops."""
        return sum(weight * blobs[name].sum() for name, weight in self.loss_names)

    def loss_bottoms(self):
        """(prediction, label) blob names of each EuclideanLoss layer."""
        return [tuple(layer.bottom) for layer in self.layer_params
                if layer.type == "EuclideanLoss"]

    # ------------------------------------------------------------------ parameters

    def learnable_blobs(self):
        """(owner layer name, blob index, parameter, lr_mult, decay_mult) of every parameter
        blob, each shared blob once, in Caffe's order (layer order; weights before bias)."""
        return list(self._learnable)

    def blobs_by_layer(self):
        """{layer name: [parameter blobs]} of the layers that have any, in Caffe's layouts; a
        shared blob is listed under every layer that uses it (as a .caffemodel holds it)."""
        return {layer.name: module.blobs() for layer, module in self._steps if module.blobs()}

    def layer_modules(self):
        """(LayerParameter, module) of every computing layer, in order."""
        return list(self._steps)

    @torch.no_grad()
    def copy_from(self, blobs_by_layer, source):
        """Copy blobs of layers present here and in `blobs_by_layer`, matched by layer name
        (Caffe's CopyTrainedLayersFrom); other layers are left as they are. Every shape is
        checked before anything is copied. Returns the names of the layers copied."""
        own = self.blobs_by_layer()
        shared = [name for name in own if name in blobs_by_layer]
        snapshot.check_blob_shapes(blobs_by_layer, own, source)
        for name in shared:
            for their_blob, our_blob in zip(blobs_by_layer[name], own[name]):
                our_blob.copy_(their_blob)
        return shared

    # ------------------------------------------------------------------ inspection

    def output_shapes(self, input_shapes=None):
        """(layer name, type, top shapes, parameter count) of every layer, for fed blobs of
        the given shapes ({blob: (N, C, H, W)}; others keep the shapes the net was built for)."""
        return self._walk({**self._feeds, **self._given_feeds(input_shapes or {})})

    def weight_count(self):
        """Convolution and Deconvolution weights, without biases and PReLU slopes, a shared
        kernel once: the number the FSRCNN paper counts (and its multiply-adds per input
        pixel)."""
        kernels = {id(module.weight): module.weight.numel() for module in self.layers
                   if isinstance(module, Convolution)}
        return sum(kernels.values())
