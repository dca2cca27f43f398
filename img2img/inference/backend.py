"""Model backends: what runs a batch of padded network inputs.

A backend maps an NCHW float tensor already padded to the network's size multiple and in
the network's value range (``Translator`` does both, for every backend alike) to the
network's output, and says where it runs (``device``), in which ``precision`` and the
smallest input it accepts (``min_size``). ``TorchBackend`` runs an ``nn.Module`` (eager or
``torch.compile``\\ d; fp32, bf16 or fp16 under autocast; or already int8:
``inference.torch_int8``); ``onnx_backend.OnnxBackend`` runs
an exported graph in ONNX Runtime. ``make_backend`` picks one by the network's type.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch
from torch import nn

from img2img.errors import UsageError
from img2img.inference.onnx_backend import OnnxBackend, OnnxGenerator
from img2img.nn.cpu import accelerate
from img2img.nn.norm import use_per_image_statistics
from img2img.runtime import AUTO_PRECISION, INT8_PRECISION, autocast, resolve_precision

__all__ = ["BACKENDS", "ModelBackend", "TorchBackend", "make_backend"]

log = logging.getLogger(__name__)


class ModelBackend(Protocol):
    """Runs the network on padded batches (see the module docstring)."""

    model: Any  # the network: an nn.Module, or what stands in for one (OnnxGenerator)
    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16
    min_size: int

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW network input on ``device`` -> the network's NCHW output (any float type)."""
        ...


class TorchBackend:
    """A PyTorch network in eval mode on ``device``.

    ``precision``: fp32, bf16, fp16 or ``auto`` (what the device does well,
    :func:`img2img.runtime.choose_precision`); fp16 is refused for networks known to give
    wrong results in it. ``compile``: ``torch.compile`` in place (parameters and state_dict
    keys unchanged). ``dropout_at_test`` keeps dropout active; ``per_image_norm`` makes batch
    norm use each image's own statistics (the pix2pix paper's test-time behaviour).
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 dropout_at_test: bool = False, compile: bool = False,
                 per_image_norm: bool = False) -> None:
        fp16_ok = getattr(model, "supports_fp16", True)
        name = getattr(model, "architecture", type(model).__name__)
        if precision == "fp16" and not fp16_ok:
            raise UsageError(f"--precision fp16: {name} is known to give wrong results in "
                             "fp16; use fp32 (or bf16)")
        auto = precision == AUTO_PRECISION
        precision = resolve_precision(precision, device, training=False)
        if auto and precision == "fp16" and not fp16_ok:
            log.info("precision auto -> fp32 instead (%s gives wrong results in fp16)", name)
            precision = "fp32"
        # the toolkit's generators get their faster execution (img2img.nn.cpu), in place
        self.model = accelerate(model.to(device).eval())
        if per_image_norm:  # batch norm with each image's own statistics (pix2pix at test)
            use_per_image_statistics(self.model)
        if compile:  # in place: the module keeps its parameters and state_dict keys
            self.model.compile()
        self.device = device
        self._autocast = precision
        # a network whose layers are int8 already (inference.torch_int8) runs as it is
        self.precision = INT8_PRECISION if getattr(model, "int8", False) else precision
        # Smallest input height/width the network runs on (declared by the architecture).
        self.min_size = int(getattr(self.model, "min_size", 1))
        if dropout_at_test:
            for m in self.model.modules():
                if isinstance(m, nn.Dropout | nn.Dropout2d):
                    m.train()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self._autocast):
            return self.model(x)


BACKENDS: dict[type, type] = {OnnxGenerator: OnnxBackend}
"""Backend class by network type; any other network is an ``nn.Module`` (TorchBackend)."""


def make_backend(model: Any, device: torch.device, precision: str = "fp32",
                 dropout_at_test: bool = False, compile: bool = False,
                 per_image_norm: bool = False) -> ModelBackend:
    """The backend that runs ``model`` (UsageError for options it cannot honour)."""
    cls = BACKENDS.get(type(model), TorchBackend)
    return cls(model, device, precision, dropout_at_test, compile, per_image_norm)
