"""Image quality metrics.

* :mod:`img2img.metrics.paired`: full-reference PSNR / SSIM (the super-resolution protocol);
  its names are re-exported here, so ``from img2img.metrics import psnr`` keeps working.
* :mod:`img2img.metrics.fid`: FID and KID of two unpaired image sets, with the 2015-12-05
  TensorFlow Inception-v3 (:mod:`~img2img.metrics.inception`, weights located and loaded by
  :mod:`~img2img.metrics.inception_weights`, images prepared by
  :mod:`~img2img.metrics.features`). Import those modules directly; this package does not
  import them.
"""

from img2img.metrics.paired import (
    SSIM_WINDOW,
    FolderReport,
    evaluate_folders,
    evaluate_pair,
    format_row,
    format_table,
    match_folders,
    psnr,
    rgb_to_y,
    ssim,
    write_json,
)

__all__ = [
    "SSIM_WINDOW",
    "FolderReport",
    "evaluate_folders",
    "evaluate_pair",
    "format_row",
    "format_table",
    "match_folders",
    "psnr",
    "rgb_to_y",
    "ssim",
    "write_json",
]
