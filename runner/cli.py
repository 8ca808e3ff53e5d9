"""`runner`: the command line, a thin shell over the library (Caffe's `caffe` tool, in Python).

Every user mistake arrives here as a UserError and leaves as one line and exit code 2.
"""
import argparse
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path

from runner.errors import UserError, stored_in
from runner.train.signals import SIGNAL_EFFECTS

EXIT_USER_ERROR = 2
# what a shell reports for a command that wrote into a closed pipe (`runner schema net | head`)
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE
# Objects allocated between young collections of the cycle collector in a command's process
# (Python's default 700). Importing torch makes about half a million objects that live as long
# as the process: at 700, a 72-frame FSRCNN-s video run took 417 collections, 3 of them full
# (0.23 s of 5.4); at 10,000, 29 and none (0.10 s).
COLLECTOR_THRESHOLD = 10_000
# The formats of `runner export` (FORMATS in runner/export.py, which imports torch; a test
# checks the two agree)
EXPORT_FORMATS = ("caffe", "onnx")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `error:` line like every other user error."""

    def error(self, message):
        raise UserError(self.prog, message)


def add_train(train):
    train.add_argument("--solver", help="solver file (.yaml or .prototxt)")
    train.add_argument("--snapshot", help="resume from this .solverstate")
    train.add_argument("--weights", help="fine-tune: copy layers by name from this .model or "
                       ".caffemodel")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: from solver_mode)")
    train.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                       help="set a solver key (snapshot_prefix=runs/a) or a net key by layer "
                       "name (conv1.convolution_param.num_output=32) without editing the "
                       "files; repeatable; the snapshots store the edited texts")
    train.add_argument("--sigint_effect", choices=SIGNAL_EFFECTS, default="snapshot",
                       help="on Ctrl-C: snapshot then stop (default), stop, or none")
    train.add_argument("--sighup_effect", choices=SIGNAL_EFFECTS, default="snapshot",
                       help="on SIGHUP: snapshot and go on (default), stop, or none")
    train.add_argument("--procs", type=positive_int(1),
                       help="data-parallel over N processes on this machine, launched as "
                       "torchrun --standalone --nproc_per_node=N (batch_size is per process; "
                       "N=1 runs the distributed path in one process: gloo, or NCCL on CUDA)")
    train.add_argument("--no-tensorboard", action="store_true",
                       help="write no TensorBoard event files (also: SRCAFFE_TENSORBOARD=0)")
    train.set_defaults(run=run_train)


def run_train(args):
    from runner.config import loading
    from runner.files import snapshot
    from runner.train.solver import TrainOptions, train
    if args.snapshot and args.weights:
        raise UserError("runner train", "--weights fine-tunes and --snapshot resumes: give "
                        "one of them, not both")
    if not args.solver and not args.snapshot:
        raise UserError("runner train", "give --solver FILE (or --snapshot FILE to resume)")
    resume_from = None
    if args.snapshot:
        state = snapshot.load_solverstate(args.snapshot)
        resume_from = (Path(args.snapshot), state)

    def texts_stored():
        """Without --solver the texts are the snapshot's: errors in them name the snapshot."""
        return (stored_in(args.snapshot, state.stored_names) if not args.solver
                else contextlib.nullcontext())

    if args.solver:
        setup = loading.load_solver(args.solver)
    else:
        with texts_stored():
            setup = loading.solver_setup_from_texts(state.solver_source, state.solver_text,
                                                   state.net_files)
    if args.sets:
        from runner.config import overrides
        setup = overrides.with_settings(setup, args.sets)
    options = TrainOptions(device=args.device, sigint_effect=args.sigint_effect,
                           sighup_effect=args.sighup_effect)
    if args.no_tensorboard:
        options.tensorboard = False
    if args.procs:
        from runner.train import distributed
        if distributed.launched():
            raise UserError("runner train", "--procs starts its own processes; under torchrun "
                            "leave it out (torchrun's --nproc_per_node says how many)")
        distributed.launch(args.procs, without_option(args.argv, "--procs"))
        return
    with texts_stored():
        train(setup, options, resume_from=resume_from, weights=args.weights)


def without_option(argv, option):
    """`argv` less `option VALUE` and `option=VALUE` (or an abbreviation argparse took for it)."""
    kept, skip_value = [], False
    for token in argv:
        flag, equals, _ = token.partition("=")
        if skip_value:
            skip_value = False
        elif len(flag) > 2 and option.startswith(flag):
            skip_value = not equals
        else:
            kept.append(token)
    return kept


def add_sweep(command):
    from runner.sweep.folders import DEFAULT_FOLDER
    command.add_argument("--solver", required=True, help="the base solver file")
    command.add_argument("--set", action="append", default=[], dest="sets",
                         metavar="KEY=VALUES",
                         help="a solver key (base_lr=0.001,0.005) or a net key by layer name "
                         "(conv1.convolution_param.num_output=32,56); with --trials also "
                         "ranges: momentum=0.8:0.99, base_lr=log:1e-4:1e-2; repeatable")
    command.add_argument("--name", required=True, help="the sweep's name: its folder and study")
    command.add_argument("--trials", type=positive_int(1),
                         help="sample this many trials with TPE instead of running the grid")
    command.add_argument("--max_iter", type=positive_int(1),
                         help="every trial's max_iter (default: the solver's)")
    command.add_argument("--parallel", type=positive_int(1), default=1,
                         help="trials at a time in this worker, the cores divided among them")
    command.add_argument("--prune", action="store_true",
                         help="stop a trial whose test PSNR falls below the median of the "
                         "finished trials' at the same iteration")
    command.add_argument("--storage", help="Optuna RDB storage URL shared by workers on several "
                         "machines, e.g. postgresql://user:pass@host/db (default: an SQLite "
                         "file in the sweep folder)")
    command.add_argument("--out", default=str(DEFAULT_FOLDER),
                         help="where sweep folders go (default: %(default)s)")
    command.set_defaults(run=run_sweep)


def run_sweep(args):
    from runner.sweep import plan, worker
    sweep = plan.make_plan(args.solver, args.sets, args.name, args.out, args.trials,
                           args.max_iter)
    for path in worker.run_sweep(sweep, args.storage, args.parallel, args.prune):
        print(f"wrote {path}")


def add_compare(command):
    command.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP",
                         help="a run (folder, log, snapshot or prefix) or a sweep folder")
    command.add_argument("--out", help="folder for compare.md, .csv and .png (default: the "
                         "sweep's folder for one sweep, else results/compare)")
    command.set_defaults(run=run_compare)


def run_compare(args):
    from runner import compare
    table, written = compare.compare(args.runs, args.out)
    print(table)
    for path in written:
        print(f"wrote {path}")


def add_plot(plot):
    plot.add_argument("run_or_log", metavar="RUN_OR_LOG",
                      help="a *_log.jsonl, a run folder, a snapshot or its prefix")
    plot.add_argument("--out", help="PNG to write (default: beside the log)")
    plot.set_defaults(run=run_plot)


def run_plot(args):
    from runner.score.plot import find_log, plot_log
    log_path = find_log(args.run_or_log)
    out = args.out or str(log_path).removesuffix("_log.jsonl") + "_curves.png"
    print(f"wrote {plot_log(log_path, out)}")


def add_ship(command):
    from runner import ship
    command.add_argument("solverstates", metavar="SOLVERSTATE", nargs="+",
                         help="the snapshot whose model to ship; given several (runs of one "
                         "net), the model shipped is the average of their weights")
    command.add_argument("--best", action="store_true",
                         help="ship instead the snapshot of each SOLVERSTATE's run that its "
                         "test net (a validation split, never a benchmark set) scored best")
    command.add_argument("--greedy", metavar="PREP_CONFIG",
                         help="average only the snapshots a greedy soup keeps: each one's model "
                         "scored on the images PREP_CONFIG holds out of training, whole, and "
                         "added best first while the average's score does not fall")
    command.add_argument("--name", required=True, help="the shipped model's name (fsrcnn_x3)")
    command.add_argument("--out", default=str(ship.DEFAULT_FOLDER),
                         help="folder (default: %(default)s)")
    command.set_defaults(run=run_ship)


def run_ship(args):
    from runner import ship
    state_paths = args.solverstates
    if args.best:
        choices = [ship.best_tested(state_path) for state_path in state_paths]
        for choice in choices:
            print(f"chose {choice.path}: test net #0 PSNR {choice.psnr:.4f} dB at iteration "
                  f"{choice.iteration:,}, the best of the {choice.tested} snapshots tested")
        state_paths = [choice.path for choice in choices]
    if len(state_paths) > 1 and not args.greedy:
        print(f"averaging the weights of {len(state_paths)} snapshots")
    for path in ship.ship(state_paths, args.name, args.out, args.greedy, print):
        print(f"wrote {path}")


def positive_int(minimum):
    """An argparse type: an integer of at least `minimum`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def image_size(text):
    """An argparse type: `HxW` (or one number for a square) as (H, W)."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected HxW such as 7x7, got {text!r}")
    return (int(parts[0]), int(parts[-1]))


def comma_list(parse=str):
    """An argparse type: comma-separated values (at least one), each parsed by `parse`."""
    def parse_list(text):
        items = [parse(item.strip()) for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected one or more comma-separated values, "
                                             f"got {text!r}")
        return items
    return parse_list


def add_inference_options(command):
    """--tile and --device, for the commands that run a model on images."""
    from runner.infer import tile_sizes
    command.add_argument("--tile", type=positive_int(0), default=tile_sizes.DEFAULT_TILE_SIZE,
                         help="tile side in LR pixels for large images (0: whole image; "
                         "default: %(default)s; an image of at most "
                         f"{tile_sizes.WHOLE_PLANE_PIXELS:,} pixels runs whole)")
    command.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def add_predict(command):
    from runner import predict
    from runner.imaging import formats
    from runner.infer import engines
    from runner.score import degraded
    command.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image or video files, folders of them, or glob patterns")
    command.add_argument("--model", help="the .model (or .caffemodel, with the .prototxt of its "
                         "name beside it) to use (default: the newest snapshot of "
                         "configs/fsrcnn_solver.yaml's run, else results/models/fsrcnn_x3.model)")
    command.add_argument("--scale", type=positive_int(2),
                         help="the upscaling factor; must be the model's")
    command.add_argument("--out", default=str(predict.DEFAULT_OUTPUT_FOLDER),
                         help="output folder (default: %(default)s)")
    command.add_argument("--format", choices=formats.FORMATS, default=predict.Options.format,
                         help="image outputs' format (default: %(default)s; videos: mp4)")
    command.add_argument("--quality", type=positive_int(1),
                         help="jpg and webp quality, 1 to 100 (default: "
                         f"{', '.join(f'{k} {v}' for k, v in formats.DEFAULT_QUALITY.items())})")
    command.add_argument("--bicubic", action="store_true",
                         help="also write the bicubic upscaling, <stem>_x<scale>_bicubic")
    command.add_argument("--degrade", action="store_true",
                         help="take each image as ground truth: degrade it, super-resolve, score "
                         "and draw ground truth | bicubic | network")
    command.add_argument("--degradation", choices=degraded.DEGRADATIONS, default="paper",
                         help="with --degrade: paper (MATLAB bicubic, default) or tutorial "
                         "(Gaussian blur + cv2.resize)")
    command.add_argument("--jobs", type=positive_int(1), default=1,
                         help="processes sharing the inputs, each with its share of --threads "
                         "(default: %(default)s)")
    command.add_argument("--threads", type=positive_int(1),
                         help="threads in all (default: torch's and OpenCV's own setting, "
                         "every core unless OMP_NUM_THREADS says otherwise; with --jobs, every "
                         "core this process may use)")
    command.add_argument("--max-pixels", type=positive_int(1), default=predict.DEFAULT_MAX_PIXELS,
                         help="refuse an image (or video frame) of more input pixels; read from "
                         "the file's header, before decoding (default: %(default)s, 8192x8192)")
    add_inference_options(command)
    limits = engines.opencv_limits()
    command.add_argument("--engine", choices=engines.ENGINES, default=engines.DEFAULT_ENGINE,
                         help="what computes the net: opencv (CPU; starts without torch, but "
                         "computes more slowly), torch, or auto (default: opencv on the CPU for "
                         f"at most {limits.one_input:,} input pixels in all per process here, "
                         f"{limits.side_by_side:,} where torch would take several inputs side "
                         f"by side, {limits.one_thread:,} where a process computes on one "
                         "thread, no video, when it runs every layer of the net; else torch)")
    command.set_defaults(run=run_predict)


def run_predict(args):
    from runner import predict
    from runner.config import memory
    from runner.infer import engines
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise UserError("--quality", f"must be 1 to 100, got {args.quality}")
    paths = predict.collect_inputs(args.inputs)
    model_path, why = ((Path(args.model), "--model") if args.model
                       else predict.default_model())
    memory.keep_freed_memory()
    options = predict.Options(args.tile or None, args.format, args.quality, args.bicubic,
                              args.degradation, args.jobs, args.threads, args.max_pixels)
    processes = min(args.jobs, len(paths))
    limit = engines.opencv_pixel_limit(options.threads_per_job(), processes,
                                       len(paths) > processes)
    engine = engines.engine_for(args.engine, predict.input_pixels(paths, limit), limit)
    head_start = None
    if args.engine == "auto" and engine == "torch" and args.device == "cpu" and not args.degrade:
        # OpenCV's engine takes the first images in a child while torch is imported here
        count = predict.head_start_count(paths, options)
        if count:
            head_start = predict.HeadStart(model_path, args.scale, paths[:count], args.out,
                                           options)
    try:
        _predict_with(engines.load_for_inference(model_path, args.device, args.scale, engine),
                      model_path, why, paths, options, args, head_start)
    finally:
        if head_start is not None:
            head_start.close()


def _predict_with(model, model_path, why, paths, options, args, head_start):
    from tqdm import tqdm

    from runner import predict
    ahead = head_start.taken() if head_start is not None else 0
    print(f"model: {model_path} ({why}; {model.name}, x{model.scale}, "
          f"iteration {model.iteration}; {model.engine} engine"
          + (f", the first {ahead} inputs by OpenCV's while torch loaded)" if ahead else ")"))
    jobs = predict.plan(paths, model, args.out, args.degrade, options)
    for job, result in predict.run(jobs, model, options, head_start=head_start):
        if job.kind == "degrade":
            scores = ", ".join(f"{name} PSNR {psnr:.2f} dB SSIM {ssim:.4f}"
                               for name, (psnr, ssim) in result.scores.items())
            tqdm.write(f"{job.source} (x{model.scale}, {args.degradation} degradation, Y, "
                       f"shave {model.scale}): {scores}; figure: {result.figure}")
        elif job.kind == "video":
            tqdm.write(f"{job.source} -> {result.path} ({result.frames} frames at "
                       f"{result.fps:g} fps)")
        else:
            tqdm.write(f"{job.source} -> {', '.join(map(str, result))}")


def add_test(command):
    from runner.score import protocol
    command.add_argument("--model", help="the .model (or .caffemodel) to score (without it: "
                         "bicubic only)")
    command.add_argument("--bicubic-only", action="store_true",
                         help="score bicubic alone (the published baseline)")
    command.add_argument("--sets", type=comma_list(), default=list(protocol.DEFAULT_SETS),
                         help="comma-separated dataset folders of SR_DATA (default: "
                         f"{','.join(protocol.DEFAULT_SETS)})")
    command.add_argument("--validation", metavar="PREP_CONFIG",
                         help="score the images this prep config holds out of training "
                         "(validation_sets, validation_images), whole, instead of --sets: "
                         "choose snapshots and settings on these, never on the test sets")
    command.add_argument("--scale", type=comma_list(positive_int(2)),
                         help="upscaling factor(s), comma-separated for bicubic (default: the "
                         "model's, else 3)")
    command.add_argument("--y-conversion", choices=("matlab", "opencv"), default="matlab",
                         help="Y channel: MATLAB rgb2ycbcr (the papers', default) or OpenCV "
                         "YCrCb")
    command.add_argument("--shave", type=positive_int(0),
                         help="pixels cut from each border before scoring (default: the scale)")
    command.add_argument("--out", default=str(protocol.DEFAULT_REPORT_FOLDER),
                         help="folder for the Markdown and CSV reports (default: %(default)s)")
    command.add_argument("--per-image", action="store_true",
                         help="also print every image's scores (the reports always have them)")
    add_inference_options(command)
    command.set_defaults(run=run_test)


def run_test(args):
    from runner.infer import torch_engine
    from runner.score import evaluate, published
    if args.bicubic_only and args.model:
        raise UserError("runner test", "--bicubic-only scores no model: drop --model or "
                        "--bicubic-only")
    if args.model and args.scale and len(args.scale) > 1:
        raise UserError("runner test", "a model has one scale: give one --scale")
    model = None
    if args.model:
        model = torch_engine.load_for_inference(args.model, args.device,
                                                args.scale[0] if args.scale else None)
    scores, reports = evaluate.run(
        tested_images(args), [model.scale] if model else (args.scale or [3]),
        evaluate.scoring_methods(model, args.tile or None), args.out,
        Path(args.model).stem if model else evaluate.BICUBIC, args.y_conversion, args.shave,
        progress=True)
    for protocol, paths in reports:
        print(f"{protocol.describe()}: wrote {' and '.join(map(str, paths))}")
    if args.per_image:
        print(evaluate.format_scores(scores))
    mean_rows = evaluate.means(scores)
    print(evaluate.format_table(mean_rows))
    for line in published.format_comparisons(published.comparisons(mean_rows)):
        print(line)


def tested_images(args):
    """[(set name, image file)] that `runner test` scores: the held-out images of
    --validation's prep config, else every image of --sets."""
    from runner.imaging import datasets
    from runner.score import evaluate
    if not args.validation:
        return datasets.set_images(args.sets)
    return evaluate.held_out_images(args.validation)


def add_inspect(command):
    from runner.net import structure
    command.add_argument("file", metavar="FILE", help="a .model, .caffemodel or .solverstate")
    command.add_argument("--input", type=image_size, default=structure.DEFAULT_INPUT_SIZE,
                         help="HxW of the input the layer table is computed for (default: "
                         f"{'x'.join(map(str, structure.DEFAULT_INPUT_SIZE))})")
    command.set_defaults(run=run_inspect)


def run_inspect(args):
    from runner import inspect
    print(inspect.format_report(inspect.inspect_file(args.file, args.input)))


def add_export(command):
    command.add_argument("model", metavar="MODEL", help="the .model (or .caffemodel) to export")
    command.add_argument("--format", choices=EXPORT_FORMATS, default="caffe",
                         help="what to write (default: %(default)s)")
    command.add_argument("--out", help="output folder (default: the model's)")
    command.set_defaults(run=run_export)


def run_export(args):
    from runner import export
    for path in export.export(args.model, args.out, args.format):
        print(f"wrote {path}")


def add_time(command):
    command.add_argument("--net", required=True, help="net file (.yaml or .prototxt)")
    command.add_argument("--iterations", type=positive_int(1), default=50,
                         help="timed iterations (default: %(default)s)")
    command.add_argument("--batch", type=positive_int(1),
                         help="batch size (default: the net's data layer's)")
    command.add_argument("--input", type=image_size,
                         help="HxW of the random input (default: the net's data)")
    command.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    command.set_defaults(run=run_time)


def run_time(args):
    from runner import timing
    from runner.config import loading, schema
    net_param = loading.load(schema.NetParameter, args.net)
    print(timing.format_timing(timing.time_net(net_param, args.net, args.iterations,
                                               args.batch, args.device, args.input)))


def add_upgrade(command):
    from runner.config import text
    command.add_argument("file", metavar="FILE", help="the net or solver file (.prototxt or "
                         ".yaml)")
    command.add_argument("--to", choices=sorted(text.WRITTEN_SUFFIXES),
                         help="the format to write (default: the input's)")
    command.add_argument("--out", help="the file (or folder) to write (default: beside the "
                         "input, with the format's suffix)")
    command.add_argument("--overwrite", action="store_true",
                         help="allow replacing the input file itself")
    command.set_defaults(run=run_upgrade)


def run_upgrade(args):
    from runner import upgrade_file
    target, done = upgrade_file.upgrade_file(args.file, args.to, args.out, args.overwrite)
    print(f"wrote {target} ({done})")


def add_schema(reference):
    reference.add_argument("kind", choices=("net", "prep", "solver"))
    reference.set_defaults(run=run_schema)


def run_schema(args):
    from runner.config import schema
    kinds = {"net": schema.NetParameter, "solver": schema.SolverParameter,
             "prep": schema.PrepConfig}
    print("\n".join(schema.describe(kinds[args.kind])))


# name: (one line of help, the function adding its flags). Only the command being run gets its
# flags (and imports what they need): `runner --help` and every command start at once.
COMMANDS = {
    "train": ("train a net with a solver file (caffe train)", add_train),
    "plot": ("draw loss and test PSNR against iteration", add_plot),
    "ship": ("copy a run's model, with the configs, logs and curves that made it, into "
             "results/models/", add_ship),
    "schema": ("every config key: type, default, meaning", add_schema),
    "predict": ("super-resolve images, folders, globs or videos with a trained model",
                add_predict),
    "test": ("PSNR and SSIM of bicubic and a model on benchmark sets, by the papers' protocol",
             add_test),
    "inspect": ("what a .model or .solverstate holds: iteration, solver, layers, weights, "
                "checksums", add_inspect),
    "export": ("write a model in another framework's files (caffe: deploy .prototxt and "
               ".caffemodel)", add_export),
    "time": ("per-layer forward and backward milliseconds of a net (caffe time)", add_time),
    "upgrade": ("write a net or solver file in Caffe's legacy syntax (V1 layers, solver_type, "
                "...) in the current form", add_upgrade),
    "sweep": ("a parameter study over solver and net keys: a grid, or Optuna's TPE; each trial "
              "an ordinary run", add_sweep),
    "compare": ("runs or sweeps side by side: a Markdown and CSV table and one figure, "
                "labelled by what differs", add_compare),
}


def build_parser(argv=()):
    """The parser, with the flags of the command `argv` names (the first of its words that is
    a command)."""
    parser = ArgumentParser(prog="runner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    chosen = next((word for word in argv if word in COMMANDS), None)
    for name, (help_line, add) in COMMANDS.items():
        command = commands.add_parser(name, help=help_line)
        if name == chosen:
            add(command)
    return parser


def main(argv=None):
    """Run the command `argv` names (None: this process's own arguments, the process then
    ending with the command); returns the exit code."""
    if argv is None:
        gc.set_threshold(COLLECTOR_THRESHOLD)
    try:
        return _run_command(sys.argv[1:] if argv is None else [str(word) for word in argv])
    finally:
        if argv is None:
            # Python's shutdown looks for cycles among all objects as it tears modules down:
            # with torch loaded, 0.38 s of a command's whole time. Each command has closed its
            # outputs by now, so the objects left are frozen: freed with the process, unsearched.
            gc.freeze()


def _run_command(argv):
    """The command of a list of words, run; returns the exit code."""
    try:
        args = build_parser(argv).parse_args(argv)
        args.argv = argv
        args.run(args)
        sys.stdout.flush()          # here, where a closed pipe is handled, not at exit
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader has gone (`| head`): stop quietly, as the tools of a shell pipeline do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    return 0
