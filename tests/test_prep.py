"""`make prep`: subimage pairs, HDF5 output, the dataset setting, fetch, bad input via the CLI."""
import hashlib
import re
import stat
import time
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from helpers import ROOT, assert_one_line_error, created_mode, run_cli
from in_process import run_main
from prep import pipeline, subimages
from runner.config import loading
from runner.config.schema import PrepConfig
from runner.errors import UserError
from runner.imaging import datasets, images
from runner.imaging.matlab import imresize, modcrop, to_uint8

DATA_ROOT = datasets.data_root()


def needs_data(*names):
    missing = [name for name in names if not (DATA_ROOT / name).is_dir()]
    return pytest.mark.skipif(bool(missing), reason=f"no {missing} in {DATA_ROOT} (set SR_DATA)")


def matlab_y(bgr):
    """rgb2ycbcr's Y written out from the formula, on a BGR image as cv2 reads it."""
    blue, green, red = (bgr[..., channel].astype(np.float64) for channel in range(3))
    return np.floor(16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255 + 0.5)


def read_h5(path):
    with h5py.File(path, "r") as h5:
        return np.asarray(h5["Input"]), np.asarray(h5["Ground"]), dict(h5.attrs)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_dataset(root, name, pictures):
    """A dataset folder `root/name` holding `pictures` ({file name: array or bytes})."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, picture in pictures.items():
        data = picture if isinstance(picture, bytes) else \
            cv2.imencode(Path(file).suffix, picture)[1].tobytes()
        (folder / file).write_bytes(data)
    return folder


def smooth_colour_image(height, width, seed=0):
    """A colourful BGR image with red and blue running opposite ways (so swapping them shows)."""
    rows, cols = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (height, width))
    blue = 255 * cols / max(width - 1, 1)
    red = 255 - blue
    green = 100 + noise + 60 * np.sin(rows / 5)
    return np.clip(np.stack([blue, green, red], axis=2), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- real data, default x3

@pytest.fixture(scope="module")
def x3_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("x3")
    prep_config = PrepConfig(output_dir=str(output))
    return prep_config, pipeline.prepare(prep_config)


@needs_data("T91", "Set5")
def test_default_x3_writes_pairs_in_caffe_layout(x3_run):
    prep_config, (train, test) = x3_run
    for summary, count in ((train, 91), (test, 5)):
        inputs, ground, attributes = read_h5(summary.h5_paths[0])
        assert len(inputs) == len(ground) > 1000
        assert inputs.shape[1:] == (1, 7, 7) and ground.shape[1:] == (1, 21, 21)
        assert inputs.dtype == ground.dtype == np.float32
        assert 0 <= inputs.min() and inputs.max() <= 1 and ground.max() > 0.9
        assert summary.input_shape == inputs.shape and summary.images_used == count
        assert summary.skipped == () and summary.copies_too_small == 0
        assert attributes["scale"] == 3 and attributes["degradation"] == "paper"
        assert attributes["lr_size"] == 7 and attributes["hr_size"] == 21
        assert attributes["lr_padding"] == 0 and attributes["y_conversion"] == "matlab"
        assert attributes["stride"] == (19 if summary.split == "train" else 21)
        assert "output_dir:" in attributes["prep_config"]
        assert len(attributes["sources"]) == count
        assert summary.list_path.read_text() == f"{summary.h5_paths[0]}\n"
    _, _, attributes = read_h5(train.h5_paths[0])
    published = dict(line.split()[::-1] for line in (DATA_ROOT / "SHA256SUMS").read_text()
                     .splitlines())
    for name, digest in zip(attributes["sources"], attributes["sources_sha256"]):
        assert published[f"./{name}"] == digest


@needs_data("T91", "Set5")
def test_lr_subimages_are_windows_of_the_whole_image_imresize(x3_run):
    _, (train, test) = x3_run
    for summary, stride, first in ((test, 21, "Set5/baby_GT.bmp"), (train, 19, "T91/t1.bmp")):
        inputs, ground, _ = read_h5(summary.h5_paths[0])
        hr = modcrop(matlab_y(cv2.imread(str(DATA_ROOT / first))), 3)
        lr = to_uint8(imresize(hr, 1 / 3))
        # HR starts every `stride` pixels, snapped down to a multiple of the scale
        rows, cols = ([start - start % 3 for start in range(0, length - 21 + 1, stride)]
                      for length in hr.shape)
        index = 0
        for row in rows:
            for col in cols:
                assert np.array_equal(ground[index, 0] * 255, hr[row:row + 21, col:col + 21])
                expected = lr[row // 3:row // 3 + 7, col // 3:col // 3 + 7]
                assert np.allclose(inputs[index, 0] * 255, expected, atol=1e-4)
                index += 1


@needs_data("Set5")
def test_prep_twice_gives_byte_identical_files(tmp_path):
    prep_config = PrepConfig(train_sets=["Set5"], test_sets=["Set5"], output_dir=str(tmp_path))
    first = [sha256(summary.h5_paths[0]) for summary in pipeline.prepare(prep_config)]
    time.sleep(1.1)      # a stored timestamp (seconds) would differ now
    second = [sha256(summary.h5_paths[0]) for summary in pipeline.prepare(prep_config)]
    assert first == second
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


# --------------------------------------------------------------------------- synthetic data

def test_validation_images_are_held_out_of_training_and_cut_like_the_test_split(tmp_path):
    root = tmp_path / "data"
    names = [f"im_{index}.png" for index in range(1, 9)]
    make_dataset(root, "Train", {name: smooth_colour_image(48, 48 + index)
                                 for index, name in enumerate(names)})
    prep_config = PrepConfig(train_sets=["Train"], test_sets=[], validation_sets=["Train"],
                             validation_images=3, output_dir=str(tmp_path / "out"),
                             augment_rotations=[90])
    summaries = {summary.split: summary for summary in pipeline.prepare(prep_config, data=root)}
    assert sorted(summaries) == ["train", "valid"]     # no test sets: no test split
    train, valid = (read_h5(summaries[split].h5_paths[0])[2] for split in ("train", "valid"))
    # three of the eight, evenly spaced in name order: the 1st, 3rd and 6th
    held = ["Train/im_1.png", "Train/im_3.png", "Train/im_6.png"]
    assert list(valid["sources"]) == held
    assert sorted(train["sources"]) == sorted(f"Train/{name}" for name in names
                                              if f"Train/{name}" not in held)
    assert valid["stride"] == prep_config.test_stride
    assert list(valid["augment_rotations"]) == []
    assert (tmp_path / "out" / "valid.txt").read_text().strip().endswith("valid.h5")


def test_holding_out_every_training_image_is_a_user_error(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, "Train", {"a.png": smooth_colour_image(48, 48)})
    prep_config = PrepConfig(train_sets=["Train"], test_sets=[], validation_sets=["Train"],
                             output_dir=str(tmp_path / "out"))
    with pytest.raises(UserError, match="nothing is left to train on"):
        pipeline.prepare(prep_config, data=root)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def colour_data(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, "Colour", {"a.png": smooth_colour_image(60, 45)})
    return root


def prep_colour(root, output, **keys):
    prep_config = PrepConfig(train_sets=["Colour"], test_sets=["Colour"],
                             output_dir=str(output), **keys)
    train, test = pipeline.prepare(prep_config, data=root)
    return read_h5(train.h5_paths[0]), read_h5(test.h5_paths[0])


@pytest.mark.parametrize("y_conversion", ["matlab", "opencv"])
def test_tutorial_recipe_takes_y_from_bgr_in_the_right_order(colour_data, tmp_path, y_conversion):
    bgr = cv2.imread(str(colour_data / "Colour" / "a.png"))
    blue, green, red = (bgr[..., channel].astype(np.float64) for channel in range(3))
    if y_conversion == "matlab":
        y = matlab_y(bgr)
        swapped = matlab_y(bgr[..., ::-1])     # the tutorial's bug: RGB weights on BGR data
    else:
        y = np.floor(0.299 * red + 0.587 * green + 0.114 * blue + 0.5)
        swapped = np.floor(0.299 * blue + 0.587 * green + 0.114 * red + 0.5)
    (inputs, ground, attributes), _ = prep_colour(colour_data, tmp_path / "out", hr_size=21,
                                                  degradation="tutorial", stride=21,
                                                  y_conversion=y_conversion)
    assert attributes["degradation"] == "tutorial"
    # 60x45, 21x21 every 21 pixels: rows 0, 21 and cols 0, 21 (no modcrop, no snapping)
    corners = [(row, col) for row in (0, 21) for col in (0, 21)]
    assert len(ground) == len(corners)
    for label, lr, (row, col) in zip(ground[:, 0] * 255, inputs[:, 0] * 255, corners):
        window = y[row:row + 21, col:col + 21]
        assert np.abs(label - window).max() <= (0 if y_conversion == "matlab" else 1)
        assert np.abs(label - swapped[row:row + 21, col:col + 21]).max() > 20
        expected_lr = cv2.resize(np.round(label).astype(np.uint8), (7, 7),
                                 interpolation=cv2.INTER_CUBIC)
        assert np.allclose(lr, expected_lr, atol=1e-4)


def test_augmentation_multiplies_the_training_pairs(colour_data, tmp_path):
    # 60x45 at x3, 21x21 every 19: rows 0, 19->18, 38->36 and cols 0, 19->18: 6 pairs.
    # Downscaled by 0.5: 30x23, modcropped to 30x21: 1 pair. Rotations keep the counts.
    (plain, _, _), _ = prep_colour(colour_data, tmp_path / "plain")
    (augmented, _, attributes), (test, _, _) = prep_colour(
        colour_data, tmp_path / "augmented", augment_scales=[0.5], augment_rotations=[90, 180, 270])
    assert len(plain) == 6
    assert len(augmented) == (6 + 1) * 4
    # the test split is never augmented: every 21 pixels, rows 0, 21 and cols 0, 21
    assert len(test) == 4 and list(attributes["augment_rotations"]) == [90, 180, 270]
    assert np.array_equal(augmented[:6], plain)


def test_lr_padding_surrounds_the_lr_subimage_with_zeros(colour_data, tmp_path):
    (plain, ground, _), _ = prep_colour(colour_data, tmp_path / "plain")
    (padded, padded_ground, attributes), _ = prep_colour(colour_data, tmp_path / "pad",
                                                         lr_padding=2)
    assert padded.shape[1:] == (1, 11, 11) and attributes["lr_padding"] == 2
    assert np.array_equal(padded[:, :, 2:9, 2:9], plain)
    border = padded.copy()
    border[:, :, 2:9, 2:9] = 0
    assert not border.any()
    assert np.array_equal(padded_ground, ground)


def test_lr_context_keeps_the_image_around_the_lr_subimage(tmp_path):
    # 66x60 at x3: LR 22x20. HR rows 0, 18, 36 and cols 0, 18, 36 start LR windows at 0, 6, 12;
    # two pixels of context on each side keep LR rows 6, 12 (12 + 7 + 2 <= 22) and col 6.
    root = tmp_path / "data"
    make_dataset(root, "Colour", {"a.png": smooth_colour_image(66, 60)})
    (context, ground, attributes), _ = prep_colour(root, tmp_path / "context", lr_context=2)
    hr = modcrop(matlab_y(cv2.imread(str(root / "Colour" / "a.png"))), 3)
    lr = to_uint8(imresize(hr, 1 / 3))
    assert context.shape == (2, 1, 11, 11) and attributes["lr_context"] == 2
    for index, row in enumerate((6, 12)):
        assert np.allclose(context[index, 0] * 255, lr[row - 2:row + 9, 4:15], atol=1e-4)
        assert np.array_equal(ground[index, 0] * 255, hr[3 * row:3 * row + 21, 18:39])


def test_border_context_mirror_cuts_windows_at_the_border_from_the_mirrored_image(tmp_path):
    # the same 66x60 image: HR rows 0, 18, 36 and the last that fits, 45 (LR 0, 6, 12, 15);
    # cols 0, 18, 36, 39 (LR 0, 6, 12, 13); every window kept, its context mirrored where the
    # image ends, as inference extends it
    root = tmp_path / "data"
    make_dataset(root, "Colour", {"a.png": smooth_colour_image(66, 60)})
    (inputs, ground, _), _ = prep_colour(root, tmp_path / "mirror", lr_context=2,
                                         border_context="mirror")
    hr = modcrop(matlab_y(cv2.imread(str(root / "Colour" / "a.png"))), 3)
    mirrored = np.pad(to_uint8(imresize(hr, 1 / 3)), 2, mode="symmetric")
    starts = [(row, col) for row in (0, 6, 12, 15) for col in (0, 6, 12, 13)]
    assert inputs.shape == (len(starts), 1, 11, 11)
    for index, (row, col) in enumerate(starts):
        assert np.allclose(inputs[index, 0] * 255, mirrored[row:row + 11, col:col + 11],
                           atol=1e-4)
        assert np.array_equal(ground[index, 0] * 255,
                              hr[3 * row:3 * row + 21, 3 * col:3 * col + 21])


def test_srcnn_input_is_the_bicubic_upscale_and_the_label_its_centre(colour_data, tmp_path):
    (inputs, ground, _), _ = prep_colour(colour_data, tmp_path / "srcnn", input="bicubic",
                                         lr_size=33, hr_size=33, label_border=6, stride=14)
    hr = modcrop(matlab_y(cv2.imread(str(colour_data / "Colour" / "a.png"))), 3)
    upscaled = to_uint8(imresize(to_uint8(imresize(hr, 1 / 3)), output_shape=hr.shape))
    # 60x45: rows 0, 14 and cols 0 (33 + 14 > 45): no snapping with a bicubic input
    assert inputs.shape == (2, 1, 33, 33) and ground.shape == (2, 1, 21, 21)
    for index, row in enumerate((0, 14)):
        assert np.allclose(inputs[index, 0] * 255, upscaled[row:row + 33, :33], atol=1e-4)
        assert np.array_equal(ground[index, 0] * 255, hr[row + 6:row + 27, 6:27])


def test_offsets_snap_to_the_lr_grid_and_skip_too_small_axes():
    assert list(subimages.offsets(60, 21, 19, align=3)) == [0, 18, 36]
    assert list(subimages.offsets(60, 21, 19)) == [0, 19, 38]
    assert list(subimages.offsets(30, 21, 1, align=3)) == [0, 3, 6, 9]
    assert list(subimages.offsets(20, 21, 19)) == []


def test_a_label_one_pixel_past_the_footprint_needs_that_pixel_in_the_image():
    # 40x40 at x2 (LR 20x20), 10x10 LR subimages every 20 HR pixels, no context: 20x20 labels
    # at HR rows and cols 0 and 20; a 21x21 label at 20 would need HR pixel 40, so only the
    # one at 0 is cut, rows 0..20 of the image
    y = (np.arange(40 * 40) % 251).astype(np.uint8).reshape(40, 40)
    config = replace(PrepConfig(), scale=2, lr_size=10, hr_size=20)
    inputs, labels = subimages.make_pairs(y, config, stride=20)
    assert inputs.shape == (4, 10, 10) and labels.shape == (4, 20, 20)
    inputs, labels = subimages.make_pairs(y, replace(config, hr_size=21), stride=20)
    assert inputs.shape == (1, 10, 10) and labels.shape == (1, 21, 21)
    np.testing.assert_array_equal(labels[0], y[:21, :21])
    np.testing.assert_array_equal(inputs[0], to_uint8(imresize(y, 1 / 2))[:10, :10])


@pytest.mark.parametrize("keys, problem", [
    ({"hr_size": 20}, "hr_size must be lr_size * scale = 7 * 3 = 21, or 22"),
    ({"hr_size": 23}, "hr_size must be lr_size * scale"),
    ({"hr_size": 22, "degradation": "tutorial"}, "tutorial shrinks each HR subimage"),
    ({"input": "bicubic"}, "lr_size must equal hr_size"),
    ({"label_border": 11}, "leaves nothing"),
    ({"augment_scales": [1.5]}, "not a downscale"),
    ({"train_sets": []}, "at least one dataset"),
    ({"validation_sets": ["Set5"]}, "both a validation and a test set"),
    ({"validation_images": 3}, "names none"),
    ({"lr_context": 2, "degradation": "tutorial"}, "no image around it"),
    ({"border_context": "mirror", "degradation": "tutorial"}, "no image border to mirror"),
])
def test_inconsistent_sizes_are_user_errors(keys, problem):
    with pytest.raises(UserError, match=re.escape(problem)):
        subimages.check_config(replace(PrepConfig(), **keys), "p.yaml")


# --------------------------------------------------------------------------- images

def test_read_image_gives_8_bit_y_ready_arrays(tmp_path):
    wide = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    folder = make_dataset(tmp_path, "Kinds", {
        "wide.png": wide,
        "gray.png": np.full((8, 9), 77, np.uint8),
        "alpha.png": np.dstack([smooth_colour_image(8, 9), np.zeros((8, 9), np.uint8)]),
    })
    eight_bit = images.read_image(folder / "wide.png")
    assert eight_bit.dtype == np.uint8 and np.array_equal(eight_bit, to_uint8(wide / 257.0))
    gray = images.read_image(folder / "gray.png")
    assert gray.shape == (8, 9) and images.y_channel(gray, "matlab") is gray
    colour = images.read_image(folder / "alpha.png")
    assert colour.shape == (8, 9, 3)
    assert np.array_equal(images.y_channel(colour, "matlab"), matlab_y(colour))


def test_truncated_image_is_one_user_error(tmp_path, capfd):
    data = cv2.imencode(".png", smooth_colour_image(30, 30))[1].tobytes()
    with pytest.raises(UserError, match="not a readable image"):
        images.decode_image(data[:len(data) // 2], tmp_path / "half.png")
    with pytest.raises(UserError, match="not a readable image"):
        images.decode_image(b"", tmp_path / "empty.bmp")
    assert capfd.readouterr().err == ""      # libpng's own complaint is kept off stderr


# --------------------------------------------------------------------------- dataset setting, fetch

def test_sr_data_names_the_datasets_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_DATA", str(tmp_path))
    make_dataset(tmp_path, "Mine", {"b.png": b"x", "a.BMP": b"x", "notes.txt": b"x"})
    assert [path.name for path in datasets.image_files(datasets.dataset_folder("Mine"))] == \
        ["a.BMP", "b.png"]
    with pytest.raises(UserError) as error:
        datasets.dataset_folder("T91")
    assert error.value.where == str(tmp_path / "T91") and "set SR_DATA=" in error.value.problem
    monkeypatch.delenv("SR_DATA")
    assert datasets.data_root().resolve() == (ROOT / ".." / "shared" / "data").resolve()


def test_listing_matches_the_shared_checksums():
    listing = datasets.read_listing()
    assert set(listing) >= {"T91", "Set5", "Set14", "General100", "BSD100"}
    assert len(listing["T91"].files) == 91
    assert listing["T91"].base_url.startswith("https://raw.githubusercontent.com/")
    if (DATA_ROOT / "SHA256SUMS").is_file():
        published = {line.split()[1][2:]: line.split()[0]
                     for line in (DATA_ROOT / "SHA256SUMS").read_text().splitlines()}
        listed = {f"{name}/{file}": digest for name, source in listing.items()
                  for file, digest in source.files.items()}
        assert listed == published


@pytest.fixture
def file_listing(tmp_path):
    """A listing whose URLs are file:// URLs into a temporary 'server' folder."""
    server = tmp_path / "server"
    server.mkdir()
    (server / "one.bmp").write_bytes(b"first file")
    (server / "two words.png").write_bytes(b"second file")
    digests = {name: hashlib.sha256((server / name).read_bytes()).hexdigest()
               for name in ("one.bmp", "two words.png")}
    listing = tmp_path / "datasets.yaml"
    listing.write_text(f"Demo:\n  base_url: {server.as_uri()}/\n  files:\n" +
                       "".join(f"    {name}: {digest}\n" for name, digest in digests.items()))
    return listing, server


def test_fetch_downloads_verifies_and_resumes(file_listing, tmp_path):
    listing, server = file_listing
    dest = tmp_path / "dest"
    (result,) = datasets.fetch([], dest=dest, listing=listing)
    assert (result.downloaded, result.already_present) == (2, 0)
    assert (dest / "Demo" / "two words.png").read_bytes() == b"second file"
    (again,) = datasets.fetch(["Demo"], dest=dest, listing=listing)
    assert (again.downloaded, again.already_present) == (0, 2)


def test_fetch_keeps_nothing_on_a_checksum_mismatch(file_listing, tmp_path):
    listing, server = file_listing
    (server / "one.bmp").write_bytes(b"tampered")
    dest = tmp_path / "dest"
    result = run_cli("fetch", "--dest", dest, "--listing", listing, module="prep")
    line = assert_one_line_error(result, "one.bmp", "sha256 mismatch")
    assert line.startswith(f"error: {server.as_uri()}/one.bmp: ")
    assert list((dest / "Demo").iterdir()) == []


def test_fetch_offline_is_one_line(tmp_path):
    listing = tmp_path / "datasets.yaml"
    listing.write_text("Demo:\n  base_url: http://127.0.0.1:9/\n  files:\n    a.bmp: " +
                       "a" * 64 + "\n")
    result = run_cli("fetch", "--dest", tmp_path / "dest", "--listing", listing, module="prep")
    assert_one_line_error(result, "http://127.0.0.1:9/a.bmp", "download failed", "offline?")
    assert_one_line_error(run_cli("fetch", "Dmeo", "--listing", listing, module="prep"),
                          "no dataset 'Dmeo'", "did you mean 'Demo'")



@pytest.fixture
def nothing_chosen(tmp_path, monkeypatch):
    """No SR_DATA, no ../shared/data, a download cache under tmp_path, and a listing whose
    dataset 'Good' lies behind file:// URLs; returns (server folder, cache folder)."""
    server = make_dataset(tmp_path, "server", {"a.png": smooth_colour_image(60, 45),
                                               "b.bmp": smooth_colour_image(42, 42, seed=1)})
    listing = tmp_path / "datasets.yaml"
    listing.write_text(f"Good:\n  base_url: {server.as_uri()}/\n  files:\n" + "".join(
        f"    {path.name}: {hashlib.sha256(path.read_bytes()).hexdigest()}\n"
        for path in sorted(server.iterdir())))
    monkeypatch.delenv("SR_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "DEFAULT_DATA_ROOT", tmp_path / "absent")
    monkeypatch.setattr(datasets, "LISTING", listing)
    return server, tmp_path / "cache" / "srcaffe" / "datasets"


def test_with_no_data_chosen_prep_and_runner_test_fetch_what_they_need(nothing_chosen, tmp_path,
                                                                        capfd):
    server, cache = nothing_chosen
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    pipeline.prepare(loading.load(PrepConfig, config), source=config)
    fetched = capfd.readouterr().err.strip().splitlines()
    assert fetched == [f"SR_DATA is not set and {tmp_path / 'absent'} is absent: fetching Good "
                       f"into {cache} (sha256 verified)"]
    assert sorted(path.name for path in (cache / "Good").iterdir()) == ["a.png", "b.bmp"]
    assert (tmp_path / "out" / "train.h5").is_file()
    result = run_main(capfd, "test", "--bicubic-only", "--sets", "Good", "--scale", "3",
                      "--out", tmp_path / "report")
    assert result.returncode == 0 and "fetching" not in result.stderr, result.stderr
    assert "| Good | 2 |" in (tmp_path / "report" / "bicubic_x3.md").read_text()


def test_an_interrupted_fetch_resumes_and_a_bad_file_is_never_kept(nothing_chosen):
    server, cache = nothing_chosen
    (cache / "Good").mkdir(parents=True)
    (cache / "Good" / "a.png").write_bytes((server / "a.png").read_bytes())
    (server / "b.bmp").write_bytes(b"tampered")
    with pytest.raises(UserError) as error:
        datasets.dataset_folder("Good")
    assert "sha256 mismatch" in error.value.problem
    assert sorted(path.name for path in (cache / "Good").iterdir()) == ["a.png"]


def test_an_explicit_sr_data_lacking_a_dataset_is_still_an_error(nothing_chosen, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("SR_DATA", str(tmp_path / "mine"))
    with pytest.raises(UserError) as error:
        datasets.dataset_folder("Good")
    assert error.value.where == str(tmp_path / "mine" / "Good")
    assert not (tmp_path / "cache").exists()

def test_max_pairs_per_file_writes_numbered_files_listed_in_order(good_data, tmp_path):
    """10 train pairs at most 4 a file: train1.h5 (4), train2.h5 (4), train3.h5 (2), the same
    pairs in the same order as the one file, every file with the split's attributes."""
    whole = PrepConfig(train_sets=["Good"], test_sets=["Good"], output_dir=str(tmp_path / "a"))
    one_train, _ = pipeline.prepare(whole, data=good_data)
    sharded = replace(whole, output_dir=str(tmp_path / "b"), max_pairs_per_file=4)
    train, test = pipeline.prepare(sharded, data=good_data)
    assert [path.name for path in train.h5_paths] == ["train1.h5", "train2.h5", "train3.h5"]
    assert train.list_path.read_text() == "".join(f"{path}\n" for path in train.h5_paths)
    assert [path.name for path in test.h5_paths] == ["test1.h5", "test2.h5"]
    files = [read_h5(path) for path in train.h5_paths]
    assert [len(inputs) for inputs, _, _ in files] == [4, 4, 2]
    inputs, ground, attributes = read_h5(one_train.h5_paths[0])
    assert np.array_equal(np.concatenate([part for part, _, _ in files]), inputs)
    assert np.array_equal(np.concatenate([part for _, part, _ in files]), ground)
    assert all(list(part["sources"]) == list(attributes["sources"]) for _, _, part in files)
    assert not (tmp_path / "b" / "train.h5").exists()


def test_file_ranges_split_the_pairs_without_overlap():
    assert pipeline.file_ranges("train", 10, 0) == [("train.h5", 0, 10)]
    assert pipeline.file_ranges("train", 8, 4) == [("train1.h5", 0, 4), ("train2.h5", 4, 8)]
    assert pipeline.file_ranges("test", 3, 5) == [("test1.h5", 0, 3)]


# --------------------------------------------------------------------------- the CLI, bad input

def write_config(path, output, text=""):
    path.write_text(f"train_sets: [Good]\ntest_sets: [Good]\noutput_dir: {output}\n{text}")
    return path


@pytest.fixture
def good_data(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, "Good", {"a.png": smooth_colour_image(60, 45),
                                "b.bmp": smooth_colour_image(42, 42, seed=1)})
    return root


def assert_no_h5(folder):
    assert not list(Path(folder).rglob("*.h5")), list(Path(folder).rglob("*"))


def test_cli_writes_and_summarises(good_data, tmp_path):
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert result.returncode == 0, result.stderr
    assert "train: 2 images of Good -> 10 pairs, Input 10x1x7x7, Ground 10x1x21x21" in \
        result.stdout
    assert "0 image(s) skipped" in result.stdout and result.stderr == ""
    assert (tmp_path / "out" / "train.txt").read_text() == f"{tmp_path / 'out' / 'train.h5'}\n"
    # written under a temporary name, yet with the mode the umask gives any new file
    assert stat.S_IMODE((tmp_path / "out" / "train.h5").stat().st_mode) == created_mode()


def test_cli_missing_dataset_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_DATA", str(tmp_path / "nowhere"))
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    result = run_cli("--config", config, module="prep")
    assert_one_line_error(result, tmp_path / "nowhere" / "Good", "set SR_DATA=")
    assert_no_h5(tmp_path)


def test_cli_text_file_renamed_bmp(good_data, tmp_path):
    (good_data / "Good" / "c.bmp").write_text("this is not an image\n")
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert_one_line_error(result, good_data / "Good" / "c.bmp", "not a readable image")
    assert_no_h5(tmp_path)


def test_cli_bad_test_image_writes_no_train_file_either(good_data, tmp_path):
    make_dataset(good_data, "Bad", {"c.bmp": b"not an image"})
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out", "test_sets: [Bad]\n")
    config.write_text(config.read_text().replace("test_sets: [Good]\n", ""))
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert_one_line_error(result, good_data / "Bad" / "c.bmp", "not a readable image")
    assert_no_h5(tmp_path)


def test_cli_truncated_png(good_data, tmp_path):
    data = (good_data / "Good" / "a.png").read_bytes()
    (good_data / "Good" / "a.png").write_bytes(data[:len(data) // 2])
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert_one_line_error(result, good_data / "Good" / "a.png", "not a readable image")
    assert_no_h5(tmp_path)


def test_cli_skips_and_counts_an_image_smaller_than_one_subimage(good_data, tmp_path):
    make_dataset(good_data, "Good", {"tiny.png": smooth_colour_image(20, 40)})
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert result.returncode == 0, result.stderr
    assert ("1 image(s) skipped as smaller than one 21x21 HR subimage (Good/tiny.png)"
            in result.stdout)
    _, _, attributes = read_h5(tmp_path / "out" / "train.h5")
    assert list(attributes["skipped"]) == ["Good/tiny.png"]


def test_cli_only_too_small_images_is_an_error(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, "Good", {"tiny.png": smooth_colour_image(20, 40)})
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out")
    result = run_cli("--config", config, "--data", root, module="prep")
    assert_one_line_error(result, root / "Good", "smaller than one 21x21 HR subimage")
    assert_no_h5(tmp_path)


def test_cli_unwritable_output_folder(good_data, tmp_path):
    (tmp_path / "a_file").write_text("")
    config = write_config(tmp_path / "prep.yaml", tmp_path / "a_file" / "out")
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert_one_line_error(result, tmp_path / "a_file" / "out", "cannot create the output folder")
    assert_no_h5(tmp_path)


@pytest.mark.parametrize("text, problem", [
    ("strid: 19\n", "unknown key 'strid' (did you mean 'stride'?)"),
    ("scale: three\n", "scale: expected int32, got str 'three'"),
    ("stride: 0\n", "stride: must be at least 1, got 0"),
    ("hr_size: 23\n", "hr_size must be lr_size * scale"),
])
def test_cli_invalid_prep_config(good_data, tmp_path, text, problem):
    config = write_config(tmp_path / "prep.yaml", tmp_path / "out", text)
    result = run_cli("--config", config, "--data", good_data, module="prep")
    assert_one_line_error(result, f"error: {config}: ", problem)
    assert_no_h5(tmp_path)


def test_cli_missing_config_file(tmp_path):
    result = run_cli("--config", tmp_path / "none.yaml", module="prep")
    assert_one_line_error(result, tmp_path / "none.yaml", "no such file")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("prep_*.yaml")),
                         ids=lambda path: path.name)
def test_shipped_prep_configs_are_valid(path):
    prep_config = loading.load(PrepConfig, path)
    subimages.check_config(prep_config, path)
    assert prep_config.output_dir.startswith("results/data/")
