"""`runner sweep`: a parameter study over solver and net keys, each trial an ordinary run.

`folders.py` says where a sweep's files live; `plan.py` turns the command line into the trials' configs (the grid of `--set` values, or the
ranges TPE samples) and checks every one of them against the schema before anything is
written; `study.py` keeps the study in Optuna's RDB storage (SQLite in the sweep folder, or a
server shared by several machines): which trial runs where, and the continuation of an
interrupted one; `trial.py` is one trial in its own process (`runner train`'s solver, resumed
from the trial's newest snapshot when it has one); `worker.py` runs trials `--parallel` at a
time, reports their test PSNR for `--prune`, and ends with `runner compare`.
"""
