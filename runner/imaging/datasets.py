"""Where the datasets are (`SR_DATA`), which image files a set holds, and how to fetch them.

`SR_DATA` names the folder holding `T91/`, `Set5/`, `Set14/`, `General100/` and `BSD100/`; unset,
it is `../shared/data` next to the repository (taken from this package's location, not the cwd)
and, where that is absent too, a download cache (`$XDG_CACHE_HOME/srcaffe/datasets`, else
`~/.cache/srcaffe/datasets`) that a dataset is fetched into the first time it is needed.
`configs/datasets.yaml` lists each folder's origin and the sha256 of every file: `fetch` downloads
to a temporary name, checks the sha256 and only then renames, so a folder never holds a file that
is wrong or half-written.
"""
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.config import user_cache
from runner.config.loading import read_text
from runner.errors import UserError, did_you_mean
from runner.files.snapshot import file_sha256

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DATA_ROOT_VARIABLE = "SR_DATA"
LISTING = REPO_ROOT / "configs" / "datasets.yaml"
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
HOW_TO_SET = f"set {DATA_ROOT_VARIABLE}=/path/to/data (or make {DATA_ROOT_VARIABLE}=...)"
DOWNLOAD_TIMEOUT_S = 60
DOWNLOAD_CHUNK = 1 << 20
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def download_cache():
    """Where datasets are fetched to when nothing says where they are."""
    return user_cache.folder("datasets")


def chosen_root(override=None):
    """The datasets folder the user chose: `override` (a --data flag), else $SR_DATA, else
    ../shared/data when it exists; None when nothing says where the datasets are."""
    chosen = override or os.environ.get(DATA_ROOT_VARIABLE)
    if chosen:
        return Path(chosen)
    return DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else None


def data_root(override=None):
    """The datasets folder: the chosen one, else the download cache."""
    return chosen_root(override) or download_cache()


def dataset_folder(name, root=None, listing=None):
    """The folder of one dataset (`T91`). Under a chosen root a missing folder is a UserError
    saying where it was looked for; with none chosen, the dataset is fetched into the download
    cache first (one line on stderr says so), checksums verified."""
    chosen = chosen_root(root)
    if chosen is not None:
        folder = chosen / name
        if not folder.is_dir():
            raise UserError(folder, f"dataset folder not found: {HOW_TO_SET}, or download it "
                            f"with `python -m prep fetch {name}`")
        return folder
    cache = download_cache()
    (source,) = listed_sources([name], listing or LISTING)
    if any(not (cache / name / file).is_file() for file in source.files):
        print(f"{DATA_ROOT_VARIABLE} is not set and {DEFAULT_DATA_ROOT} is absent: fetching "
              f"{name} into {cache} (sha256 verified)", file=sys.stderr)
        _fetch_dataset(source, cache / name)
    return cache / name


def image_files(folder):
    """The image files of a dataset folder, sorted by name; a folder without any is an error."""
    try:
        files = sorted(path for path in Path(folder).iterdir()
                       if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as error:
        raise UserError(folder, f"cannot list the folder ({error.strerror})") from None
    if not files:
        raise UserError(folder, f"holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def held_out(files, count):
    """`count` of a validation set's image files (0: all), evenly spaced in name order."""
    if not count or count >= len(files):
        return list(files)
    return [files[index * len(files) // count] for index in range(count)]


def set_images(set_names, root=None):
    """[(set name, image path)] of every image of the named dataset folders, in set and file
    order."""
    return [(name, path) for name in set_names
            for path in image_files(dataset_folder(name, root))]


def validation_images(set_names, count, root=None):
    """[(set name, image path)] of the images a prep config holds out of training for
    validation (its `validation_sets` and `validation_images`): `prep` leaves them out of the
    train split, `runner test --validation` scores them whole."""
    return [pair for name in set_names for pair in held_out(set_images([name], root), count)]


@dataclass(frozen=True)
class DatasetSource:
    """One dataset folder as `configs/datasets.yaml` lists it."""

    name: str
    base_url: str    # ends with "/"; a file's URL is base_url + its quoted name
    files: dict      # file name -> sha256 (hex)


def read_listing(path=LISTING):
    """The datasets of a listing file by name, each checked to be
    `name: {base_url: URL ending in /, files: {file name: sha256}}`."""
    try:
        listing = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        raise UserError(path, f"invalid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(listing, dict) or not listing:
        raise UserError(path, "expected a mapping of dataset names to {base_url, files}")
    return {str(name): _dataset_source(str(name), entry, path) for name, entry in listing.items()}


def _dataset_source(name, entry, path):
    if not isinstance(entry, dict) or set(entry) != {"base_url", "files"}:
        raise UserError(path, f"{name}: expected exactly the keys base_url and files")
    base_url, files = entry["base_url"], entry["files"]
    if not isinstance(base_url, str) or not base_url.endswith("/"):
        raise UserError(path, f"{name}.base_url: expected a URL ending with '/', got {base_url!r}")
    if not isinstance(files, dict) or not files:
        raise UserError(path, f"{name}.files: expected a mapping of file names to sha256")
    for file, digest in files.items():
        if not isinstance(file, str) or "/" in file or file.startswith("."):
            raise UserError(path, f"{name}.files: {file!r} is not a plain file name")
        if not isinstance(digest, str) or not SHA256_PATTERN.fullmatch(digest):
            raise UserError(path, f"{name}.files.{file}: expected 64 lowercase hex digits")
    return DatasetSource(name, base_url, dict(files))


@dataclass(frozen=True)
class FetchResult:
    name: str
    downloaded: int
    already_present: int


def fetch(names, dest=None, listing=LISTING):
    """Download the named datasets (all listed ones when `names` is empty) into `dest`/<name>/.

    Files already there with the right sha256 are kept, so an interrupted fetch resumes.
    Returns one FetchResult per dataset.
    """
    dest = data_root(dest)
    return [_fetch_dataset(source, dest / source.name)
            for source in listed_sources(names, listing)]


def listed_sources(names, listing=LISTING):
    """The DatasetSource of each name (every listed one when `names` is empty); a name the
    listing lacks is a UserError."""
    sources = read_listing(listing)
    for name in names:
        if name not in sources:
            raise UserError(listing, f"no dataset {name!r} listed{did_you_mean(name, sources)}; "
                            f"listed: {', '.join(sources)}")
    return [sources[name] for name in names or sources]


def _fetch_dataset(source, folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(folder, f"cannot create the folder ({error.strerror})") from None
    downloaded = 0
    for file, digest in source.files.items():
        target = folder / file
        if target.is_file() and file_sha256(target) == digest:
            continue
        download(source.base_url + urllib.parse.quote(file), target, digest)
        downloaded += 1
    return FetchResult(source.name, downloaded, len(source.files) - downloaded)


def download(url, target, expected_sha256):
    """Download `url` to a temporary name beside `target`; rename it only if its sha256 matches."""
    target = Path(target)
    temporary = target.with_name(f".{target.name}.part")
    try:
        try:
            stream = open(temporary, "wb")
        except OSError as error:
            raise UserError(target.parent, f"cannot write here ({error.strerror})") from None
        with stream:
            digest = _copy_url(url, stream)
        if digest != expected_sha256:
            raise UserError(url, f"sha256 mismatch: expected {expected_sha256}, got {digest} "
                            "(the download was not kept)")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _copy_url(url, stream):
    """Copy the bytes at `url` into `stream`; their sha256. Network trouble is one UserError."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK), b""):
                digest.update(chunk)
                stream.write(chunk)
    except (OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise UserError(url, f"download failed ({reason}); offline? copy the datasets by hand "
                        f"and {HOW_TO_SET}") from None
    return digest.hexdigest()

