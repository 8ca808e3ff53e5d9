"""`runner plot`: training loss and test PSNR against iteration, from a run's JSON-lines log."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from runner.errors import UserError  # noqa: E402
from runner.files import outputs  # noqa: E402
from runner.train.train_log import log_paths, read_records  # noqa: E402


def find_log(run_or_log):
    """A `_log.jsonl` file given itself, a snapshot prefix, a snapshot file or a run folder."""
    path = Path(run_or_log)
    if path.is_file() and path.name.endswith("_log.jsonl"):
        return path
    if path.is_dir():
        logs = sorted(path.glob("*_log.jsonl"))
        if len(logs) == 1:
            return logs[0]
        problem = "holds no *_log.jsonl" if not logs else "holds several logs: name one"
        raise UserError(path, problem)
    prefix = str(path.with_suffix("")).split("_iter_")[0] if path.is_file() else str(path)
    candidate = log_paths(prefix)[1]
    if candidate.is_file():
        return candidate
    raise UserError(path, "no training log found (give a *_log.jsonl, a run folder or a "
                    "snapshot prefix)")


def plot_log(log_path, out_path, title=None):
    """Draw the curves of one log into a PNG (titled `title`, else the log's run name);
    returns the PNG's path."""
    try:
        records = read_records(log_path)
    except (OSError, ValueError) as error:
        raise UserError(log_path, f"not a readable training log ({error})") from None
    train = [(r["iteration"], r["loss"]) for r in records if "loss" in r]
    test = [(r["iteration"], r["test_psnr"]) for r in records if "test_psnr" in r]
    if not train and not test:
        raise UserError(log_path, "holds no training or test records yet")
    figure, (loss_axes, psnr_axes) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if train:
        loss_axes.plot(*zip(*train), color="tab:blue")
        loss_axes.set_yscale("log")
    loss_axes.set_ylabel("training loss (Euclidean)")
    if test:
        psnr_axes.plot(*zip(*test), marker="o", markersize=3, color="tab:green")
        # the untrained net's first test (near 5 dB) would flatten the curve that matters
        trained = [psnr for _, psnr in test[1:]] or [test[0][1]]
        psnr_axes.set_ylim(min(trained) - 0.5, max(trained) + 0.5)
    psnr_axes.set_ylabel("test PSNR (dB)")
    psnr_axes.set_xlabel("iteration")
    for axes in (loss_axes, psnr_axes):
        axes.grid(True, alpha=0.3)
    figure.suptitle(title or Path(log_path).name.removesuffix("_log.jsonl"))
    figure.tight_layout()
    out_path = Path(out_path)
    try:
        figure.savefig(out_path, dpi=120)
    except OSError as error:
        raise UserError(out_path, f"cannot write the plot ({error.strerror})") from None
    finally:
        plt.close(figure)
    return out_path


def save_figure(figure, out_path, dpi=110):
    """Lay a figure out, write it to `out_path` whole or not at all, and close it."""
    figure.tight_layout()
    try:
        with outputs.atomic_paths(out_path) as (temporary,):
            figure.savefig(temporary, dpi=dpi)
    finally:
        plt.close(figure)
    return Path(out_path)
