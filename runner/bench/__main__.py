"""`python -m runner.bench`: run the benchmark suite and write results/bench.md."""
import argparse
import os
from pathlib import Path

from runner.bench.measure import DEFAULT_THREADS, REPO_ROOT
from runner.bench.prep_time import ensure_prepared, solver_source
from runner.bench.suite import PARTS, RECIPE_PREP, RECIPE_SOLVER, SOLVER, Sizes, report, run
from runner.config import loading

DEFAULT_REPORT = REPO_ROOT / "results" / "bench.md"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m runner.bench",
        description="how fast we train, super-resolve and prepare data, beside what people use")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch and OpenCV threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=Sizes.repeats,
                        help="interleaved repetitions (default: %(default)s)")
    parser.add_argument("--whole-repeats", type=int, default=Sizes.whole_repeats,
                        help="interleaved repetitions of the whole-process rows (default: "
                        "%(default)s)")
    parser.add_argument("--only", choices=PARTS, default="all",
                        help="whole: only the whole-process rows; gpu: only the GPU rows "
                        "(where there is a CUDA device) (default: %(default)s)")
    parser.add_argument("--out", default=str(DEFAULT_REPORT),
                        help="the Markdown report (default: results/bench.md)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    os.chdir(REPO_ROOT)         # the solver and net files name their data relative to it
    ensure_prepared(solver_source(loading.load_solver(SOLVER))[0])
    if args.only in ("all", "gpu"):
        ensure_prepared(solver_source(loading.load_solver(RECIPE_SOLVER))[0], RECIPE_PREP)
    results = run(Sizes(repeats=args.repeats, whole_repeats=args.whole_repeats), args.threads,
                  parts=args.only)
    text = report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(f"\n{text}\nwrote {out}")


if __name__ == "__main__":
    main()
