"""Files that runs write: under a temporary name, renamed when complete.

A crash, a full disk or a user error half-way never leaves a file that looks finished; the
temporary keeps the final suffix, so writers that choose a format by it (OpenCV's) still work.
A temporary is hidden and names its writer's pid (`.<stem>.<pid>.<random><suffix>`), so what a
killed run left behind can be told from what a running one is writing; it is flushed to disk
before the rename, so a power cut leaves the old file or the new one, never an empty one. Files
are created with the mode the umask gives, like any other file the user writes.
"""
import contextlib
import os
import re
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
            temporaries.append(temporary_beside(path))
        yield temporaries
        for temporary, path in zip(temporaries, paths):
            commit(temporary, path)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def temporary_beside(path):
    """A new empty file beside `path`, hidden, naming this process, keeping its suffix; created
    with the mode a plain open() would give (mkstemp's is owner-only)."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}{path.suffix}")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise UserError(path.parent, f"cannot write here ({error.strerror})") from None
    return temporary


def commit(temporary, path):
    """Rename a complete temporary to `path`, its data and the rename flushed to disk."""
    try:
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        folder = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as error:
        raise UserError(path, f"cannot write ({error.strerror})") from None


# `.<stem>.<pid>.<8 hex><suffix>` (temporary_beside), and `.<name>.<8 chars>.tmp` (mkstemp's,
# which snapshots used before)
TEMPORARY_NAMES = (re.compile(r"\.(?P<stem>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}(\.[^.]*)?"),
                   re.compile(r"\.(?P<stem>.+?)(\.[^.]*)?\.[a-z0-9_]{8}\.tmp"))


def _temporary_of(name):
    """(stem, writer pid or None) of a temporary's file name; None for any other name."""
    for pattern in TEMPORARY_NAMES:
        match = pattern.fullmatch(name)
        if match:
            return match["stem"], match.groupdict().get("pid")
    return None


def _writer_gone(pid):
    if pid is None:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:          # alive, another user's
        return False
    return False


def remove_stale_temporaries(folder, stem):
    """Remove the hidden temporaries in `folder` of files whose name (less its suffix) matches
    the regular expression `stem` and whose writer is no longer running (a killed or crashed
    run's); returns their paths."""
    folder = Path(folder)
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        found = _temporary_of(path.name)
        if found and re.fullmatch(stem, found[0]) and _writer_gone(found[1]) \
                and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
