"""The newer nets we ship configs for (VDSR, ESPCN, DRRN): each trains a few iterations from its
own net, solver and prep files on real T91 subimages (smaller and fewer) with the loss falling,
then runs as a deploy net on a whole plane, tiled or not."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from prep import pipeline
from runner import inspect
from runner.config import loading, schema
from runner.files import snapshot
from runner.imaging import datasets
from runner.infer import tiles, torch_engine
from runner.train.solver import TrainOptions, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ITERATIONS = 16

# name -> the prep config's sizes made small for a quick run
SMALLER = {"vdsr": {"lr_size": 21, "hr_size": 21, "stride": 21, "test_stride": 21},
           "espcn": {"lr_size": 7, "hr_size": 21, "stride": 21, "test_stride": 21},
           "drrn": {"lr_size": 15, "hr_size": 15, "stride": 15, "test_stride": 15}}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A datasets folder whose T91 is six of T91's images."""
    root = tmp_path_factory.mktemp("datasets")
    (root / "T91").mkdir()
    for image in datasets.image_files(datasets.dataset_folder("T91"))[:6]:
        (root / "T91" / image.name).symlink_to(image)
    return root


def short_run(name, folder, images):
    """Train `name`'s shipped net and solver for ITERATIONS on data cut by its prep config
    (smaller subimages, batch 2, no test passes); the displayed loss of every iteration."""
    prep = loading.load(schema.PrepConfig, CONFIGS / f"prep_{name}_x3.yaml")
    prep = dataclasses.replace(prep, **SMALLER[name], augment_rotations=[],
                               train_sets=["T91"], test_sets=["T91"],
                               output_dir=str(folder / "data"))
    pipeline.prepare(prep, data=images)
    net = yaml.safe_load((CONFIGS / f"{name}_net.yaml").read_text())
    for layer in net["layer"]:
        if layer["type"] == "HDF5Data":
            listing = Path(layer["hdf5_data_param"]["source"]).name
            layer["hdf5_data_param"].update(source=str(folder / "data" / listing), batch_size=2)
    (folder / "net.yaml").write_text(yaml.safe_dump(net))
    solver = yaml.safe_load((CONFIGS / f"{name}_solver.yaml").read_text())
    solver.update(net=str(folder / "net.yaml"), max_iter=ITERATIONS, display=1, test_interval=0,
                  snapshot=0, snapshot_prefix=str(folder / "run"))
    (folder / "solver.yaml").write_text(yaml.safe_dump(solver))
    train(loading.load_solver(folder / "solver.yaml"), TrainOptions())
    records = [json.loads(line) for line in (folder / "run_log.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if "loss" in record]


@pytest.mark.parametrize("name", SMALLER)
def test_newer_net_trains_and_super_resolves(name, images, tmp_path):
    losses = short_run(name, tmp_path, images)
    # one loss per iteration, and Caffe's last display line at max_iter
    assert len(losses) == ITERATIONS + 1 and all(np.isfinite(losses))
    print(f"{name}: loss {np.mean(losses[:3]):.4g} -> {np.mean(losses[-3:]):.4g} (means of 3) in "
          f"{ITERATIONS} "
          f"iterations: {' '.join(f'{loss:.3g}' for loss in losses)}")
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    model = torch_engine.load_for_inference(snapshot.newest_snapshot(tmp_path / "run"))
    assert model.scale == 3                       # VDSR and DRRN: the data's scale
    assert model.upsamples_first == (name != "espcn")
    plane = np.random.default_rng(0).random((12, 10)).astype(np.float32)
    whole = tiles.super_resolve(model, plane, tile_size=None)
    assert whole.shape == (36, 30) and np.isfinite(whole).all()
    # tiles of the plane the net runs on: 2 x 2 of the upscaled image, 3 x 2 of the LR one
    tile_size = 20 if model.upsamples_first else 5
    assert np.abs(tiles.super_resolve(model, plane, tile_size) - whole).max() < 1e-5


@pytest.mark.parametrize("name, weights, paper", [
    # VDSR: 20 layers of 3x3 kernels, 64 filters ("665K" in the paper)
    ("vdsr", 64 * 9 + 18 * 64 * 64 * 9 + 64 * 9, 665_000),
    # DRRN B1U9: its 9 units share two 3x3 kernels of 128 filters, counted once ("297K")
    ("drrn", 128 * 9 + 2 * 128 * 128 * 9 + 128 * 9, 297_000),
    # ESPCN (5, 64), (3, 32), (3, 9), by hand
    ("espcn", 5 * 5 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 9, None),
])
def test_weight_counts_of_the_newer_nets(name, weights, paper):
    net = loading.load(schema.NetParameter, CONFIGS / f"{name}_net.yaml")
    assert inspect.summarize_net(net, f"{name}_net.yaml", (16, 16)).weights == weights
    assert paper is None or round(weights, -3) == paper
