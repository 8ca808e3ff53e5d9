"""Floor 6, infer: trained nets on whole images. Deploy nets and loading a model for inference
(`deploy.py`), whole planes in seamless tiles (`tiles.py`), colour images through the Y channel
(`colour.py`), and video files frame by frame (`video.py`).

May import: runner.errors, runner.config, runner.files, runner.imaging, runner.net
"""
