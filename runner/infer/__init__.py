"""Floor 6, infer: trained nets on whole images. Deploy nets and loading a model for inference
(`deploy.py`), whole planes in seamless tiles, band by band (`tiles.py`), colour images through
the Y channel, band by band (`colour.py`), and video files frame by frame (`video.py`).

May import: runner.errors, runner.config, runner.files, runner.imaging, runner.net
"""
