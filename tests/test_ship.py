"""`runner ship`: a run's snapshot into results/models/, with what produced it."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from helpers import ROOT, assert_one_line_error, read_csv, tiny_run
from in_process import run_main
from runner import ship
from runner.files import snapshot
from runner.train import train_log


def mark_scale(h5_path, scale):
    """Give synthetic data the `scale` attribute `python -m prep` writes."""
    with h5py.File(h5_path, "a") as h5:
        h5.attrs["scale"] = scale


def test_ship_copies_the_model_with_its_stored_configs_and_logs(tmp_path, capfd):
    solver = tiny_run(tmp_path, max_iter=10, snapshot=10)
    assert run_main(capfd, "train", "--solver", solver).returncode == 0
    state = tmp_path / "run" / "tiny_iter_10.solverstate"
    shipped = tmp_path / "models"
    result = run_main(capfd, "ship", state, "--name", "tiny_x3", "--out", shipped)
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


def test_ship_refuses_a_snapshot_whose_model_changed(tmp_path, capfd):
    solver = tiny_run(tmp_path, max_iter=10, snapshot=10)
    assert run_main(capfd, "train", "--solver", solver).returncode == 0
    (tmp_path / "run" / "tiny_iter_10.model").write_bytes(b"not the model")
    shipped = tmp_path / "models"
    assert_one_line_error(run_main(capfd, "ship", tmp_path / "run" / "tiny_iter_10.solverstate",
                                   "--name", "tiny_x3", "--out", shipped), "tiny_iter_10")
    assert not (shipped / "tiny_x3.model").exists()


def test_ship_name_must_be_a_plain_file_name(tmp_path, capfd):
    result = run_main(capfd, "ship", tmp_path / "x.solverstate", "--name", "../elsewhere",
                      "--out", tmp_path / "models")
    assert_one_line_error(result, "--name", "plain file name")
    assert not (tmp_path / "models").exists()


def test_models_keep_their_training_data_scale_and_ship_fills_it_in_for_older_ones(tmp_path, capfd):
    solver = tiny_run(tmp_path, max_iter=10, snapshot=10)
    mark_scale(tmp_path / "train.h5", 3)
    assert run_main(capfd, "train", "--solver", solver).returncode == 0
    model_path = tmp_path / "run" / "tiny_iter_10.model"
    assert snapshot.load_model(model_path).scale == 3
    # a snapshot from before models kept it: ship takes it from the training data
    older = snapshot.load_model(model_path)
    snapshot.save_model(model_path, snapshot.ModelFile(older.blobs, older.net_text,
                                                       older.net_source, older.iteration))
    state_path = tmp_path / "run" / "tiny_iter_10.solverstate"
    state = snapshot.load_solverstate(state_path)
    state.learned_net_sha256 = snapshot.file_sha256(model_path)
    snapshot.save_solverstate(state_path, state)
    result = run_main(capfd, "ship", state_path, "--name", "tiny_x3", "--out", tmp_path / "models")
    assert result.returncode == 0, result.stderr
    shipped = snapshot.load_model(tmp_path / "models" / "tiny_x3.model")
    assert shipped.scale == 3 and shipped.iteration == 10
    older_blobs, shipped_blobs = older.read_blobs(), shipped.read_blobs()
    assert all(np.array_equal(a, b) for layer in older_blobs
               for a, b in zip(older_blobs[layer], shipped_blobs[layer]))


def test_ship_best_takes_the_snapshot_its_test_net_scored_highest(tmp_path, capfd):
    solver = tiny_run(tmp_path, max_iter=40, snapshot=10)
    assert run_main(capfd, "train", "--solver", solver).returncode == 0
    run = tmp_path / "run"
    psnr_at = dict(train_log.test_points(train_log.read_records(run / "tiny_log.jsonl")))
    (run / "tiny_iter_40.solverstate").unlink()     # a snapshot gone is no candidate
    best = max((psnr_at[iteration], iteration) for iteration in (10, 20, 30))[1]
    shipped = tmp_path / "models"
    result = run_main(capfd, "ship", run / "tiny_iter_10.solverstate", "--best",
                      "--name", "tiny_x3", "--out", shipped)
    assert result.returncode == 0, result.stderr
    assert f"tiny_iter_{best}.solverstate" in result.stdout
    assert f"{psnr_at[best]:.4f} dB at iteration {best}, the best of the 3 snapshots" \
        in result.stdout
    assert (shipped / "tiny_x3.model").read_bytes() == \
        (run / f"tiny_iter_{best}.model").read_bytes()


def test_ship_best_needs_tested_snapshots(tmp_path, capfd):
    solver = tiny_run(tmp_path, max_iter=5, snapshot=5)     # tests every 10: none ran
    assert run_main(capfd, "train", "--solver", solver).returncode == 0
    assert_one_line_error(run_main(capfd, "ship", tmp_path / "run" / "tiny_iter_5.solverstate",
                                   "--best", "--name", "tiny_x3", "--out", tmp_path / "m"),
                          "tiny_iter_5.solverstate", "test-net PSNR")
    assert not (tmp_path / "m").exists()


def test_snapshot_keep_removes_all_but_the_newest_and_the_best_tested(tmp_path, capfd):
    # snapshot_keep 1 over a run and its resume: what is left is the newest pair and the pair
    # test net #0 scored best over both, so `ship --best` chooses as it would among them all
    solver = tiny_run(tmp_path, max_iter=30, snapshot=10)
    keep = ["--set", "snapshot_keep=1"]
    assert run_main(capfd, "train", "--solver", solver, *keep).returncode == 0
    run = tmp_path / "run"
    assert [iteration for iteration, _ in snapshot.snapshots(run / "tiny", ".solverstate")] \
        in ([10, 30], [20, 30], [30])
    result = run_main(capfd, "train", "--solver", solver, *keep, "--set", "max_iter=60",
                      "--snapshot", run / "tiny_iter_30.solverstate")
    assert result.returncode == 0, result.stderr
    psnr_at = dict(train_log.test_points(train_log.read_records(run / "tiny_log.jsonl")))
    # the last snapshot (60) is written before its test: the best tested until then stays too
    best_before = -max((psnr_at[iteration], -iteration) for iteration in range(10, 60, 10))[1]
    left = sorted({best_before, 60})
    assert [iteration for iteration, _ in snapshot.snapshots(run / "tiny", ".solverstate")] \
        == left
    assert [iteration for iteration, _ in snapshot.snapshots(run / "tiny")] == left
    best = max(left, key=lambda iteration: (psnr_at[iteration], -iteration))
    assert best == max(range(10, 70, 10), key=lambda iteration: (psnr_at[iteration], -iteration))
    result = run_main(capfd, "ship", run / "tiny_iter_60.solverstate", "--best",
                      "--name", "tiny_x3", "--out", tmp_path / "models")
    assert result.returncode == 0, result.stderr
    assert f"tiny_iter_{best}.solverstate" in result.stdout


def test_surplus_snapshots_spare_the_newest_and_the_best():
    psnr_at = {10: 20.0, 20: 22.5, 30: 21.0, 40: 22.5}
    assert snapshot.surplus_snapshots([10, 20, 30, 40, 50], 1, psnr_at) == [10, 30, 40]
    assert snapshot.surplus_snapshots([10, 20, 30, 40, 50], 2, psnr_at) == [10, 30]
    assert snapshot.surplus_snapshots([10, 20], 1, {}) == [10]      # nothing tested yet
    assert snapshot.surplus_snapshots([20], 3, psnr_at) == []


def tiny_runs(tmp_path, capfd, second_net_edit=(), seeds=(7, 8)):
    """Snapshots at iteration 10 of tiny runs of one net (run/a, run/b, ...), one per seed (the
    second one's net edited by `second_net_edit`, --set KEY=VALUE texts)."""
    states = []
    for index, seed in enumerate(seeds):
        prefix, edits = f"run/{'abcd'[index]}", second_net_edit if index == 1 else ()
        solver = tiny_run(tmp_path, max_iter=10, snapshot=10, prefix=prefix)
        sets = [item for edit in (f"random_seed={seed}", *edits) for item in ("--set", edit)]
        assert run_main(capfd, "train", "--solver", solver, *sets).returncode == 0
        states.append(tmp_path / f"{prefix}_iter_10.solverstate")
    return states


def test_ship_of_several_snapshots_averages_their_weights(tmp_path, capfd):
    states = tiny_runs(tmp_path, capfd)
    shipped = tmp_path / "models"
    result = run_main(capfd, "ship", *states, "--name", "soup", "--out", shipped)
    assert result.returncode == 0, result.stderr
    assert "averaging the weights of 2 snapshots" in result.stdout
    ingredients = [snapshot.load_model(state.with_suffix(".model")).read_blobs()
                   for state in states]
    soup = snapshot.load_model(shipped / "soup.model")
    assert soup.net_text == snapshot.load_model(states[0].with_suffix(".model")).net_text
    blobs = soup.read_blobs()
    assert set(blobs) == {"conv1", "prelu1", "conv2", "prelu2", "deconv"}
    for layer, averaged in blobs.items():
        for index, blob in enumerate(averaged):
            first, second = ingredients[0][layer][index], ingredients[1][layer][index]
            assert not np.array_equal(first, second)
            np.testing.assert_allclose(blob, (first.astype(np.float64) + second) / 2,
                                       rtol=1e-6, atol=1e-9)
    folder = shipped / "soup"
    assert sorted(path.name for path in folder.iterdir()) == \
        ["1_run_iter_10", "2_run_iter_10", "ingredients.yaml"]
    for run in ("1_run_iter_10", "2_run_iter_10"):
        assert sorted(path.name for path in (folder / run).iterdir()) == \
            ["curves.png", "log.jsonl", "net.yaml", "solver.yaml", "train.log"]
    assert "snapshot_prefix: " + str(tmp_path / "run" / "b") in \
        (folder / "2_run_iter_10" / "solver.yaml").read_text()
    listed = yaml.safe_load((folder / "ingredients.yaml").read_text())["ingredients"]
    assert [entry["snapshot"] for entry in listed] == [str(state) for state in states]
    assert listed[1]["model_sha256"] == \
        snapshot.file_sha256(states[1].with_suffix(".model"))


def test_ship_averages_only_distinct_snapshots_of_one_net(tmp_path, capfd):
    states = tiny_runs(tmp_path, capfd, ["conv2.convolution_param.dilation=2",
                                              "conv2.convolution_param.pad=2"])
    shipped = tmp_path / "models"
    assert_one_line_error(run_main(capfd, "ship", *states, "--name", "soup", "--out", shipped),
                          "b_iter_10.solverstate", "'conv2'", "one net")
    assert_one_line_error(run_main(capfd, "ship", states[0], states[0], "--name", "soup",
                                   "--out", shipped), "a_iter_10.solverstate", "twice")
    assert not (shipped / "soup.model").exists()


def test_greedy_soup_keeps_what_raises_the_averages_score(tmp_path, capfd):
    """Scored by closeness to the average of runs a and b: each alone scores the same, their
    average scores best, and run c, far off, is left out because the average falls with it."""
    runs = [ship._Run.of(state) for state in tiny_runs(tmp_path, capfd, seeds=(7, 8, 9))]
    target = ship.averaged([run.model for run in runs[:2]],
                           [run.model_path for run in runs[:2]]).read_blobs()
    far = {layer: [blob * 3 for blob in blobs]
           for layer, blobs in runs[2].model.read_blobs().items()}
    runs[2].model = snapshot.ModelFile(far, runs[2].model.net_text, runs[2].model.net_source,
                                       runs[2].model.iteration, runs[2].model.scale)

    def closeness(model, path):
        blobs = model.read_blobs()
        return -sum(float(np.abs(blob - target[layer][index]).sum())
                    for layer in target for index, blob in enumerate(blobs[layer]))

    lines = []
    kept, trials = ship.greedy_soup(runs, closeness, lines.append)
    # a and b score the same alone (up to rounding): either may come first
    assert sorted(run.state_path.name for run in kept) == \
        ["a_iter_10.solverstate", "b_iter_10.solverstate"]
    assert [trial.kept for trial in trials] == [True, True, False]
    assert trials[2].state_path.name == "c_iter_10.solverstate"
    assert trials[0].soup == trials[0].alone < trials[1].soup == pytest.approx(0, abs=1e-3)
    assert trials[2].soup < trials[1].soup
    assert len(lines) == 6 and lines[-1].startswith("the greedy soup: 2 of 3 snapshots")


def test_ship_greedy_scores_on_held_out_images_as_runner_test_does(tmp_path, capfd):
    states = tiny_runs(tmp_path, capfd)
    config = ROOT / "configs" / "prep_x3_long.yaml"
    shipped = tmp_path / "models"
    result = run_main(capfd, "ship", *states, "--name", "soup", "--out", shipped,
                      "--greedy", config)
    assert result.returncode == 0, result.stderr
    record = yaml.safe_load((shipped / "soup" / "greedy_soup.yaml").read_text())
    assert record["validation"] == str(config)
    # each snapshot's score alone is runner test --validation's mean for its model
    for state in states:
        tried = next(entry for entry in record["tried"] if entry["snapshot"] == str(state))
        tested = run_main(capfd, "test", "--model", state.with_suffix(".model"),
                          "--validation", config, "--out", tmp_path / "test")
        assert tested.returncode == 0, tested.stderr
        rows = read_csv(tmp_path / "test" / f"{state.with_suffix('').name}_x3.csv")
        model_rows = [float(row["psnr"]) for row in rows if row["method"] != "bicubic"]
        assert len(model_rows) == 10
        assert tried["alone_psnr"] == pytest.approx(np.mean(model_rows), abs=1e-4)
        assert f"{state}: {tried['alone_psnr']:.4f} dB alone" in result.stdout
    kept = [entry for entry in record["tried"] if entry["kept"]]
    assert record["shipped_psnr"] == kept[-1]["average_psnr"]
    assert record["shipped_psnr"] >= max(entry["alone_psnr"] for entry in record["tried"])
    if len(kept) == 2:
        assert (shipped / "soup" / "ingredients.yaml").exists()
    else:
        assert (shipped / "soup.model").read_bytes() == \
            Path(kept[0]["snapshot"]).with_suffix(".model").read_bytes()


def test_ship_greedy_needs_several_snapshots_and_a_held_out_split(tmp_path, capfd):
    states = tiny_runs(tmp_path, capfd)
    shipped = tmp_path / "models"
    assert_one_line_error(run_main(capfd, "ship", states[0], "--name", "soup", "--out", shipped,
                                   "--greedy", ROOT / "configs" / "prep_x3_long.yaml"),
                          "--greedy", "at least two")
    assert_one_line_error(run_main(capfd, "ship", *states, "--name", "soup", "--out", shipped,
                                   "--greedy", ROOT / "configs" / "prep_x3.yaml"),
                          "prep_x3.yaml", "validation_sets")
    assert not shipped.exists() or not list(shipped.iterdir())
