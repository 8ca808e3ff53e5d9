"""`runner inspect`: models and solverstates; `runner time`; deploy nets."""
import pytest

from helpers import assert_one_line_error, tiny_run
from in_process import run_main
from runner import inspect, timing
from runner.config import loading, schema
from runner.files import snapshot
from runner.infer import deploy
from runner.train.solver import TrainOptions, train
from sr_models import ROOT, save_initial_model

FSRCNN_NET = ROOT / "configs" / "fsrcnn_net.yaml"


@pytest.fixture(scope="module")
def fsrcnn_model(tmp_path_factory):
    return save_initial_model(tmp_path_factory.mktemp("model") / "fsrcnn.model")


def test_fsrcnn_counts_as_the_paper_does(fsrcnn_model):
    report = inspect.inspect_file(fsrcnn_model, (7, 7))
    summary = report.net
    # 5*5*56 + 56*12 + 4*3*3*12*12 + 12*56 + 9*9*56 weights, counted by hand
    assert summary.weights == 1400 + 672 + 5184 + 672 + 4536 == 12464
    assert summary.biases == 56 + 12 * 5 + 56 + 1
    assert summary.slopes == 56 + 12 * 5 + 56
    assert summary.multiply_adds_per_pixel == 12464
    assert summary.scale == 3
    rows = {row.name: row for row in summary.layers}
    assert rows["data"].top_shapes == [(1, 1, 7, 7)]
    assert rows["deconv"].top_shapes == [(1, 1, 21, 21)]
    assert rows["conv1"].parameters == 5 * 5 * 56 + 56
    assert report.sha256 == snapshot.file_sha256(fsrcnn_model)
    assert report.net.source.endswith("fsrcnn_net.yaml")


def test_fsrcnn_s_has_3937_weights(tmp_path):
    path = save_initial_model(tmp_path / "s.model", ROOT / "configs" / "fsrcnn_s_net.yaml")
    assert inspect.inspect_file(path).net.weights == 3937


def test_solverstate_names_its_model_and_whether_it_matches(tmp_path):
    train(loading.load_solver(tiny_run(tmp_path, max_iter=4, snapshot=0)), TrainOptions(log=False))
    model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", 4)
    report = inspect.inspect_file(state_path, (7, 7))
    assert (report.iteration, report.model_path, report.model_present,
            report.model_matches) == (4, model_path, True, True)
    assert report.solver["base_lr"] == 0.001 and report.solver["max_iter"] == 4
    assert report.net.layers[-1].top_shapes == [(1, 1, 21, 21)]
    text = inspect.format_report(report)
    assert "present, sha256 matches" in text and "base_lr: 0.001" in text
    model_path.write_bytes(model_path.read_bytes() + b"changed")
    assert "changed since the snapshot" in inspect.format_report(inspect.inspect_file(state_path))
    model_path.unlink()
    assert not inspect.inspect_file(state_path).model_present


def test_inspect_cli(fsrcnn_model, tmp_path, capfd):
    result = run_main(capfd, "inspect", fsrcnn_model, "--input", "7x7")
    assert result.returncode == 0, result.stderr
    assert "12,464 (convolution and deconvolution kernels)" in result.stdout
    assert "12,464.0 per input pixel" in result.stdout
    assert snapshot.file_sha256(fsrcnn_model) in result.stdout
    assert "1x1x21x21" in result.stdout
    (tmp_path / "damaged.model").write_bytes(b"\x89HDF\r\n" + b"\x00" * 50)
    assert_one_line_error(run_main(capfd, "inspect", tmp_path / "damaged.model"),
                          "damaged.model", "not a valid model")
    assert_one_line_error(run_main(capfd, "inspect", FSRCNN_NET), "fsrcnn_net.yaml",
                          "cannot inspect")
    assert_one_line_error(run_main(capfd, "inspect", fsrcnn_model, "--input", "7by7"),
                          "--input")


# --------------------------------------------------------------------------- deploy nets

def test_deploy_net_drops_label_loss_and_what_depends_on_them():
    text = FSRCNN_NET.read_text() + (
        "  - {name: label_conv, type: Convolution, bottom: label, top: label_conv,\n"
        "     convolution_param: {num_output: 1, kernel_size: 1}}\n")
    trained = loading.parse_config(schema.NetParameter, text, "net.yaml")
    deployed = deploy.deploy_net(trained, input_size=(5, 6))
    names = [layer.name for layer in deployed.layer]
    assert names[0] == "data" and "loss" not in names and "label_conv" not in names
    assert deployed.layer[0].type == "Input"
    assert deployed.layer[0].top == ["data"]
    assert deployed.layer[0].input_param.shape[0].dim == [1, 1, 5, 6]
    assert deploy.output_blob(deployed) == "deconv"
    assert len(deployed.layer) == 1 + 15


# --------------------------------------------------------------------------- caffe time

def test_time_reports_every_layer_forward_and_backward():
    net_param = loading.load(schema.NetParameter, FSRCNN_NET)
    result = timing.time_net(net_param, str(FSRCNN_NET), iterations=2, batch=4,
                             input_size=(7, 7))
    assert [layer.name for layer in result.layers][:2] == ["conv1", "prelu1"]
    assert len(result.layers) == 16 and result.layers[-1].name == "loss"
    assert all(layer.forward_ms > 0 and layer.backward_ms > 0 for layer in result.layers)
    assert result.feed_shapes == {"data": (4, 1, 7, 7), "label": (4, 1, 21, 21)}
    assert result.iteration_ms > 0


def test_time_assumes_7x7_when_the_data_cannot_be_read(tmp_path, capfd):
    net_file = tmp_path / "net.yaml"
    net_file.write_text(FSRCNN_NET.read_text().replace("results/data/x3/", "/nowhere/"))
    result = run_main(capfd, "time", "--net", net_file, "--iterations", "1", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert "data 2x1x7x7, label 2x1x21x21" in result.stdout
    assert "deconv  forward:" in result.stdout and "Average Forward-Backward" in result.stdout
    assert_one_line_error(run_main(capfd, "time", "--net", net_file, "--device", "cuda:7"),
                          "--device")
