"""What Ctrl-C (SIGINT) and SIGHUP may do to a training run, as Caffe's `--sigint_effect` and
`--sighup_effect`: `snapshot` (SIGINT: snapshot then stop; SIGHUP: snapshot and go on), `stop`,
or `none`. The solver acts on them (TrainOptions in solver.py); the command line offers them
as choices, and imports this module without torch, so building its parser stays quick."""

SIGNAL_EFFECTS = ("snapshot", "stop", "none")
