"""An exported ``.onnx`` generator run by ONNX Runtime in place of the PyTorch network.

:class:`OnnxGenerator` is called like the ``nn.Module`` it replaces (an NCHW float tensor in,
one out), and :class:`OnnxBackend` is the model backend that runs it
(``inference.backend``), so :class:`~img2img.inference.translator.Translator` and everything
built on it -- padding, value ranges, alpha, 16-bit, tiling, GeoTIFF windows, folders -- run
unchanged. The
file's ``metadata_props`` are the checkpoint's metadata strings (written by
:func:`img2img.inference.onnx_export.export_onnx`), so the ``.onnx`` file rebuilds its
:class:`~img2img.checkpoint.GeneratorMeta` with no other flag. Needs only ``onnxruntime``
(``pip install 'img2img[onnx]'``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from img2img import extras
from img2img.checkpoint import CheckpointError, GeneratorMeta
from img2img.errors import UsageError

log = logging.getLogger(__name__)

INSTALL_HINT = extras.install_hint("onnx")
SUFFIX = ".onnx"
# Keys added to the checkpoint's metadata in an exported file (GeneratorMeta ignores them).
MIN_SIZE_KEY, FP16_KEY, OPSET_KEY = "onnx_min_size", "onnx_fp16", "onnx_opset"
# In a file quantized by ``inference.quantize``: the recipe and calibration it came from.
INT8_KEY = "onnx_int8"


def precision_of(metadata: dict[str, str]) -> str:
    """The precision an exported graph runs in, from its metadata: int8, fp16 or fp32."""
    if INT8_KEY in metadata:
        return "int8"
    return "fp16" if metadata.get(FP16_KEY) == "1" else "fp32"


def require(module: str, what: str) -> ModuleType:
    """Import ``onnx``/``onnxruntime``/``onnxscript`` or raise UsageError naming the extra."""
    return extras.require(module, "onnx", what)


def require_installed(module: str, what: str) -> None:
    """:func:`require` without importing ``module``: ``onnxscript`` (only dynamo's export
    needs it) takes 0.6-0.8 s to import, a tenth of a first ``--precision int8`` run."""
    if not extras.available(module):
        extras.require(module, "onnx", what)  # raises, naming the extra


def is_onnx(path: str | os.PathLike) -> bool:
    """True for a file named ``*.onnx`` (its content is checked when it is opened)."""
    return Path(path).suffix.lower() == SUFFIX


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime providers for ``device``: CUDA first when asked for and present."""
    ort = require("onnxruntime", "running an .onnx model")
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("--device %s: this onnxruntime has no CUDA provider (install "
                    "onnxruntime-gpu); running the .onnx model on the CPU", device)
    return ["CPUExecutionProvider"]


def open_session(path: str | os.PathLike, device: torch.device | str = "cpu") -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` (CheckpointError naming an unreadable
    file), with as many intra-op threads as torch uses."""
    ort = require("onnxruntime", "running an .onnx model")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3  # errors only; shape-inference notes are not the user's
    try:
        return ort.InferenceSession(str(p), sess_options=opts,
                                    providers=providers_for(torch.device(device)))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a loadable ONNX model ({first})") from None


class OnnxGenerator:
    """An ONNX Runtime session called like a generator ``nn.Module`` (tensor in, tensor out).

    Carries the attributes the translator reads from a network (``min_size``, ``scale``,
    ``size_multiple``, ``in_channels``, ...). Inputs are cast to the model's input type
    (float32, or float16 for an ``--fp16`` export) and outputs come back as float32 on the
    input's device.
    """

    def __init__(self, session: Any, meta: GeneratorMeta, min_size: int = 1,
                 path: str = "", precision: str = "fp32") -> None:
        self.session = session
        self.precision = precision  # fixed by the file: fp32, fp16 or int8 (precision_of)
        self.path = path
        self.input_name = session.get_inputs()[0].name
        self.input_dtype = np.float16 if "float16" in session.get_inputs()[0].type \
            else np.float32
        self.in_channels, self.out_channels = meta.in_channels, meta.out_channels
        self.scale, self.size_multiple = meta.scale, meta.size_multiple
        self.value_range = meta.value_range
        self.min_size = min_size
        self.architecture = f"{meta.arch} (ONNX" + (
            ")" if precision == "fp32" else f", {precision})")
        self.supports_fp16 = False  # --precision applies to PyTorch networks only

    @property
    def providers(self) -> list[str]:
        """The providers the session runs on, best first."""
        return list(self.session.get_providers())

    def to(self, *_: Any, **__: Any) -> OnnxGenerator:
        """No-op: the session's provider was chosen when it was opened."""
        return self

    def eval(self) -> OnnxGenerator:
        """No-op: an exported graph is always in inference mode."""
        return self

    def modules(self) -> list[torch.nn.Module]:
        """No torch modules inside (dropout and norm switches do not apply)."""
        return []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy(),
                                   dtype=self.input_dtype)
        y = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(np.asarray(y, dtype=np.float32)).to(x.device)


def reject_torch_options(precision: str, dropout_at_test: bool, compile: bool,
                         per_image_norm: bool) -> None:
    """UsageError for translate options that change a PyTorch network, given an ONNX one."""
    given = [name for name, on in (("--precision " + precision, precision != "fp32"),
                                   ("--dropout-at-test", dropout_at_test),
                                   ("--compile", compile),
                                   ("--per-image-norm", per_image_norm)) if on]
    if given:
        raise UsageError(f"{given[0]}: does not apply to an .onnx model (its graph is fixed at "
                         f"export; export with --fp16 for half precision, or run the "
                         f".safetensors)")


class OnnxBackend:
    """``backend.ModelBackend`` for an :class:`OnnxGenerator`: the graph runs as exported
    (its precision was fixed at export or quantization and is reported as the file says;
    ``auto`` asks for nothing else); UsageError for the options that change a PyTorch
    network."""

    def __init__(self, model: OnnxGenerator, device: torch.device, precision: str = "fp32",
                 dropout_at_test: bool = False, compile: bool = False,
                 per_image_norm: bool = False) -> None:
        if precision == "auto":
            precision = "fp32"
        reject_torch_options(precision, dropout_at_test, compile, per_image_norm)
        self.model, self.device, self.precision = model, device, model.precision
        self.min_size = model.min_size

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def load_onnx(path: str | os.PathLike,
              device: torch.device | str = "cpu") -> tuple[OnnxGenerator, GeneratorMeta]:
    """Open an exported ``.onnx`` generator and rebuild its metadata from ``metadata_props``."""
    p = Path(path)
    session = open_session(p, device)
    md = dict(session.get_modelmeta().custom_metadata_map)
    if not md:
        raise CheckpointError(f"{p}: an ONNX model without img2img metadata; export it with "
                              f"img2img export so that it says how to run it")
    meta = GeneratorMeta.from_metadata(md, p)
    try:
        min_size = int(md.get(MIN_SIZE_KEY, "1"))
    except ValueError:
        raise CheckpointError(f"{p}: invalid {MIN_SIZE_KEY} {md[MIN_SIZE_KEY]!r}") from None
    return OnnxGenerator(session, meta, max(1, min_size), str(p), precision_of(md)), meta
