"""The streamed PNG writer (runner/imaging/png.py): what OpenCV decodes is what was added, in
every colour type and bit depth, however the rows were split."""
import cv2
import numpy as np
import pytest

from runner.imaging.png import PngStream


@pytest.mark.parametrize(("shape", "dtype"), [((37, 23), np.uint8), ((37, 23, 3), np.uint8),
                                              ((37, 23, 4), np.uint8), ((37, 23, 3), np.uint16),
                                              ((37, 23), np.uint16)])
def test_rows_added_in_bands_decode_to_the_image(tmp_path, shape, dtype):
    image = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, shape, dtype)
    path = tmp_path / "streamed.png"
    with open(path, "wb") as file:
        stream = PngStream(file, shape[0], shape[1], shape[2] if len(shape) > 2 else 1,
                           np.iinfo(dtype).bits)
        for first, last in ((0, 1), (1, 16), (16, 37)):      # one row, then uneven bands
            stream.add(image[first:last])
        stream.finish()
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), image)


def test_a_stream_missing_rows_is_refused(tmp_path):
    with open(tmp_path / "short.png", "wb") as file:
        stream = PngStream(file, 4, 4, 1, 8)
        stream.add(np.zeros((3, 4), np.uint8))
        with pytest.raises(ValueError, match="3 rows written of 4"):
            stream.finish()
