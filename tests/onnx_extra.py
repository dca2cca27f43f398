"""Whether the ``onnx`` extra (onnx, onnxruntime, onnxscript) is installed: the tests that
need it are skipped without it, except under CI, where its absence is an error."""

from __future__ import annotations

import os

import pytest

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401

    HAVE_ONNX = True
except ImportError:
    if os.environ.get("CI"):
        raise
    HAVE_ONNX = False

needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs pip install 'img2img[onnx]'")
