"""srcaffe's library: Caffe's net and solver files, trained and run on PyTorch.

The subpackages are floors in the order the data passes through them; a floor imports only the
floors its `__init__` names on its `May import:` line, never a higher one
(tests/test_layout.py checks every import against those lines):

    errors.py   the one exception type for mistakes a user can fix (imports no floor)
    config/     the schema of every config key, file loading, Caffe prototxt
    files/      what runs read and write on disk: snapshots, .caffemodel, HDF5 data, outputs
    imaging/    image files, MATLAB-compatible imresize and colour, the datasets and their fetch
    net/        the net builder, its layers (one module per Caffe family), fillers, fast paths
    train/      the solver loop, update rules, lr policies, data feeding, processes, train log
    infer/      trained nets on whole images: deploy nets, tiles, colour, video
    score/      metrics, the papers' evaluation protocol, figures and curves

The commands sit on top, beside `cli.py` (the thin command line): `predict.py`, `inspect.py`,
`timing.py` (`runner time`), `export.py`, `ship.py`, `upgrade_file.py` (`runner upgrade`),
`compare.py` (`runner compare`), `sweep/` (`runner sweep`) and `bench/` (`make bench`); they may
import every floor. Nothing here imports `prep/`, which builds
on this library.
"""
