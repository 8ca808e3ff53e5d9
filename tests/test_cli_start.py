"""The command line starts at once: building the parser of `runner --help` or of any command
loads none of the libraries that cost time to import, torch, OpenCV, h5py and matplotlib (seconds)
nor numpy, YAML and protobuf (tenths); a command imports what it needs when it runs."""
import subprocess
import sys

import pytest

from runner import cli


@pytest.mark.parametrize("command", [None, *sorted(cli.COMMANDS)])
def test_parsing_imports_no_heavy_library(command):
    words = [command] if command else []
    probe = ("import sys; from runner.cli import build_parser; "
             f"build_parser({words!r}); "
             "print(sorted({'torch', 'cv2', 'h5py', 'matplotlib', 'numpy', 'yaml', "
             "'google.protobuf'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_export_formats_are_the_exporters():
    # the command line names them itself so that `runner export --help` imports no torch
    from runner import export
    assert set(cli.EXPORT_FORMATS) == set(export.FORMATS)


def test_a_process_ending_with_its_command_is_not_searched_for_cycles_at_exit():
    # main() run as the program (no argv given) collects cycles less often while it runs and
    # freezes what is left for Python's shutdown, which would otherwise search all of torch's
    # objects for cycles; called with words, as tests and sweeps do, it leaves the garbage
    # collector alone
    probe = ("import gc, sys; from runner.cli import main; "
             "sys.argv = ['runner', 'schema', 'solver']; code = main(); "
             "frozen, threshold = gc.get_freeze_count(), gc.get_threshold()[0]; "
             "gc.unfreeze(); gc.set_threshold(700); "
             "main(['schema', 'solver']); "
             "print(code, frozen > 0, threshold, gc.get_freeze_count(), gc.get_threshold()[0])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == f"0 True {cli.COLLECTOR_THRESHOLD} 0 700"
