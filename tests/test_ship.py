"""`runner ship`: a run's snapshot into results/models/, with what produced it."""
from helpers import assert_one_line_error, run_cli, tiny_run


def test_ship_copies_the_model_with_its_stored_configs_and_logs(tmp_path):
    solver = tiny_run(tmp_path, max_iter=10, snapshot=10)
    assert run_cli("train", "--solver", solver).returncode == 0
    state = tmp_path / "run" / "tiny_iter_10.solverstate"
    shipped = tmp_path / "models"
    result = run_cli("ship", state, "--name", "tiny_x3", "--out", shipped)
    assert result.returncode == 0, result.stderr
    assert (shipped / "tiny_x3.model").read_bytes() == \
        (tmp_path / "run" / "tiny_iter_10.model").read_bytes()
    folder = shipped / "tiny_x3"
    assert sorted(path.name for path in folder.iterdir()) == \
        ["curves.png", "log.jsonl", "net.yaml", "solver.yaml", "train.log"]
    assert (folder / "solver.yaml").read_text() == solver.read_text()
    assert (folder / "net.yaml").read_text() == (tmp_path / "net.yaml").read_text()
    assert "Optimization Done." in (folder / "train.log").read_text()
    assert not [path for path in shipped.iterdir() if path.name.startswith(".")]


def test_ship_refuses_a_snapshot_whose_model_changed(tmp_path):
    solver = tiny_run(tmp_path, max_iter=10, snapshot=10)
    assert run_cli("train", "--solver", solver).returncode == 0
    (tmp_path / "run" / "tiny_iter_10.model").write_bytes(b"not the model")
    shipped = tmp_path / "models"
    assert_one_line_error(run_cli("ship", tmp_path / "run" / "tiny_iter_10.solverstate",
                                  "--name", "tiny_x3", "--out", shipped), "tiny_iter_10")
    assert not (shipped / "tiny_x3.model").exists()


def test_ship_name_must_be_a_plain_file_name(tmp_path):
    result = run_cli("ship", tmp_path / "x.solverstate", "--name", "../elsewhere",
                     "--out", tmp_path / "models")
    assert_one_line_error(result, "--name", "plain file name")
    assert not (tmp_path / "models").exists()
