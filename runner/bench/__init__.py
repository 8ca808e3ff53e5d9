"""`make bench` (`python -m runner.bench`): how fast we train, super-resolve and prepare data,
measured side by side with what people use, in one run, and written to results/bench.md.

This machine is small and shared, so a number alone says little: every comparison runs
interleaved in the same process (ours, theirs, ours, theirs, ...), each side reports the median
of its repetitions, and what counts is their ratio.

1. Training FSRCNN(56,12,4) x3 at batch 128 on the prepared T91 HDF5 (`make prep`, run first if
   missing): runner train's Solver against a loop written the way common PyTorch
   reimplementations write it (nn.Sequential, torch.optim.SGD, nn.MSELoss, a DataLoader with two
   workers whose Dataset opens the HDF5 file for every sample), and as a fraction of the
   machine's arithmetic peak, measured in the same run with a large fp32 matmul; a
   torch.profiler table of our training step says where its time goes, i.e. what limits it.
2. Super-resolving a 256x256 Y image x3 with FSRCNN, and 320x180 colour video frames with
   FSRCNN-s: runner predict's path (runner/infer/colour.py, runner/infer/tiles.py) against OpenCV's
   dnn_superres with the authors' models ($SR_DATA/reference_models). The 256x256 comparison
   runs the zero-padded layout OpenCV's model computes, with seeded random weights (speed does
   not depend on them), and the shipped unpadded x3 model beside it; the frames, the shipped
   FSRCNN-s (else random weights).
3. `make prep` for T91 x3: the whole process, wall time.
4. Whole `runner predict` processes against the plain OpenCV scripts people write (a 1080p and a
   4K photo, BSD100 as a folder, a 640x360 clip with FSRCNN and FSRCNN-s), with each child's
   peak memory; the same Y plane through onnxruntime running our model exported to ONNX; how
   long the command line takes to start (`whole_process.py`; `--only whole` runs these alone).

5. Where there is a CUDA device (`--only gpu` runs these alone): training samples/s on it, ours
   beside the reference loop and as a fraction of its fp32 matmul peak, and milliseconds per
   image, ours beside yjn870/FSRCNN-pytorch's test.py on the same GPU and beside our CPU path
   (`gpu.py`).

Ours also runs with runner/net/fast_paths.py disabled ("fast paths off"), to show what they give.

`make bench-train` (`python -m runner.bench.time_to_quality`) is the other kind of measurement:
not a rate but Set5 PSNR against wall-clock time, for the time-to-quality recipe, the tutorial's
solver and yjn870/FSRCNN-pytorch's loop (`reference_loop.py`, a process of its own), each a
child process given the same budget; its figure and table go to results/time_to_quality.*.

One module per thing measured (`training.py`, `prediction.py`, `prep_time.py`,
`whole_process.py`, `gpu.py`), each with its contenders and its section of the report;
`measure.py` holds how a comparison is timed and stated, `suite.py` runs them all and writes the
report, `__main__.py` is the command line. `prep_time.py` also prepares what a bench needs when
it is missing.
"""
