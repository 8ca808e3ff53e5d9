"""`runner`: the command line, a thin shell over the library (Caffe's `caffe` tool, in Python).

Every user mistake arrives here as a UserError and leaves as one line and exit code 2.
"""
import argparse
import sys
from pathlib import Path

from runner import config, schema, snapshot
from runner.errors import UserError

EXIT_USER_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `error:` line like every other user error."""

    def error(self, message):
        raise UserError(self.prog, message)


def add_train(commands):
    from runner.solver import SIGNAL_EFFECTS
    train = commands.add_parser("train", help="train a net with a solver file (caffe train)")
    train.add_argument("--solver", help="solver file (.yaml or .prototxt)")
    train.add_argument("--snapshot", help="resume from this .solverstate")
    train.add_argument("--weights", help="fine-tune: copy layers by name from this .model")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: from solver_mode)")
    train.add_argument("--sigint_effect", choices=SIGNAL_EFFECTS, default="snapshot",
                       help="on Ctrl-C: snapshot then stop (default), stop, or none")
    train.add_argument("--sighup_effect", choices=SIGNAL_EFFECTS, default="snapshot",
                       help="on SIGHUP: snapshot and go on (default), stop, or none")
    train.set_defaults(run=run_train)


def run_train(args):
    from runner.solver import TrainOptions, train
    if args.snapshot and args.weights:
        raise UserError("runner train", "--weights fine-tunes and --snapshot resumes: give "
                        "one of them, not both")
    if not args.solver and not args.snapshot:
        raise UserError("runner train", "give --solver FILE (or --snapshot FILE to resume)")
    resume_from = None
    if args.snapshot:
        state = snapshot.load_solverstate(args.snapshot)
        resume_from = (Path(args.snapshot), state)
    if args.solver:
        setup = config.load_solver(args.solver)
    else:
        setup = config.solver_setup_from_texts(state.solver_source, state.solver_text,
                                               state.net_files)
    options = TrainOptions(device=args.device, sigint_effect=args.sigint_effect,
                           sighup_effect=args.sighup_effect)
    train(setup, options, resume_from=resume_from, weights=args.weights)


def add_plot(commands):
    plot = commands.add_parser("plot", help="draw loss and test PSNR against iteration")
    plot.add_argument("run", metavar="RUN_OR_LOG",
                      help="a *_log.jsonl, a run folder, a snapshot or its prefix")
    plot.add_argument("--out", help="PNG to write (default: beside the log)")
    plot.set_defaults(run=run_plot)


def run_plot(args):
    from runner.plot import find_log, plot_log
    log_path = find_log(args.run)
    out = args.out or str(log_path).removesuffix("_log.jsonl") + "_curves.png"
    print(f"wrote {plot_log(log_path, out)}")


SCHEMAS = {"net": schema.NetParameter, "solver": schema.SolverParameter,
           "prep": schema.PrepConfig}


def add_schema(commands):
    reference = commands.add_parser("schema", help="every config key: type, default, meaning")
    reference.add_argument("kind", choices=sorted(SCHEMAS))
    reference.set_defaults(run=lambda args: print("\n".join(schema.describe(SCHEMAS[args.kind]))))


def build_parser():
    parser = ArgumentParser(prog="runner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for add in (add_train, add_plot, add_schema):
        add(commands)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
