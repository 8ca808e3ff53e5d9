"""Image quality metrics of the SR papers; every protocol choice is an argument, nothing reads files.

Inputs are uint8 images (or floats on the same 0..`data_range` scale); both metrics compute in float64.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Wang et al. 2004 (and their ssim_index.m): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_WINDOW_SIZE = 11
SSIM_WINDOW_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def shave(image, border):
    """The image without `border` pixels on each of its four sides."""
    if border == 0:
        return image
    return image[border:-border, border:-border]


def _shaved_pair(reference, test, border):
    """Both images shaved and in float64, after checking that they can be compared."""
    if reference.shape != test.shape:
        raise ValueError(f"image shapes differ: {reference.shape} vs {test.shape}")
    return (shave(reference, border).astype(np.float64), shave(test, border).astype(np.float64))


def psnr(reference, test, *, shave_border, data_range=255):
    """Peak signal-to-noise ratio in dB after shaving `shave_border` pixels; inf for identical images."""
    reference, test = _shaved_pair(reference, test, shave_border)
    mean_squared_error = np.mean((reference - test) ** 2)
    if mean_squared_error == 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / mean_squared_error))


def _gaussian_window_1d():
    """The normalised 1-D factor of MATLAB's fspecial('gaussian', 11, 1.5), which is separable."""
    offsets = np.arange(SSIM_WINDOW_SIZE) - (SSIM_WINDOW_SIZE - 1) / 2
    window = np.exp(-(offsets**2) / (2 * SSIM_WINDOW_SIGMA**2))
    return window / window.sum()


def _filter_valid(image, window_1d):
    """MATLAB filter2(window, image, 'valid') for the separable symmetric Gaussian window."""
    rows_filtered = sliding_window_view(image, len(window_1d), axis=0) @ window_1d
    return sliding_window_view(rows_filtered, len(window_1d), axis=1) @ window_1d


def ssim(reference, test, *, shave_border, data_range=255):
    """Mean structural similarity of two 2-D images after shaving `shave_border` pixels.

    Like ssim_index.m: statistics over 'valid' window positions only (no padding, no downsampling).
    """
    reference, test = _shaved_pair(reference, test, shave_border)
    if reference.ndim != 2:
        raise ValueError(f"ssim expects 2-D images, got shape {reference.shape}")
    window = _gaussian_window_1d()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_reference = _filter_valid(reference, window)
    mu_test = _filter_valid(test, window)
    variance_reference = _filter_valid(reference * reference, window) - mu_reference**2
    variance_test = _filter_valid(test * test, window) - mu_test**2
    covariance = _filter_valid(reference * test, window) - mu_reference * mu_test
    ssim_map = ((2 * mu_reference * mu_test + c1) * (2 * covariance + c2)) / (
        (mu_reference**2 + mu_test**2 + c1) * (variance_reference + variance_test + c2)
    )
    return float(ssim_map.mean())
