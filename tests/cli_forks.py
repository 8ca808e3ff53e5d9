"""`runner` cases as a user runs them, each its own process, without paying torch's import each
time: a fork server.

`python tests/cli_forks.py` imports the command line and everything it loads once (about 1.5 s),
then reads one JSON request per line on stdin and, for each, forks a child that runs
`runner.cli.main(argv)` in the request's folder with stdout and stderr of its own, as the
`runner` console script would. The server waits for the child with `wait4`, so the reply (one
JSON line on stdout) has the child's own exit code, output, wall time and peak resident memory
(`ru_maxrss`); a child past its time limit is killed and reported as such. A child's address
space is capped (RLIMIT_DATA) so that a memory bomb the code fails to refuse cannot take the
machine down; `available_bytes` in runner/config/memory.py sees that cap as the machine's memory.
The server itself never runs a torch operation, so forking it is safe. A test may also start a
child, signal it (`kill -9`) and then collect it.

`CliForks` is the client the tests use.
"""
import gc
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# nobody/nogroup: what a case that must not be root (an unreadable folder) runs as under root
UNPRIVILEGED_ID = 65534


@dataclass(frozen=True)
class CaseResult:
    code: int            # the exit code; -N for a child killed by signal N
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int        # bytes
    timed_out: bool


def _page_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _run_child(request, out, err):
    """In the forked child: become the case's process and run the command line."""
    os.chdir(request["cwd"])
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    if request.get("closed_stdout"):        # `runner ... | head`, the reader already gone
        reader, writer = os.pipe()
        os.close(reader)
        os.dup2(writer, 1)
    os.environ.update(request.get("env", {}))
    extra = request["memory_limit"]
    limit = _page_kib("VmData") * 1024 + extra
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    if request.get("unprivileged") and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(UNPRIVILEGED_ID)
        os.setuid(UNPRIVILEGED_ID)
    from runner import cli
    code = 1
    try:
        code = cli.main(request["argv"])
        sys.stdout.flush()
    except SystemExit as exit_request:
        code = exit_request.code if isinstance(exit_request.code, int) else 1
    except BaseException:           # a bug: its traceback is what the test must see
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _wait(pid, timeout):
    """wait4 for a child, killing it past `timeout` seconds: (status, rusage, timed out)."""
    deadline = time.perf_counter() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, False
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return status, usage, True
        time.sleep(0.002)


def serve():
    from runner import cli
    cli.build_parser()              # imports what every command uses, torch included
    importlib.import_module("runner.train.solver")
    importlib.import_module("runner.infer.deploy")
    gc.freeze()                     # children then share these objects without copying them
    print(json.dumps({"ready": True, "rss": _page_kib("VmRSS") * 1024}), flush=True)
    children = {}                   # pid -> (stdout file, stderr file, start time)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                _run_child(request, out, err)
            children[pid] = (out, err, started)
            print(json.dumps({"pid": pid}), flush=True)
            continue
        out, err, started = children.pop(request["pid"])
        status, usage, timed_out = _wait(request["pid"], request["timeout"])
        texts = []
        for stream in (out, err):
            stream.seek(0)
            texts.append(stream.read().decode("utf-8", "replace"))
            stream.close()
        print(json.dumps({"code": os.waitstatus_to_exitcode(status), "stdout": texts[0],
                          "stderr": texts[1], "seconds": time.perf_counter() - started,
                          "peak_rss": usage.ru_maxrss * 1024, "timed_out": timed_out}),
              flush=True)


class CliForks:
    """A running fork server: `run(argv, cwd)` gives the CaseResult of one `runner` process;
    `start` and `wait` split it, for a test that signals the process in between."""

    def __init__(self, environment):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=environment)
        ready = json.loads(self.process.stdout.readline())
        self.baseline_rss = ready["rss"]

    def _ask(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, argv, cwd, memory_limit=3 << 30, unprivileged=False, env=None,
              closed_stdout=False):
        """Start one `runner` process; returns its pid."""
        return self._ask({"op": "start", "argv": [str(item) for item in argv], "cwd": str(cwd),
                          "memory_limit": memory_limit, "unprivileged": unprivileged,
                          "env": env or {}, "closed_stdout": closed_stdout})["pid"]

    def wait(self, pid, timeout=30.0):
        """The CaseResult of a started process, killed if still running after `timeout`."""
        return CaseResult(**self._ask({"op": "wait", "pid": pid, "timeout": timeout}))

    def run(self, argv, cwd, timeout=30.0, **options):
        return self.wait(self.start(argv, cwd, **options), timeout)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    serve()
