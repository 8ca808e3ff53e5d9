"""The command line starts at once: building the parser of `runner --help` or of any command
loads neither torch nor OpenCV, h5py or matplotlib (they cost seconds; a command imports what it
needs when it runs)."""
import subprocess
import sys

import pytest

from runner import cli


@pytest.mark.parametrize("command", [None, *sorted(cli.COMMANDS)])
def test_parsing_imports_neither_torch_nor_opencv(command):
    words = [command] if command else []
    probe = ("import sys; from runner.cli import build_parser; "
             f"build_parser({words!r}); "
             "print(sorted({'torch', 'cv2', 'h5py', 'matplotlib'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_export_formats_are_the_exporters():
    # the command line names them itself so that `runner export --help` imports no torch
    from runner import export
    assert set(cli.EXPORT_FORMATS) == set(export.FORMATS)
