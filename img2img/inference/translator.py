"""Translator: a trained generator applied to images of any size.

Depends only on the checkpoint format, ``nn`` and ``data`` (never on tasks or the trainer),
so it loads in a process that cannot train.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.checkpoint import GeneratorMeta
from img2img.data.convert import as_channels, from_network, from_tensor, to_network, to_tensor
from img2img.inference.backend import ModelBackend, make_backend
from img2img.inference.loader import load_model
from img2img.inference.padding import pad_to_multiple
from img2img.runtime import release_on_new_shape, resolve_device

__all__ = ["Translator", "network_input", "prepare_array"]


def prepare_array(img: np.ndarray, in_channels: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """An HxW or HxWxC (1-4 channels) uint8/uint16 image -> a CHW float tensor in [-1, 1]
    with ``in_channels`` channels, and what ``Translator`` needs to give the output the
    input's layout back (dtype, alpha, channel count). ValueError for anything else."""
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got {img.dtype}")
    info: dict[str, Any] = {"dtype": img.dtype, "ndim": img.ndim, "alpha": None}
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC image with 1-4 channels, got {img.shape}")
    if img.shape[2] in (2, 4):
        info["alpha"] = img[:, :, -1:]
        img = img[:, :, :-1]
    info["channels"] = img.shape[2]
    return to_tensor(as_channels(img, in_channels)), info


def network_input(x: torch.Tensor, meta: GeneratorMeta,
                  min_size: int = 1) -> tuple[torch.Tensor, int, int]:
    """NCHW float in [-1, 1] -> what the network is given (padded to its size multiple and
    ``min_size``, in its value range and channel order), and the unpadded height and width."""
    padded, h, w = pad_to_multiple(x, meta.size_multiple, min_size=min_size)
    bgr = meta.channel_order == "BGR" and padded.shape[1] == 3
    return to_network(padded, meta.value_range, bgr), h, w


class Translator:
    """Callable on a NumPy array (HxW or HxWxC, uint8/uint16), a PIL image or a tensor.

    Returns the same kind. Arrays and PIL images keep their size (times the model's scale),
    dtype and channel layout: alpha is carried through unchanged, 16-bit stays 16-bit,
    grayscale into an RGB model gives grayscale out. Tensors are float in the network's
    value range [-1, 1], shaped CHW or NCHW.

    The network runs in a model backend (``inference.backend``: PyTorch, or ONNX Runtime for
    an exported ``.onnx``); padding to its size multiple (``inference.padding``) and the
    conversion to and from its value range (``data.convert``) are done here, the same for
    every backend.

    ``precision``: fp32 (the default), bf16, fp16 or ``auto`` (what the device does well:
    :func:`img2img.runtime.choose_precision`; ``translate``'s default); ``self.precision``
    holds the one in use (``int8`` for a quantized ``.onnx``, see ``inference.quantize``).
    """

    def __init__(self, model: nn.Module, meta: GeneratorMeta, device: torch.device,
                 precision: str = "fp32", dropout_at_test: bool = False,
                 compile: bool = False, per_image_norm: bool = False) -> None:
        self.backend: ModelBackend = make_backend(model, device, precision, dropout_at_test,
                                                  compile, per_image_norm)
        self.meta = meta

    @property
    def model(self) -> Any:
        """The network (an ``nn.Module``, or the ONNX Runtime session standing in for one)."""
        return self.backend.model

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def precision(self) -> str:
        """The precision in use: fp32, bf16, fp16, or int8 (a quantized ``.onnx``, or a
        network with int8 layers: ``inference.torch_int8``)."""
        return self.backend.precision

    @property
    def min_size(self) -> int:
        """Smallest input height/width the network runs on."""
        return self.backend.min_size

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto",
                        precision: str = "fp32", dropout_at_test: bool = False,
                        compile: bool = False, key: str | None = None,
                        per_image_norm: bool = False) -> Translator:
        """Load a generator ``.safetensors`` written by the trainer (no other flag needed), an
        exported ``.onnx`` (run by ONNX Runtime), or a published checkpoint of another project
        (``inference.loader``)."""
        dev = resolve_device(device)
        model, meta = load_model(path, dev, key)
        return cls(model, meta, dev, precision, dropout_at_test, compile, per_image_norm)

    # --- tensors ------------------------------------------------------------------------
    @torch.inference_mode()
    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW float in [-1, 1] of any size -> NCHW output (size times the model's scale)."""
        x = x.to(self.device, torch.float32)
        # Tiny images (e.g. 1x1, 17x3) are padded up to the smallest size the network accepts.
        net_in, h, w = network_input(x, self.meta, self.min_size)
        release_on_new_shape(net_in.shape)
        bgr = self.meta.channel_order == "BGR" and net_in.shape[1] == 3
        y = self.backend.run(net_in)
        s = self.meta.scale
        return from_network(y[..., : h * s, : w * s], self.meta.value_range, bgr)

    # --- arrays -------------------------------------------------------------------------
    def _prepare(self, img: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        return prepare_array(img, self.meta.in_channels)

    def _finish(self, y: torch.Tensor, info: dict[str, Any]) -> np.ndarray:
        out = from_tensor(y, info["dtype"])
        out = as_channels(out, info["channels"])
        if info["alpha"] is not None:
            alpha = info["alpha"]
            if alpha.shape[:2] != out.shape[:2]:
                import cv2

                alpha = cv2.resize(alpha, (out.shape[1], out.shape[0]),
                                   interpolation=cv2.INTER_CUBIC)[:, :, None]
            out = np.concatenate([out, alpha], axis=2)
        if info["ndim"] == 2:
            out = out[:, :, 0]
        return np.ascontiguousarray(out)

    def translate_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Translate a list of arrays; images of equal shape run together as one batch."""
        prepared = [self._prepare(img) for img in images]
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (t, _) in enumerate(prepared):
            groups.setdefault(tuple(t.shape), []).append(i)
        for idx in groups.values():
            y = self.translate_tensor(torch.stack([prepared[i][0] for i in idx])).cpu()
            for j, i in enumerate(idx):
                results[i] = self._finish(y[j], prepared[i][1])
        return results  # type: ignore[return-value]

    def translate_tiled(self, image: np.ndarray, tile: int = 512, overlap: int = 32,
                        batch_size: int = 4) -> np.ndarray:
        """Like ``self(image)`` for an array, in overlapping ``tile``-pixel tiles run in
        batches, with memory bounded by the tile size (see ``inference.tiling``)."""
        from img2img.inference.bands import translate_array_tiled

        return translate_array_tiled(self, image, tile, overlap, batch_size)  # type: ignore

    def __call__(self, image: Any) -> Any:
        """Translate one image (NumPy array, PIL image or tensor), returning the same kind."""
        if isinstance(image, torch.Tensor):
            if image.dim() == 3:
                return self.translate_tensor(image[None])[0].to(image.device)
            return self.translate_tensor(image).to(image.device)
        if isinstance(image, np.ndarray):
            return self.translate_arrays([image])[0]
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with torchvision
            Image = None  # noqa: N806
        if Image is not None and isinstance(image, Image.Image):
            return _pil_translate(self, image)
        raise TypeError(f"cannot translate an object of type {type(image).__name__}")


def _pil_translate(translator: Translator, image: Any) -> Any:
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I"):
        arr = np.asarray(image).astype(np.uint16)
        return Image.fromarray(translator(arr))
    if mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
    out = translator(np.asarray(image))
    return Image.fromarray(out)
