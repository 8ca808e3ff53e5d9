"""C kernels of our own (`*.c` beside this module), compiled on first use and loaded through
ctypes.

A kernel is compiled once per source text and compiler into the cache
(`$XDG_CACHE_HOME/srcaffe/kernels`, else `~/.cache/srcaffe/kernels`), written under a name of
its own and renamed into place, so processes starting together (torchrun's ranks, a sweep's
workers) never load a half-written library. Compiled with `-fopenmp`, a library shares the
OpenMP runtime PyTorch has already loaded (the same `libgomp.so.1`) and with it the thread
count `torch.set_num_threads` sets. A kernel written for given instruction sets (BUILDS) is
built for the first of them this processor has. Where there is no compiler ($CC, else `cc`),
the processor has none of a kernel's instruction sets, or the build or the load fails, `load`
returns None and says why in `unavailable`; the callers then compute with PyTorch's own kernels.
"""
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

from runner.config import user_cache

COMPILE_FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared")
COMPILE_TIMEOUT_S = 120

unavailable = {}    # kernel name -> why it could not be loaded
# one build at a time in a process: inputs side by side reach their first kernel call together,
# and two threads would write the same partial file
_building = threading.Lock()
# The builds of a kernel written for given instruction sets, the first the processor has taken:
# (the flags of Linux's /proc/cpuinfo it needs, the compiler's flags). A kernel not named here
# is built once for any processor (prelu_kernel.c picks its own clones at load).
BUILDS = {"conv_chain": ((("avx512f", "fma"), ("-mavx512f", "-mfma")),
                         (("avx2", "fma"), ("-mavx2", "-mfma")))}


def compiler():
    """The C compiler's path, None where there is none."""
    return shutil.which(os.environ.get("CC") or "cc")


@functools.cache
def cpu_flags():
    """The processor's feature flags (Linux's /proc/cpuinfo), empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def build_flags(name):
    """The compiler flags of the build of kernel `name` for this processor (none for a kernel
    not in BUILDS), None where it has none of the kernel's instruction sets."""
    for needed, flags in BUILDS.get(name, (((), ()),)):
        if set(needed) <= cpu_flags():
            return flags
    return None


def runnable(name):
    """Whether kernel `name` should load here, as far as is known without building it: a
    compiler, and an instruction set it is written for."""
    return compiler() is not None and build_flags(name) is not None


@functools.cache
def load(name):
    """The ctypes library of `name`.c beside this module, compiled on first use; None where it
    cannot be had (the reason in `unavailable[name]`)."""
    flags = build_flags(name)
    if flags is None:
        unavailable[name] = "this processor has none of " + ", ".join(
            " and ".join(needed) for needed, _ in BUILDS[name])
        return None
    try:
        with _building:
            return ctypes.CDLL(str(_built(name, flags)))
    except (OSError, subprocess.SubprocessError) as error:
        unavailable[name] = " ".join(str(error).split())[:300] or type(error).__name__
        return None


def _built(name, flags):
    """The compiled library of `name`.c with these extra compiler flags, compiled into the
    cache if it is not there yet."""
    source = Path(__file__).with_name(f"{name}.c")
    cc = compiler()
    if cc is None:
        raise OSError(f"no C compiler ({os.environ.get('CC') or 'cc'}) to build {source.name}")
    flags = (*COMPILE_FLAGS, *flags)
    key = hashlib.sha256(source.read_bytes() + " ".join((cc, *flags)).encode())
    target = user_cache.folder("kernels") / f"{name}-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        finished = subprocess.run([cc, *flags, "-o", str(partial), str(source)],
                                  capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        if finished.returncode != 0:
            raise OSError(f"{Path(cc).name} could not build {source.name}: "
                          f"{finished.stderr.strip() or finished.returncode}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
