"""`runner test`: the papers' protocol through runner/score/evaluate.py, the published bicubic table,
reports, and a trained model beating bicubic."""

import numpy as np
import pytest

from helpers import ROOT, assert_one_line_error, read_csv, run_cli
from in_process import run_main
from runner.config import loading, schema
from runner.errors import UserError
from runner.imaging import datasets, matlab
from runner.infer import torch_engine
from runner.score import evaluate, published
from runner.score.protocol import Protocol
from sr_models import save_initial_model, trained_model

# Bicubic baselines published with SRCNN / FSRCNN (mean Y PSNR in dB over each set) ...
PUBLISHED_BICUBIC_PSNR = {("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42,
                          ("Set14", 2): 30.23, ("Set14", 3): 27.54, ("Set14", 4): 26.00}
# ... and the Set5 bicubic SSIMs published with VDSR (Kim et al. 2016).
PUBLISHED_BICUBIC_SSIM = {("Set5", 2): 0.9299, ("Set5", 3): 0.8682, ("Set5", 4): 0.8104}


@pytest.fixture(scope="module")
def bicubic_means():
    """{(set, scale): Mean} of bicubic by evaluate's functions, every published entry."""
    means = {}
    for scale in (2, 3, 4):
        scores = evaluate.evaluate_sets(["Set5", "Set14"], Protocol(scale),
                                        evaluate.scoring_methods())
        means.update({(mean.dataset, mean.scale): mean for mean in evaluate.means(scores)})
    return means


@pytest.mark.parametrize("key", list(PUBLISHED_BICUBIC_PSNR))
def test_bicubic_reproduces_the_published_psnr(bicubic_means, key):
    assert round(bicubic_means[key].psnr, 2) == PUBLISHED_BICUBIC_PSNR[key]


@pytest.mark.parametrize("key", list(PUBLISHED_BICUBIC_SSIM))
def test_bicubic_reproduces_the_published_ssim(bicubic_means, key):
    assert round(bicubic_means[key].ssim, 4) == PUBLISHED_BICUBIC_SSIM[key]


def test_runner_test_bicubic_only_prints_and_writes_the_published_table(tmp_path,
                                                                         bicubic_means):
    result = run_cli("test", "--bicubic-only", "--sets", "Set5,Set14", "--scale", "2,3,4",
                     "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    for (dataset, scale), expected in PUBLISHED_BICUBIC_PSNR.items():
        rows = [row for row in read_csv(tmp_path / f"bicubic_x{scale}.csv")
                if row["dataset"] == dataset]
        assert len(rows) == {"Set5": 5, "Set14": 14}[dataset]
        mean = np.mean([float(row["psnr"]) for row in rows])
        assert round(mean, 2) == expected
        assert f"{expected:.2f} / {bicubic_means[(dataset, scale)].ssim:.4f}" in result.stdout
        assert f"| {dataset} | {len(rows)} | {expected:.2f} / " in \
            (tmp_path / f"bicubic_x{scale}.md").read_text()


def test_validation_scores_the_images_prep_holds_out_whole(tmp_path, capfd):
    # the x3 long run's prep config holds ten General-100 images out of training; `--validation`
    # scores exactly those, whole, under a set name no published table takes for General-100
    config = ROOT / "configs" / "prep_x3_long.yaml"
    prep_config = loading.load(schema.PrepConfig, config)
    held = [path.name for _, path in datasets.validation_images(
        prep_config.validation_sets, prep_config.validation_images)]
    assert len(held) == 10
    result = run_main(capfd, "test", "--bicubic-only", "--validation", config, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "bicubic_x3.csv")
    assert [row["image"] for row in rows] == held
    assert {row["dataset"] for row in rows} == {"General100-validation"}
    # bicubic there, as measured on these ten images before this option existed
    assert round(np.mean([float(row["psnr"]) for row in rows]), 2) == 28.09


def test_validation_needs_a_prep_config_that_holds_images_out(tmp_path, capfd):
    config = ROOT / "configs" / "prep_x3.yaml"
    assert_one_line_error(run_main(capfd, "test", "--bicubic-only", "--validation", config,
                                   "--out", tmp_path), "prep_x3.yaml", "validation_sets")


def test_protocol_options_are_explicit_and_change_the_numbers():
    scores = {}
    for protocol in (Protocol(3), Protocol(3, shave=0),
                     Protocol(3, y_conversion="opencv")):
        scores[protocol] = evaluate.evaluate_sets(["Set5"], protocol,
                                                  evaluate.scoring_methods())
    psnrs = [evaluate.means(items)[0].psnr for items in scores.values()]
    assert len(set(psnrs)) == 3
    assert "3 pixels shaved" in Protocol(3).describe()
    assert "0 pixels shaved" in Protocol(3, shave=0).describe()


def test_one_image_by_hand():
    # the protocol written out on a synthetic image: Y, modcrop, bicubic down and up, uint8
    image = np.random.default_rng(0).integers(0, 256, (40, 37, 3), dtype=np.uint8)
    truth = matlab.to_uint8(matlab.rgb2y(image, channel_order="bgr"))[:39, :36]
    estimate = matlab.to_uint8(matlab.imresize(matlab.imresize(truth, 1 / 3), 3))
    difference = truth[3:-3, 3:-3].astype(float) - estimate[3:-3, 3:-3]
    expected = 10 * np.log10(255 ** 2 / np.mean(difference ** 2))
    psnr, _ = evaluate.evaluate_image(image, Protocol(3),
                                      evaluate.scoring_methods(), "x")["bicubic"]
    assert psnr == pytest.approx(expected, abs=1e-9)


def test_an_image_too_small_to_score_is_a_user_error():
    with pytest.raises(UserError, match="too small to score"):
        evaluate.evaluate_image(np.zeros((18, 40), np.uint8), Protocol(3),
                                evaluate.scoring_methods(), "tiny.png")


def test_a_trained_model_beats_bicubic(tmp_path_factory, capfd):
    model_path = trained_model(tmp_path_factory.mktemp("trained"))
    out = tmp_path_factory.mktemp("reports")
    result = run_main(capfd, "test", "--model", model_path, "--sets", "Set5,Set14", "--out", out)
    assert result.returncode == 0, result.stderr
    rows = read_csv(out / f"{model_path.stem}_x3.csv")
    for dataset in ("Set5", "Set14"):
        means = {method: np.mean([float(row["psnr"]) for row in rows
                                  if row["dataset"] == dataset and row["method"] == method])
                 for method in ("bicubic", "FSRCNN-56_12_4")}
        assert means["FSRCNN-56_12_4"] > means["bicubic"] + 0.2, (dataset, means)
        # beside the published FSRCNN figures, with the difference
        ours = round(means["FSRCNN-56_12_4"], 2)
        line = next(line for line in result.stdout.splitlines()
                    if line.strip().startswith(f"{dataset} x3: ours"))
        assert f"ours {ours:.2f}" in line, line
        assert "re-evaluation" in line and (dataset != "Set5" or "paper 33.16" in line), line
    report = (out / f"{model_path.stem}_x3.md").read_text()
    assert "## Published figures (PSNR)" in report and "Lai et al." in report


def test_published_figures_are_matched_by_net_name_set_and_scale():
    rows = [evaluate.Mean("Set5", 3, "bicubic", 5, 30.39, 0.8682),
            evaluate.Mean("Set5", 3, "FSRCNN-56_12_4", 5, 33.30, 0.92),
            evaluate.Mean("BSD100", 3, "FSRCNN-56_12_4", 100, 28.50, 0.79),
            evaluate.Mean("Urban100", 3, "FSRCNN-56_12_4", 100, 26.00, 0.8),
            evaluate.Mean("Set5", 3, "SRCNN-9-1-5", 5, 32.40, 0.9),
            evaluate.Mean("Set5", 3, "my-net", 5, 40.0, 0.99)]
    found = published.comparisons(rows)
    assert [(item.dataset, item.source.label, item.published) for item in found] == [
        ("Set5", "paper", 33.16), ("Set5", "re-evaluation", 33.18),
        ("BSD100", "re-evaluation", 28.53), ("Set5", "paper", 32.39)]
    assert [round(item.difference, 2) for item in found] == [0.14, 0.12, -0.03, 0.01]
    lines = published.format_comparisons(found)
    assert "  Set5 x3: ours 33.30; paper 33.16 (+0.14), re-evaluation 33.18 (+0.12)" in lines
    assert "  BSD100 x3: ours 28.50; re-evaluation 28.53 (-0.03)" in lines
    table = published.markdown_comparisons(found[:3])
    assert "| BSD100 | x3 | 28.50 |  | 28.53 (-0.03) |" in table
    assert published.comparisons(rows[:1]) == [] and published.format_comparisons([]) == []


def test_model_scale_must_match_and_the_model_must_exist(tmp_path, capfd):
    model_path = save_initial_model(tmp_path / "random.model")
    assert_one_line_error(run_main(capfd, "test", "--model", model_path, "--scale", "4",
                                   "--sets", "Set5", "--out", tmp_path), "random.model",
                          "x3 model")
    assert_one_line_error(run_main(capfd, "test", "--model", tmp_path / "none.model"),
                          "none.model", "no such model file")
    assert_one_line_error(run_main(capfd, "test", "--sets", "Set6", "--out", tmp_path), "Set6",
                          "dataset folder not found")
    assert_one_line_error(run_main(capfd, "test", "--bicubic-only", "--model", model_path),
                          "runner test", "--bicubic-only")
    assert not list(tmp_path.glob("*.md"))


def test_the_models_method_is_its_net_on_the_lr_plane(tmp_path):
    model = torch_engine.load_for_inference(save_initial_model(tmp_path / "random.model"))
    methods = evaluate.scoring_methods(model)
    low_res = np.random.default_rng(1).random((10, 12)) * 255
    assert list(methods) == ["bicubic", "FSRCNN-56_12_4"]
    assert methods["FSRCNN-56_12_4"](low_res, 3).shape == (30, 36)
