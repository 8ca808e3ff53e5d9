"""`runner predict`'s head start (runner/predict.py, HeadStart): while torch is imported, a
forked child super-resolves the first images with OpenCV's engine; each file is what that
engine alone writes, the rest what torch alone writes, and errors and interruptions end both."""
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, assert_one_line_error, cli_environment, run_cli
from runner import predict
from runner.imaging import datasets

SET5 = datasets.data_root() / "Set5"
MODEL = ROOT / "results" / "models" / "fsrcnn_x3.model"
# baby (512x512) and bird (288x288) fit, butterfly (256x256) would pass it
TWO_IMAGES = 350_000
# runner predict with auto choosing torch for any folder, and the head start's budget set
FORCED = """import sys
from runner import cli, predict
from runner.infer import engines
engines.opencv_limits = lambda: engines.OpenCVLimits(one_input=0, side_by_side=0, one_thread=0)
predict.HEAD_START_PIXELS = int(sys.argv[1])
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("baby_GT.bmp", "bird_GT.bmp", "butterfly_GT.bmp", "head_GT.bmp"):
        shutil.copy(SET5 / name, images)
    return images


def forced_predict(budget, *args):
    return subprocess.run([sys.executable, "-c", FORCED, str(budget), "predict", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, env=cli_environment(),
                          timeout=600)


def outputs(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_head_start_takes_the_first_images_within_its_budget(folder):
    paths = sorted(folder.iterdir())
    two_threads = predict.Options(threads=2)
    assert predict.head_start_count(paths, two_threads, TWO_IMAGES) == 2
    # never every input (this process has its own), never on one thread or with --jobs
    assert predict.head_start_count(paths, two_threads, 10 ** 9) == len(paths) - 1
    assert predict.head_start_count(paths, predict.Options(threads=1), TWO_IMAGES) == 0
    assert predict.head_start_count(paths, predict.Options(threads=2, jobs=2), TWO_IMAGES) == 0
    assert predict.head_start_count([folder / "clip.mp4"] + paths, two_threads) == 0


def test_each_file_is_what_its_engine_alone_writes(folder, tmp_path):
    result = forced_predict(TWO_IMAGES, folder, "--model", MODEL, "--out", tmp_path / "ahead",
                            "--threads", "2")
    assert result.returncode == 0, result.stderr
    assert "torch engine, the first 2 inputs by OpenCV's while torch loaded" in result.stdout
    assert result.stdout.count(" -> ") == 4
    for engine, threads in (("opencv", "1"), ("torch", "2")):
        alone = run_cli("predict", folder, "--model", MODEL, "--out", tmp_path / engine,
                        "--threads", threads, "--engine", engine)
        assert alone.returncode == 0, alone.stderr
    ahead, opencv, torch = (outputs(tmp_path / name) for name in ("ahead", "opencv", "torch"))
    names = sorted(ahead)
    assert len(names) == 4 and not any(name.startswith(".") for name in names)
    assert [ahead[name] == opencv[name] for name in names[:2]] == [True, True]
    assert [ahead[name] == torch[name] for name in names[2:]] == [True, True]


def test_a_bad_image_in_the_head_start_ends_the_run_with_its_error(folder, tmp_path):
    bad = folder / "bird_GT.bmp"
    bad.write_bytes(bad.read_bytes()[:2000])    # its header whole: the head start takes it
    assert predict.head_start_count(sorted(folder.iterdir()), predict.Options(threads=2),
                                    TWO_IMAGES) == 2
    out = tmp_path / "out"
    result = forced_predict(TWO_IMAGES, folder, "--model", MODEL, "--out", out, "--threads", "2")
    assert_one_line_error(result, bad.name)
    written = sorted(path.name for path in out.iterdir())
    assert "baby_GT_x3_fsrcnn-56_12_4.png" in written
    assert not any(name.startswith(".") or name.startswith("bird") for name in written)


def test_closing_stops_the_child_and_leaves_no_partial_file(folder, tmp_path):
    out = tmp_path / "out"
    script = f"""import time
from runner import predict
paths = sorted(__import__("pathlib").Path({str(folder)!r}).iterdir())
ahead = predict.HeadStart({str(MODEL)!r}, None, paths[:3], {str(out)!r},
                          predict.Options(threads=2))
assert ahead.taken() == 3
time.sleep(0.3)
ahead.close()
assert ahead.pid is None
print("closed")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, env=cli_environment(), timeout=600)
    assert result.returncode == 0 and "closed" in result.stdout, result.stderr
    assert not any(path.name.startswith(".") for path in out.iterdir())
    assert len(list(out.iterdir())) < 3
