"""Floor 6, infer: trained nets on whole images. Deploy nets, their geometry and what every
engine's model is (`deploy.py`, no torch); the engines that run them, torch (`torch_engine.py`)
and OpenCV's dnn (`opencv_engine.py`, no torch), and which one predict takes (`engines.py`);
whole planes in seamless tiles, band by band (`tiles.py`), colour images through the Y channel,
band by band (`colour.py`), many inputs side by side, one per thread (`side_by_side.py`), and
video files frame by frame (`video.py`).

May import: runner.errors, runner.config, runner.files, runner.imaging, runner.net
"""
