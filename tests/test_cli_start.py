"""The command line starts at once: building the parser of `runner --help` or of any command
that needs no net loads neither torch nor OpenCV (they cost seconds; a command imports what it
needs when it runs)."""
import subprocess
import sys

import pytest

from runner.cli import COMMANDS

# inspect and export still import the net builder for their flags' defaults (torch), test the
# evaluation module (OpenCV and h5py)
LIGHT = sorted(set(COMMANDS) - {"inspect", "export", "test"})


@pytest.mark.parametrize("command", [None, *LIGHT])
def test_parsing_imports_neither_torch_nor_opencv(command):
    words = [command] if command else []
    probe = ("import sys; from runner.cli import build_parser; "
             f"build_parser({words!r}); "
             "print(sorted({'torch', 'cv2', 'h5py', 'matplotlib'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
