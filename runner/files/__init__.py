"""Floor 2, files: what runs keep on disk and read back. Snapshot pairs (`.model` and
`.solverstate`, HDF5), Caffe's `.caffemodel`, HDF5 training data and its source lists, and
output files written atomically. Every HDF5 file is opened through `safe_hdf5.py`: only what
the file itself stores, nothing read before its shape is checked.

May import: runner.errors, runner.config
"""
