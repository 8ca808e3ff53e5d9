"""`python -m prep`: pack a prep config's subimage pairs into HDF5; `python -m prep fetch`: download
the datasets; `python -m prep where NAME`: print a dataset's folder. A thin shell over
`prep.pipeline` and `runner.imaging.datasets`; every user mistake leaves as one
`error: <file>: <problem>` line and exit code 2.
"""
import sys
import time

from prep import pipeline
from runner.cli import EXIT_USER_ERROR, ArgumentParser
from runner.config import loading, schema
from runner.errors import UserError
from runner.imaging import datasets

DEFAULT_CONFIG = datasets.REPO_ROOT / "configs" / "prep_x3.yaml"
DATA_DEFAULT = (f"${datasets.DATA_ROOT_VARIABLE}, else {datasets.DEFAULT_DATA_ROOT}, else "
                "the download cache")


def prep_parser():
    parser = ArgumentParser(prog="python -m prep", description="Cut the train and test images "
                            "of a prep config into LR/HR subimage pairs and write them as HDF5 "
                            "with Caffe source lists. (`python -m prep fetch --help`: download "
                            "the datasets.)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="prep config (default: configs/prep_x3.yaml; keys: "
                        "`runner schema prep`)")
    parser.add_argument("--data", help=f"datasets folder (default: {DATA_DEFAULT})")
    return parser


def fetch_parser():
    parser = ArgumentParser(prog="python -m prep fetch", description="Download datasets listed "
                            "in configs/datasets.yaml, keeping each file only if its sha256 "
                            "matches.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="datasets (default: all listed)")
    parser.add_argument("--dest", help=f"folder to fill (default: {DATA_DEFAULT})")
    parser.add_argument("--listing", default=str(datasets.LISTING),
                        help="the listing of URLs and sha256 (default: configs/datasets.yaml)")
    return parser


def where_parser():
    parser = ArgumentParser(prog="python -m prep where", description="Print the folder of a "
                            "dataset; with no datasets folder chosen, fetch it first.")
    parser.add_argument("name", metavar="NAME", help="a dataset, e.g. Set5")
    return parser


def run_prep(argv):
    args = prep_parser().parse_args(argv)
    started = time.perf_counter()
    prep_config = loading.load(schema.PrepConfig, args.config)
    summaries = pipeline.prepare(prep_config, data=args.data, source=args.config)
    print(pipeline.summary_text(prep_config, summaries, time.perf_counter() - started))


def run_fetch(argv):
    args = fetch_parser().parse_args(argv)
    for result in datasets.fetch(args.names, dest=args.dest, listing=args.listing):
        print(f"{result.name}: {result.downloaded} downloaded, {result.already_present} already "
              f"present in {datasets.data_root(args.dest) / result.name}")


def run_where(argv):
    print(datasets.dataset_folder(where_parser().parse_args(argv).name))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["fetch"]:
            run_fetch(argv[1:])
        elif argv[:1] == ["where"]:
            run_where(argv[1:])
        else:
            run_prep(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
