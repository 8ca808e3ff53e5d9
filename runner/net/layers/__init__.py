"""Computing layers, one module per Caffe layer family, each class registered under its Caffe type
name in `registry.LAYERS` (Caffe's layer_factory). A layer knows only its own parameters, blobs
and shapes: nothing of nets, data or solvers.

May import: runner.errors, runner.config, runner.net.fillers, runner.net.fast_paths,
runner.net.subpixel, runner.net.structure
"""
