"""Models for the predict / test / inspect tests: built from the real net files, saved as .model.

- `save_initial_model`: the net's deploy form with its fillers' weights (seeded), for I/O tests.
- `bicubic_like`: an edit that routes the LR pixel through channel 0 of every layer (Y values are
  positive, so PReLU passes them unchanged) into a deconvolution kernel that is MATLAB's bicubic x3
  response, truncated to the 9x9 taps the kernel has: close to bicubic, below it.
- `trained_model`: a real quick training run (`runner.train.solver.train`, fine-tuning from the
  bicubic-like start) on HDF5 data made by the prep package; cached for the test session.
"""
from pathlib import Path

import numpy as np
import torch

from prep import pipeline
from runner.config import loading, schema
from runner.files import snapshot
from runner.imaging import matlab
from runner.infer import deploy
from runner.net import builder
from runner.train.solver import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
FSRCNN_NET = ROOT / "configs" / "fsrcnn_net.yaml"


def save_initial_model(path, net_file=FSRCNN_NET, seed=0, edit=None, net_text=None, scale=0):
    """A .model of a net file's deploy form with seeded filler weights, `edit`ed in place;
    `scale`: the training data's, as the solver records it (0: not known)."""
    text = net_text or Path(net_file).read_text()
    param = loading.parse_config(schema.NetParameter, text, str(net_file))
    module = builder.Net(deploy.deploy_net(param), "TEST",
                     generator=torch.Generator().manual_seed(seed))
    blobs = {layer: [blob.detach().numpy().copy() for blob in layer_blobs]
             for layer, layer_blobs in module.blobs_by_layer().items()}
    if edit:
        edit(blobs)
    snapshot.save_model(path, snapshot.ModelFile(blobs, text, str(net_file), 0, scale))
    return Path(path)


def run_as_predict(model, plane, forward):
    """Another runtime's output for a plane, fed and cropped as runner/infer/tiles.py feeds our
    net: `forward` maps a 1 x 1 x H x W float32 array to the net's output array."""
    if model.upsamples_first:
        plane = matlab.imresize(plane, model.scale)
    plane = model.geometry.padded(np.asarray(plane, np.float32))
    return model.geometry.cropped(forward(plane[None, None])[0, 0])


def stronger_deconvolution(blobs):
    """Random weights whose output spans about the 0..1 pixel range (not ~0), so tiling errors
    would show."""
    blobs["deconv"][0] *= 30.0


def bicubic_kernel(scale=3, taps=9):
    """MATLAB's bicubic x`scale` response to one LR pixel, the `taps` HR pixels a stride-`scale`
    deconvolution with pad (taps - scale) // 2 gives it, renormalised per output phase."""
    impulse = np.zeros((1, 9))
    impulse[0, 4] = 1.0
    response = matlab.imresize(impulse, scale)[0]
    start = scale * 4 - (taps - scale) // 2
    kernel = response[start:start + taps]
    phase_sums = np.array([kernel[phase::scale].sum() for phase in range(scale)])
    return kernel / phase_sums[np.arange(taps) % scale]


def bicubic_like(blobs):
    for name, arrays in blobs.items():
        if name.startswith("conv"):
            weights, bias = arrays
            weights[0] = 0.0
            centre = weights.shape[-1] // 2
            weights[0, 0, centre, centre] = 1.0
            bias[0] = 0.0
    kernel = bicubic_kernel()
    blobs["deconv"][0][0, 0] = np.outer(kernel, kernel)
    blobs["deconv"][1][:] = 0.0


TRAIN_SOLVER = """net: {net}
base_lr: 0.0003
type: Adam
momentum: 0.9
momentum2: 0.999
lr_policy: fixed
display: 0
max_iter: {iterations}
snapshot_prefix: {prefix}
solver_mode: CPU
random_seed: 1
"""

_TRAINED = {}


def trained_model(folder, iterations=300):
    """A snapshot of FSRCNN(56,12,4) x3 fine-tuned for `iterations` Adam steps from the
    bicubic-like start, on 16x16 / 48x48 T91 subimages prepared by the prep package (larger
    than the tutorial's 7x7, so the zero-padded borders weigh less in a short run)."""
    if iterations in _TRAINED:
        return _TRAINED[iterations]
    folder = Path(folder)
    data = folder / "data"
    pipeline.prepare(schema.PrepConfig(scale=3, lr_size=16, hr_size=48, stride=30,
                                       test_stride=48, train_sets=["T91"], test_sets=["Set5"],
                                       output_dir=str(data)))
    net_text = (FSRCNN_NET.read_text().replace("results/data/x3/", f"{data}/")
                .replace("batch_size: 128", "batch_size: 16"))
    net_file = folder / "fsrcnn_net.yaml"
    net_file.write_text(net_text)
    start = save_initial_model(folder / "bicubic_like.model", net_file, edit=bicubic_like)
    solver_file = folder / "solver.yaml"
    solver_file.write_text(TRAIN_SOLVER.format(net=net_file, iterations=iterations,
                                               prefix=folder / "run" / "fsrcnn"))
    train(loading.load_solver(solver_file), TrainOptions(log=False), weights=start)
    _TRAINED[iterations] = snapshot.newest_snapshot(folder / "run" / "fsrcnn")
    return _TRAINED[iterations]
