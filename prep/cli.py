"""`python -m prep`: pack a prep config's subimage pairs into HDF5; `python -m prep fetch`: download
the datasets. A thin shell over `prep.pipeline` and `prep.datasets`; every user mistake leaves as
one `error: <file>: <problem>` line and exit code 2.
"""
import sys
import time

from prep import datasets, pipeline
from runner import config, schema
from runner.cli import EXIT_USER_ERROR, ArgumentParser
from runner.errors import UserError

DEFAULT_CONFIG = datasets.REPO_ROOT / "configs" / "prep_x3.yaml"


def prep_parser():
    parser = ArgumentParser(prog="python -m prep", description="Cut the train and test images "
                            "of a prep config into LR/HR subimage pairs and write them as HDF5 "
                            "with Caffe source lists. (`python -m prep fetch --help`: download "
                            "the datasets.)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="prep config (default: configs/prep_x3.yaml; keys: "
                        "`runner schema prep`)")
    parser.add_argument("--data", help=f"datasets folder (default: ${datasets.DATA_ROOT_VARIABLE}"
                        f", else {datasets.DEFAULT_DATA_ROOT})")
    return parser


def fetch_parser():
    parser = ArgumentParser(prog="python -m prep fetch", description="Download datasets listed "
                            "in configs/datasets.yaml, keeping each file only if its sha256 "
                            "matches.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="datasets (default: all listed)")
    parser.add_argument("--dest", help=f"folder to fill (default: ${datasets.DATA_ROOT_VARIABLE}"
                        f", else {datasets.DEFAULT_DATA_ROOT})")
    parser.add_argument("--listing", default=str(datasets.LISTING),
                        help="the listing of URLs and sha256 (default: configs/datasets.yaml)")
    return parser


def run_prep(argv):
    args = prep_parser().parse_args(argv)
    started = time.perf_counter()
    prep_config = config.load(schema.PrepConfig, args.config)
    summaries = pipeline.prepare(prep_config, data=args.data, source=args.config)
    print(pipeline.summary_text(prep_config, summaries, time.perf_counter() - started))


def run_fetch(argv):
    args = fetch_parser().parse_args(argv)
    for result in datasets.fetch(args.names, dest=args.dest, listing=args.listing):
        print(f"{result.name}: {result.downloaded} downloaded, {result.already_present} already "
              f"present in {datasets.data_root(args.dest) / result.name}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["fetch"]:
            run_fetch(argv[1:])
        else:
            run_prep(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
