"""`make prep`: the images of the train, validation and test sets → subimage pairs → HDF5 +
source lists.

For each split (train: `train_sets`, `stride`, augmentation; valid: the images held out of
`validation_sets`, `test_stride`, never augmented; test: `test_sets`, `test_stride`, never
augmented) every image file is read, hashed, reduced to its Y channel and cut into pairs
(`prep/subimages.py`); the pairs go to `<output_dir>/<split>.h5`, or with `max_pairs_per_file`
to `<split>1.h5`, `<split>2.h5`, ... of at most that many pairs each (as the tutorial's
`train1.h5`), and Caffe's source list `<output_dir>/<split>.txt` names those files. A split
without sets is not written; held-out images are left out of training even where a train set
names their folder. The pairs of a split are held as uint8 (a quarter of the float32 they
become) and converted a block at a time as each file is written. The list holds the path as
`output_dir` gives it: relative paths are relative to the working directory, as Caffe reads
them (run from the repository root, as `make prep` does); an absolute `output_dir` gives
absolute paths.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from prep import hdf5_writer, subimages
from runner.config import schema
from runner.errors import UserError
from runner.imaging import datasets, images

SPLITS = ("train", "valid", "test")
# Files named in the summary when images are skipped; the rest are counted.
SKIPPED_NAMES_SHOWN = 3


@dataclass(frozen=True)
class SourceImage:
    name: str        # relative to the data root: "T91/t1.bmp"
    sha256: str
    y: np.ndarray    # uint8 Y channel


@dataclass(frozen=True)
class SplitSummary:
    split: str
    h5_paths: tuple          # in the order the source list names them
    list_path: Path
    images_used: int
    skipped: tuple           # names of images smaller than one HR subimage
    copies_too_small: int    # augmented copies too small for one HR subimage
    input_shape: tuple
    ground_shape: tuple


def read_source_image(path, name, y_conversion):
    data = images.read_bytes(path)
    y = images.y_channel(images.decode_image(data, path), y_conversion)
    return SourceImage(name, hashlib.sha256(data).hexdigest(), y)


def split_settings(prep_config, split):
    """Dataset names, stride and augmentation (scales, rotations) of one split."""
    if split == "train":
        return (prep_config.train_sets, prep_config.stride,
                (prep_config.augment_scales, prep_config.augment_rotations))
    if split == "valid":
        return prep_config.validation_sets, prep_config.test_stride, ((), ())
    return prep_config.test_sets, prep_config.test_stride, ((), ())


def split_files(prep_config, data=None):
    """{split: [(image name as "Set/file", path)]} for every split that has sets: the held-out
    validation images taken out of the train split."""
    def labelled(pairs):
        return [(f"{name}/{path.name}", path) for name, path in pairs]

    valid = labelled(datasets.validation_images(prep_config.validation_sets,
                                                prep_config.validation_images, data))
    kept_out = {name for name, _ in valid}
    splits = {"train": [pair for pair in labelled(datasets.set_images(prep_config.train_sets,
                                                                       data))
                        if pair[0] not in kept_out],
              "valid": valid, "test": labelled(datasets.set_images(prep_config.test_sets, data))}
    return {split: splits[split] for split in SPLITS if split_settings(prep_config, split)[0]}


def prepare(prep_config, data=None, source="prep config"):
    """Write the HDF5 file and source list of every split that has sets; a SplitSummary each.

    `data` overrides the datasets folder ($SR_DATA); `source` names the config in errors.
    Every image of every split is read and cut before the first file is written, so a bad
    image anywhere leaves the previous outputs as they were.
    """
    subimages.check_config(prep_config, source)
    files = split_files(prep_config, data)
    if not files["train"]:
        raise UserError(source, "validation_sets hold out every image of train_sets: nothing "
                        "is left to train on")
    output = Path(prep_config.output_dir)
    hdf5_writer.make_output_folder(output)
    config_text = yaml.safe_dump(schema.to_mapping(prep_config, include_defaults=True),
                                 sort_keys=False)
    cut = {split: cut_split(prep_config, split, pairs, config_text)
           for split, pairs in files.items()}
    summaries = []
    for split, (inputs, labels, attributes) in cut.items():
        written = file_ranges(split, len(inputs), prep_config.max_pairs_per_file)
        for name, start, stop in written:
            hdf5_writer.write_pairs(output / name, inputs[start:stop], labels[start:stop],
                                    attributes)
        summaries.append(SplitSummary(
            split, tuple(output / name for name, _, _ in written), output / f"{split}.txt",
            len(attributes["sources"]) - len(attributes["skipped"]), tuple(attributes["skipped"]),
            attributes["augmented_copies_too_small"], (len(inputs), 1, *inputs.shape[1:]),
            (len(labels), 1, *labels.shape[1:])))
    for summary in summaries:
        hdf5_writer.write_source_list(summary.list_path, summary.h5_paths)
    return summaries


def file_ranges(split, pairs, max_pairs_per_file):
    """[(file name, first pair, end)] of one split's files: `<split>.h5` holding every pair,
    or with max_pairs_per_file `<split>1.h5`, `<split>2.h5`, ... of at most that many."""
    if not max_pairs_per_file:
        return [(f"{split}.h5", 0, pairs)]
    return [(f"{split}{number}.h5", start, min(start + max_pairs_per_file, pairs))
            for number, start in enumerate(range(0, pairs, max_pairs_per_file), 1)]


def cut_split(prep_config, split, files, config_text):
    """The uint8 inputs and labels of one split from its image `files` ([(name, path)]), and
    the HDF5 attributes that record how they were made."""
    _, stride, (scales, rotations) = split_settings(prep_config, split)
    sources = [read_source_image(path, name, prep_config.y_conversion) for name, path in files]
    inputs, labels, skipped, copies_too_small = [], [], [], 0
    for image in sources:
        pairs = [subimages.make_pairs(copy, prep_config, stride)
                 for copy in subimages.augmented_copies(image.y, scales, rotations)]
        counts = [len(copy_inputs) for copy_inputs, _ in pairs]
        if not counts[0]:
            skipped.append(image.name)
            continue
        copies_too_small += counts.count(0)
        inputs.extend(copy_inputs for copy_inputs, _ in pairs)
        labels.extend(copy_labels for _, copy_labels in pairs)
    if not inputs:
        raise UserError(files[0][1].parent, f"no {split} pairs: every image is smaller than "
                        f"one {prep_config.hr_size}x{prep_config.hr_size} HR subimage")
    attributes = {
        "split": split,
        "scale": prep_config.scale,
        "degradation": prep_config.degradation,
        "input": prep_config.input,
        "lr_size": prep_config.lr_size,
        "hr_size": prep_config.hr_size,
        "stride": stride,
        "lr_padding": prep_config.lr_padding,
        "lr_context": prep_config.lr_context,
        "label_border": prep_config.label_border,
        "y_conversion": prep_config.y_conversion,
        "augment_scales": np.asarray(scales, dtype=np.float64),
        "augment_rotations": np.asarray(rotations, dtype=np.int64),
        "sources": [image.name for image in sources],
        "sources_sha256": [image.sha256 for image in sources],
        "skipped": skipped,
        "augmented_copies_too_small": copies_too_small,
        "prep_config": config_text,
    }
    return np.concatenate(inputs), np.concatenate(labels), attributes


def summary_text(prep_config, summaries, seconds):
    """One paragraph: what was read, what was skipped, what was written, how long it took."""
    parts = [f"prep x{prep_config.scale} ({prep_config.degradation} degradation, input "
             f"{prep_config.input}, {prep_config.y_conversion} Y):"]
    for summary in summaries:
        sets = "+".join(split_settings(prep_config, summary.split)[0])
        part = (f"{summary.split}: {summary.images_used} images of {sets} -> "
                f"{summary.input_shape[0]:,} pairs, Input {_shape(summary.input_shape)}, "
                f"Ground {_shape(summary.ground_shape)} in {_files(summary.h5_paths)}")
        names = ", ".join(summary.skipped[:SKIPPED_NAMES_SHOWN])
        more = ", ..." if len(summary.skipped) > SKIPPED_NAMES_SHOWN else ""
        part += (f"; {len(summary.skipped)} image(s) skipped as smaller than one "
                 f"{prep_config.hr_size}x{prep_config.hr_size} HR subimage"
                 + (f" ({names}{more})" if names else ""))
        if summary.copies_too_small:
            part += f"; {summary.copies_too_small} augmented copies too small, left out"
        parts.append(part + ";")
    lists = ", ".join(str(summary.list_path) for summary in summaries)
    parts.append(f"source lists {lists}; {seconds:.2f} s.")
    return " ".join(parts)


def _files(paths):
    if len(paths) == 1:
        return str(paths[0])
    return f"{len(paths)} files {paths[0]} ... {paths[-1]}"


def _shape(shape):
    return "x".join(map(str, shape))
