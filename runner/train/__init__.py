"""Floor 5, train: Caffe's solver loop (`solver.py`) apart from its update rules
(`update_rules.py`) and learning-rate policies (`lr_policy.py`); the moving average of the
weights that a run can test and snapshot (`moving_average.py`); the HDF5Data layer's feeding
(`feeder.py`), data-parallel processes (`distributed.py`), the Caffe-style train log
(`train_log.py`) and its TensorBoard event files (`tensorboard.py`, whose bicubic panel needs
runner.imaging), and what SIGINT and SIGHUP may do to a run (`signals.py`).

May import: runner.errors, runner.config, runner.files, runner.imaging, runner.net
"""
