"""Floor 7, score: how good a model is. PSNR and SSIM (`metrics.py`), the papers' evaluation
protocol and `runner test` (`evaluate.py`), `runner predict --degrade` (`degraded.py`), the
comparison figure (`figure.py`) and training curves from the logs (`plot.py`).

May import: runner.errors, runner.config, runner.files, runner.imaging, runner.net, runner.train,
runner.infer
"""
