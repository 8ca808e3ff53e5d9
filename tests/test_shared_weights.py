"""Weights shared by `param { name }` as Caffe's Net shares them: one blob for every layer that
names it (the first one owns it), gradients summed, one update, Caffe's checks; and the sharing
kept through snapshots and resume, --weights, Caffe export and import."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import write_h5
from runner import export
from runner.config import caffe_proto, loading, schema
from runner.errors import UserError
from runner.files import caffe_model, snapshot
from runner.infer import torch_engine
from runner.net.builder import Net
from runner.train.solver import TrainOptions, train

SHARED = "param: [{name: rec_w}, {name: rec_b}]"
RECURSIVE_NET = """name: tiny_recursive
layer:
  - {{name: data, type: HDF5Data, top: [data, label], include: {{phase: TRAIN}},
     hdf5_data_param: {{source: {folder}/train.txt, batch_size: 8, shuffle: true,
                       dataset: [Input, Ground]}}}}
  - {{name: data, type: HDF5Data, top: [data, label], include: {{phase: TEST}},
     hdf5_data_param: {{source: {folder}/test.txt, batch_size: 8, dataset: [Input, Ground]}}}}
  - {{name: conv_in, type: Convolution, bottom: data, top: h0,
     convolution_param: {{num_output: 4, kernel_size: 3, pad: 1, weight_filler: {{type: msra}}}}}}
  - {{name: rec1, type: Convolution, bottom: h0, top: h1, {shared},
     convolution_param: {{num_output: 4, kernel_size: 3, pad: 1, weight_filler: {{type: msra}}}}}}
  - {{name: relu1, type: ReLU, bottom: h1, top: h1}}
  - {{name: rec2, type: Convolution, bottom: h1, top: h2, {shared},
     convolution_param: {{num_output: 4, kernel_size: 3, pad: 1, weight_filler: {{type: msra}}}}}}
  - {{name: relu2, type: ReLU, bottom: h2, top: h2}}
  - {{name: deconv, type: Deconvolution, bottom: h2, top: out,
     convolution_param: {{num_output: 1, kernel_size: 9, stride: 3, pad: 3,
                         weight_filler: {{type: gaussian, std: 0.01}}}}}}
  - {{name: loss, type: EuclideanLoss, bottom: [out, label], top: loss}}
"""


def recursive_net(folder=".", shared=SHARED, phase="TRAIN", seed=0):
    text = RECURSIVE_NET.format(folder=folder, shared=shared)
    return Net(loading.parse_config(schema.NetParameter, text, "net.yaml"), phase, "net.yaml",
               torch.Generator().manual_seed(seed),
               input_shapes={"data": (2, 1, 7, 7), "label": (2, 1, 21, 21)})


def test_one_blob_for_every_layer_that_names_it_and_its_gradients_add_up():
    net = recursive_net()
    blobs = net.blobs_by_layer()
    assert blobs["rec1"][0] is blobs["rec2"][0] and blobs["rec1"][1] is blobs["rec2"][1]
    owners = [(layer, index) for layer, index, *_ in net.learnable_blobs()]
    assert owners == [("conv_in", 0), ("conv_in", 1), ("rec1", 0), ("rec1", 1),
                      ("deconv", 0), ("deconv", 1)]
    assert net.weight_count() == 4 * 9 + 4 * 4 * 9 + 4 * 81      # the shared kernel once
    data, label = torch.rand(2, 1, 7, 7), torch.rand(2, 1, 21, 21)
    net.loss(net.forward({"data": data, "label": label})).backward()
    # the same computation in plain torch ops, the shared kernel used twice
    (w0, b0), (w, b), (wd, bd) = ([blob.detach().clone().requires_grad_() for blob in
                                   blobs[name]] for name in ("conv_in", "rec1", "deconv"))
    h0 = F.conv2d(data, w0, b0, padding=1)
    h2 = F.relu(F.conv2d(F.relu(F.conv2d(h0, w, b, padding=1)), w, b, padding=1))
    out = F.conv_transpose2d(h2, wd, bd, stride=3, padding=3)
    (((out - label) ** 2).sum() / 4).backward()
    np.testing.assert_allclose(blobs["rec1"][0].grad, w.grad, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(blobs["rec2"][1].grad, b.grad, rtol=1e-4, atol=1e-6)


def test_shape_mismatch_names_the_parameter_the_layers_and_both_shapes():
    text = RECURSIVE_NET.format(folder=".", shared=SHARED).replace(
        "top: h2, param: [{name: rec_w}, {name: rec_b}],\n     convolution_param: "
        "{num_output: 4, kernel_size: 3, pad: 1",
        "top: h2, param: [{name: rec_w}, {name: rec_b}],\n     convolution_param: "
        "{num_output: 4, kernel_size: 5, pad: 2")
    with pytest.raises(UserError) as raised:
        Net(loading.parse_config(schema.NetParameter, text, "net.yaml"), "TRAIN",
            input_shapes={"data": (2, 1, 7, 7), "label": (2, 1, 21, 21)})
    message = str(raised.value)
    assert "layer 'rec2' (Convolution): cannot share param 'rec_w' of layer 'rec1'" in message
    assert "(4, 4, 3, 3)" in message and "(4, 4, 5, 5)" in message


def shared_specs(first, second):
    """The recursive net with the two sharers' param entries for the kernel given."""
    text = RECURSIVE_NET.format(folder=".", shared=SHARED)
    text = text.replace("top: h1, param: [{name: rec_w}", f"top: h1, param: [{first}", 1)
    text = text.replace("top: h2, param: [{name: rec_w}", f"top: h2, param: [{second}", 1)
    return Net(loading.parse_config(schema.NetParameter, text, "net.yaml"), "TRAIN",
               input_shapes={"data": (2, 1, 7, 7), "label": (2, 1, 21, 21)})


def test_multipliers_set_by_any_sharer_and_refused_when_they_differ():
    net = shared_specs("{name: rec_w}", "{name: rec_w, lr_mult: 2, decay_mult: 0}")
    owner = [entry for entry in net.learnable_blobs() if entry[:2] == ("rec1", 0)][0]
    assert owner[3:] == (2.0, 0.0)       # set where rec2 shares it, for the one blob
    net = shared_specs("{name: rec_w, lr_mult: 0.5}", "{name: rec_w}")
    owner = [entry for entry in net.learnable_blobs() if entry[:2] == ("rec1", 0)][0]
    assert owner[3:] == (0.5, 1.0)
    with pytest.raises(UserError, match="layer 'rec2'.*shared param 'rec_w' has mismatched "
                                        "lr_mult"):
        shared_specs("{name: rec_w, lr_mult: 3}", "{name: rec_w, lr_mult: 2}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few iterations of the recursive net, snapshotted at 2 and 4."""
    folder = tmp_path_factory.mktemp("recursive")
    write_h5(folder / "train.h5", 32, seed=1)
    write_h5(folder / "test.h5", 8, seed=2)
    (folder / "train.txt").write_text(f"{folder / 'train.h5'}\n")
    (folder / "test.txt").write_text(f"{folder / 'test.h5'}\n")
    (folder / "net.yaml").write_text(RECURSIVE_NET.format(folder=folder, shared=SHARED))
    (folder / "solver.yaml").write_text(
        f"net: {folder / 'net.yaml'}\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: fixed\n"
        f"max_iter: 4\nsnapshot: 2\nsnapshot_prefix: {folder / 'run'}\nsolver_mode: CPU\n"
        "random_seed: 3\ntype: Adam\n")
    solver = train(loading.load_solver(folder / "solver.yaml"), TrainOptions(log=False))
    return folder, solver


def test_training_updates_the_shared_blob_once_and_snapshots_keep_it(trained):
    folder, solver = trained
    blobs = solver.net.blobs_by_layer()
    assert blobs["rec1"][0] is blobs["rec2"][0]
    # Adam keeps history per learnable blob: the shared one counted once
    assert len(solver.update_rule.state()) == 2 * 6
    model = snapshot.load_model(folder / "run_iter_4.model").read_blobs()
    np.testing.assert_array_equal(model["rec1"][0], model["rec2"][0])
    np.testing.assert_array_equal(model["rec1"][0], blobs["rec1"][0].detach().numpy())
    # resume from iteration 2 and reach the same weights: the sharing is rebuilt from the net
    state_path = folder / "run_iter_2.solverstate"
    resumed = train(loading.load_solver(folder / "solver.yaml"), TrainOptions(log=False),
                    resume_from=(state_path, snapshot.load_solverstate(state_path)))
    again = resumed.net.blobs_by_layer()
    assert again["rec1"][0] is again["rec2"][0]
    for name, layer_blobs in blobs.items():
        for ours, theirs in zip(layer_blobs, again[name]):
            assert torch.equal(ours, theirs), name


def test_weights_and_caffe_export_keep_the_sharing(trained, tmp_path):
    folder, _ = trained
    model_path = folder / "run_iter_4.model"
    prototxt, caffemodel = export.export(model_path, tmp_path)
    deployed = caffe_proto.parse_text(schema.NetParameter, prototxt.read_text(), str(prototxt))
    by_name = {layer.name: layer for layer in deployed.layer}
    assert [spec.name for spec in by_name["rec2"].param] == ["rec_w", "rec_b"]
    stored = caffe_model.parse_caffemodel(caffemodel.read_bytes(), caffemodel)
    np.testing.assert_array_equal(stored["rec1"][0], stored["rec2"][0])   # as Caffe stores it
    loaded = torch_engine.load_for_inference(caffemodel).net.blobs_by_layer()
    assert loaded["rec1"][0] is loaded["rec2"][0]
    np.testing.assert_array_equal(loaded["rec2"][0], snapshot.load_model(model_path)
                                  .read_blobs()["rec2"][0])
    fresh = recursive_net(seed=9)
    fresh.copy_from({name: [torch.from_numpy(blob) for blob in blobs]
                     for name, blobs in stored.items()}, caffemodel)
    assert fresh.blobs_by_layer()["rec1"][0] is fresh.blobs_by_layer()["rec2"][0]
    np.testing.assert_array_equal(fresh.blobs_by_layer()["rec1"][0].detach(), stored["rec1"][0])
