"""`runner ARGS` in the test process: the console script's `main`, without a new interpreter
(importing torch costs seconds per process). capfd captures file descriptors 1 and 2, so what
native libraries print is seen too."""
import subprocess

from runner import cli


def run_main(capfd, *arguments):
    """Run `runner` with `arguments`; a CompletedProcess of its exit code and output."""
    code = cli.main([str(argument) for argument in arguments])
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(arguments, code, out, err)
