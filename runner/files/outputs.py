"""Files that predict and test write: under a temporary name, renamed when complete.

A crash, a full disk or a user error half-way never leaves a file that looks finished; the
temporary keeps the final suffix, so writers that choose a format by it (OpenCV's) still work.
"""
import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from runner.errors import UserError


def writable_folder(folder):
    """Create `folder` (and parents) and check a file can be written in it; a UserError if not."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(folder, "is a file, not a folder for outputs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(folder, f"cannot write here ({error.strerror})") from None
    return folder


@contextlib.contextmanager
def atomic_paths(*paths):
    """Temporary paths beside `paths`, all renamed to them only if the block completes; on any
    error every temporary is removed and no final file is touched."""
    paths = [Path(path) for path in paths]
    temporaries = []
    try:
        for path in paths:
            temporaries.append(_temporary_beside(path))
        yield temporaries
        for temporary, path in zip(temporaries, paths):
            _rename(temporary, path)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def _temporary_beside(path):
    """A new empty file beside `path`, hidden, keeping its suffix; created with the mode a plain
    open() would give (mkstemp's is owner-only)."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}{path.suffix}")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise UserError(path.parent, f"cannot write here ({error.strerror})") from None
    return temporary


def _rename(temporary, path):
    try:
        os.replace(temporary, path)
    except OSError as error:
        raise UserError(path, f"cannot write ({error.strerror})") from None


def write_files(contents):
    """Write {path: bytes or str} all-or-nothing; returns the paths."""
    with atomic_paths(*contents) as temporaries:
        for temporary, (path, data) in zip(temporaries, contents.items()):
            try:
                if isinstance(data, str):
                    temporary.write_text(data, encoding="utf-8")
                else:
                    temporary.write_bytes(data)
            except OSError as error:
                raise UserError(path, f"cannot write ({error.strerror})") from None
    return [Path(path) for path in contents]
