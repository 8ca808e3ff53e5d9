"""The first stage: training and test images become HDF5 files of LR/HR subimage pairs.

What only preparing data needs lives here: subimage extraction (`subimages.py`), the pipeline
from a prep config to files (`pipeline.py`), the HDF5 writer (`hdf5_writer.py`) and the command
line (`cli.py`, also `python -m prep fetch`). Images, MATLAB-compatible resizing and the datasets
come from the library (`runner.imaging`); nothing in `runner` imports this package.

May import: runner
"""
