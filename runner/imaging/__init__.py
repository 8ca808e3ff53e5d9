"""Floor 3, imaging: images as both data preparation and inference take them. MATLAB-compatible
`imresize` and `rgb2ycbcr` (`matlab.py`), image files read and decoded with their checks
(`images.py` for 8-bit training images, `picture.py` for a user's files with alpha and 16 bits),
and where the datasets are (`SR_DATA`) with their checksummed fetch (`datasets.py`).

May import: runner.errors, runner.config, runner.files
"""
