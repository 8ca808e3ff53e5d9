"""runner/config/memory.py: what a process keeps of the memory it frees."""
import subprocess
import sys

import pytest

from helpers import ROOT

# A child that holds a 48 MB block (a net's activations on a whole image), frees it, and prints
# glibc's counts (mallinfo2) of the bytes mapped on their own while it was held and of the
# bytes the heap keeps after it was freed.
CHILD = """
import ctypes, sys
import numpy as np
from runner.config import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    memory.keep_freed_memory()
block = np.ones(12 << 20, np.float32)
mapped = mallinfo2().hblkhd
del block
print(mapped, mallinfo2().arena)
"""
BLOCK_BYTES = 48 << 20


def held_and_kept(mode):
    output = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    return tuple(map(int, output.split()))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_large_block_stays_for_the_next_one():
    mapped, heap = held_and_kept("default")
    assert mapped >= BLOCK_BYTES > heap      # mapped on its own, unmapped when freed
    mapped, heap = held_and_kept("keep")
    assert mapped < BLOCK_BYTES <= heap      # from the heap, which keeps it
