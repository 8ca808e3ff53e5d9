"""`runner inspect FILE`: what a `.model` or `.solverstate` holds, without training anything.

For both: iteration, sha256, and the net as a layer table (name, type, top shape for a given
input, parameter count, multiply-adds), its weight count (convolution and deconvolution weights
only, the number the FSRCNN paper counts: 12,464 for FSRCNN(56,12,4)), biases, PReLU slopes,
other blobs (InnerProduct, Scale, Bias, BatchNorm statistics) and multiply-adds per input (LR)
pixel; a blob that layers share is counted once. For a solverstate also the solver's settings and the model
file it belongs to: whether that file is present and unchanged (sha256).
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from runner.config import loading, schema
from runner.errors import UserError, stored_in
from runner.files import caffe_model, snapshot
from runner.infer import deploy
from runner.net import builder, structure

CONVOLUTIONS = ("Convolution", "Deconvolution")


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    top_shapes: list
    parameters: int
    multiply_adds: int


@dataclass(frozen=True)
class NetSummary:
    name: str
    source: str
    input_shape: tuple
    scale: int              # the final Deconvolution's stride; None for SRCNN-style nets
    layers: list            # LayerRow
    weights: int            # convolution and deconvolution weights
    biases: int             # convolution and deconvolution biases
    slopes: int             # PReLU slopes
    other: int              # every other blob (InnerProduct, Scale, Bias, BatchNorm)
    multiply_adds_per_pixel: float


def multiply_adds(layer_type, module, bottom_shape, top_shape):
    """Multiply-adds of one forward pass of a Convolution or Deconvolution: every output pixel
    of a convolution, every input pixel of a deconvolution, costs one kernel per channel pair."""
    per_pixel = bottom_shape[1] * top_shape[1] // module.group * math.prod(module.kernel)
    pixels = math.prod(top_shape[2:] if layer_type == "Convolution" else bottom_shape[2:])
    return bottom_shape[0] * pixels * per_pixel


def _blob_kinds(layer_type, blobs):
    """The category each blob of a layer is counted in."""
    if layer_type in CONVOLUTIONS:
        return ["weights"] + ["biases"] * (len(blobs) - 1)
    return ["slopes" if layer_type == "PReLU" else "other"] * len(blobs)


def summarize_net(net_param, source, input_size=structure.DEFAULT_INPUT_SIZE, model=None):
    """A NetSummary of a net's deploy form for a 1 x 1 x H x W input; the weights of `model`
    (a ModelFile) are checked to fit it when given."""
    deployed = deploy.deploy_net(net_param, source=source, input_size=tuple(input_size))
    module = builder.Net(deployed, "TEST", source)
    if model is not None:
        module.copy_from({layer: [torch.from_numpy(blob) for blob in blobs] for layer, blobs
                          in model.read_blobs(module.blobs_by_layer(), source).items()}, source)
    modules = {id(layer): layer_module for layer, layer_module in module.layer_modules()}
    shapes, rows, counted = {}, [], set()
    counts = {"weights": 0, "biases": 0, "slopes": 0, "other": 0}
    # an Input layer (a deploy prototxt's) keeps its own shape in the deploy net: give it ours
    given = {deploy.input_blob(deployed, source): (1, 1, *input_size)}
    for (name, type_, top_shapes, parameters), layer in zip(module.output_shapes(given),
                                                             module.layer_params):
        operations = 0
        layer_module = modules.get(id(layer))
        if layer.type in CONVOLUTIONS:
            operations = multiply_adds(layer.type, layer_module, shapes[layer.bottom[0]],
                                       top_shapes[0])
        if layer_module is not None:
            layer_blobs = layer_module.blobs()
            for kind, blob in zip(_blob_kinds(layer.type, layer_blobs), layer_blobs):
                if id(blob) not in counted:
                    counted.add(id(blob))
                    counts[kind] += blob.numel()
        shapes.update(zip(layer.top, top_shapes))
        rows.append(LayerRow(name, type_, list(top_shapes), parameters, operations))
    input_pixels = input_size[0] * input_size[1]
    return NetSummary(net_param.name, source, (1, 1, *input_size), structure.scale_of(deployed),
                      rows, counts["weights"], counts["biases"], counts["slopes"],
                      counts["other"], sum(row.multiply_adds for row in rows) / input_pixels)


@dataclass(frozen=True)
class ModelReport:
    path: Path
    sha256: str
    size: int
    iteration: int
    net: NetSummary


@dataclass(frozen=True)
class SolverstateReport:
    path: Path
    sha256: str
    size: int
    iteration: int
    current_step: int
    seconds: float          # of training so far (max_seconds's clock)
    solver_source: str
    solver: dict            # the solver's settings that differ from Caffe's defaults
    history_blobs: int
    model_path: Path
    model_present: bool
    model_matches: bool     # present and its sha256 is the one recorded at the snapshot
    net: NetSummary


def inspect_model(path, input_size=structure.DEFAULT_INPUT_SIZE):
    model = caffe_model.read_model(path)
    summary = summarize_net(deploy.model_net(path, model), str(path), input_size, model)
    return ModelReport(Path(path), snapshot.file_sha256(path), Path(path).stat().st_size,
                       model.iteration, replace(summary, source=model.net_source))


def inspect_solverstate(path, input_size=structure.DEFAULT_INPUT_SIZE):
    state = snapshot.load_solverstate(path)
    for array in state.arrays():      # read to verify their checksums: damage is reported
        snapshot.read_array(array, dtype=None)
    with stored_in(path, state.stored_names):
        setup = loading.solver_setup_from_texts(state.solver_source, state.solver_text,
                                               state.net_files)
        summary = summarize_net(setup.train_net, setup.net_sources[0][0], input_size)
    model_path = Path(path).parent / state.learned_net
    present = model_path.is_file()
    matches = present and snapshot.file_sha256(model_path) == state.learned_net_sha256
    return SolverstateReport(Path(path), snapshot.file_sha256(path), Path(path).stat().st_size,
                             state.iteration, state.current_step, state.seconds,
                             state.solver_source,
                             schema.to_mapping(setup.solver), len(state.history), model_path,
                             present, matches, summary)


INSPECTORS = {".model": inspect_model, caffe_model.SUFFIX: inspect_model,
              ".solverstate": inspect_solverstate}


def inspect_file(path, input_size=structure.DEFAULT_INPUT_SIZE):
    """A ModelReport or SolverstateReport, chosen by the file's suffix."""
    path = Path(path)
    if path.suffix not in INSPECTORS:
        raise UserError(path, f"cannot inspect {path.suffix or 'a file without suffix'!r}: give "
                        f"a {' or '.join(INSPECTORS)} file")
    return INSPECTORS[path.suffix](path, input_size)


# --------------------------------------------------------------------------- text

def _shape(shape):
    return "x".join(map(str, shape)) if shape else "scalar"


def _table(header, rows):
    widths = [max(len(str(row[column])) for row in [header, *rows])
              for column in range(len(header))]
    return ["  ".join(str(cell).rjust(width) if index >= 3 else str(cell).ljust(width)
                      for index, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in [header, *rows]]


def format_net(summary):
    scale = f", x{summary.scale}" if summary.scale else ""
    lines = [f"net             {summary.name or '(unnamed)'} ({summary.source}{scale})",
             f"input           {_shape(summary.input_shape)} (deploy form; --input HxW)", ""]
    lines += _table(["layer", "type", "top shape", "params", "mult-adds"],
                    [[row.name, row.type, ", ".join(map(_shape, row.top_shapes)),
                      f"{row.parameters:,}", f"{row.multiply_adds:,}" if row.multiply_adds
                      else ""] for row in summary.layers])
    total = summary.weights + summary.biases + summary.slopes + summary.other
    lines += ["",
              f"weights         {summary.weights:,} (convolution and deconvolution kernels)",
              f"biases          {summary.biases:,}",
              f"PReLU slopes    {summary.slopes:,}"]
    if summary.other:
        lines.append(f"other blobs     {summary.other:,} (InnerProduct, Scale, Bias, BatchNorm)")
    lines += [f"parameters      {total:,} (a shared blob once)",
              f"mult-adds       {summary.multiply_adds_per_pixel:,.1f} per input pixel"]
    return lines


def format_report(report):
    """The report as text, one `key  value` line each, then the layer table."""
    if isinstance(report, ModelReport):
        lines = [f"model           {report.path}"]
    else:
        lines = [f"solverstate     {report.path}"]
    lines += [f"sha256          {report.sha256}",
              f"size            {report.size:,} bytes",
              f"iteration       {report.iteration:,}"]
    if isinstance(report, SolverstateReport):
        status = ("present, sha256 matches" if report.model_matches else
                  "present, but changed since the snapshot (sha256 differs)" if
                  report.model_present else "missing")
        lines += [f"current_step    {report.current_step}",
                  f"training time   {report.seconds:,.1f} s",
                  f"history blobs   {report.history_blobs}",
                  f"model file      {report.model_path} ({status})",
                  f"solver          {report.solver_source}"]
        lines += [f"  {key}: {value}" for key, value in report.solver.items()]
    return "\n".join(lines + [""] + format_net(report.net))
