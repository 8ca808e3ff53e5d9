"""How much memory this process can have: the bound every size a file declares is checked
against before anything of that size is read or allocated (config keys in `schema.py`, HDF5
datasets in `runner/files/`, a net's weights and one batch's activations in the builder).

The machine's physical memory, lowered by a container's cgroup limit and by `ulimit -v` /
`ulimit -d`: whatever exceeds it can never be allocated here, so asking for it is the file's
mistake, said in one line, rather than a minute of swapping and the OOM killer.

`keep_freed_memory` sets what the process keeps of the large blocks it frees, for inference's
working sets of one size after another.
"""
import os
import resource
from pathlib import Path

from runner.errors import UserError

# cgroup v2, then v1: the limit of the container this process runs in (absent: no limit)
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
FLOAT32_BYTES = 4


def available_bytes():
    """The most memory this process could ever hold, in bytes."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft, _ = resource.getrlimit(kind)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    return min(limits)


def describe_bytes(count):
    """`1.5 GiB`-style text for a byte count."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    exponent = min((max(count, 1).bit_length() - 1) // 10, len(units) - 1)
    if exponent == 0:
        return f"{count} bytes"
    return f"{count / 1024 ** exponent:.3g} {units[exponent]}"


def check_fits(needed, where, what, hint=""):
    """A UserError naming `where` when `needed` bytes (for `what`) exceed available_bytes();
    `hint` says what to change."""
    limit = available_bytes()
    if needed > limit:
        raise UserError(where, f"{what} needs {describe_bytes(needed)}, more than this "
                        f"machine's memory ({describe_bytes(limit)})" + (f": {hint}" if hint
                                                                         else ""))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap rather than an mmap of their own (glibc's own
# threshold rises with the blocks freed, but to 32 MiB at most), and up to twice it of free
# memory at the heap's top stays there (as glibc's own rule keeps it).
KEPT_BLOCK_BYTES = 256 << 20


def glibc():
    """The C library through ctypes where it is glibc, whose malloc the settings here tune;
    else None (macOS, musl)."""
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version      # glibc's own: absent elsewhere
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(kept_block_bytes=KEPT_BLOCK_BYTES):
    """Have glibc's malloc keep the large blocks this process frees, up to `kept_block_bytes`
    each, for its next allocations. By default each block over 32 MiB is mapped on its own and
    unmapped when freed, so the next one faults every page in anew: a net's 56-channel
    activations on a whole 481x321 image are 35 MB each, and OpenCV's engine spent a third of
    its CPU in the kernel that way (0.65 of 2.0 s for ten such images). Peak memory stays that
    of the largest working set. Does nothing where the C library is not glibc."""
    libc = glibc()
    if libc is None:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, kept_block_bytes)
    libc.mallopt(_M_TRIM_THRESHOLD, 2 * kept_block_bytes)
