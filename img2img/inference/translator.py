"""Translator: a trained generator applied to images of any size.

Depends only on the checkpoint format, ``nn`` and ``data`` (never on tasks or the trainer),
so it loads in a process that cannot train.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2img.checkpoint import GeneratorMeta
from img2img.data.convert import as_channels, from_tensor, to_tensor
from img2img.errors import UsageError
from img2img.inference.loader import load_model
from img2img.inference.onnx_backend import OnnxGenerator, reject_torch_options
from img2img.nn.cpu import accelerate
from img2img.nn.norm import use_per_image_statistics
from img2img.runtime import (
    AUTO_PRECISION,
    autocast,
    release_on_new_shape,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger(__name__)


def pad_to_multiple(x: torch.Tensor, multiple: int,
                    min_size: int = 1) -> tuple[torch.Tensor, int, int]:
    """Pad NCHW ``x`` at the bottom/right to a multiple of ``multiple`` that is at least
    ``min_size`` in both dims; reflect where possible, else replicate."""
    h, w = x.shape[-2:]
    th, tw = max(h, min_size), max(w, min_size)
    ph, pw = th + (-th) % multiple - h, tw + (-tw) % multiple - w
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


class Translator:
    """Callable on a NumPy array (HxW or HxWxC, uint8/uint16), a PIL image or a tensor.

    Returns the same kind. Arrays and PIL images keep their size (times the model's scale),
    dtype and channel layout: alpha is carried through unchanged, 16-bit stays 16-bit,
    grayscale into an RGB model gives grayscale out. Tensors are float in the network's
    value range [-1, 1], shaped CHW or NCHW.

    ``precision``: fp32 (the default), bf16, fp16 or ``auto`` (what the device does well:
    :func:`img2img.runtime.choose_precision`; ``translate``'s default); ``self.precision``
    holds the one in use.
    """

    def __init__(self, model: nn.Module, meta: GeneratorMeta, device: torch.device,
                 precision: str = "fp32", dropout_at_test: bool = False,
                 compile: bool = False, per_image_norm: bool = False) -> None:
        if isinstance(model, OnnxGenerator):
            if precision == AUTO_PRECISION:
                precision = "fp32"  # the graph's precision was fixed at export
            reject_torch_options(precision, dropout_at_test, compile, per_image_norm)
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
        self.meta = meta
        self.device = device
        self.precision = precision
        # Smallest input height/width the network runs on (declared by the architecture).
        self.min_size = int(getattr(self.model, "min_size", 1))
        if dropout_at_test:
            for m in self.model.modules():
                if isinstance(m, nn.Dropout | nn.Dropout2d):
                    m.train()

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
        padded, h, w = pad_to_multiple(x, self.meta.size_multiple, min_size=self.min_size)
        release_on_new_shape(padded.shape)
        lo, hi = self.meta.value_range
        bgr = self.meta.channel_order == "BGR" and padded.shape[1] == 3
        if (lo, hi) != (-1.0, 1.0):  # e.g. [0, 1] for BasicSR models
            padded = (padded + 1) * ((hi - lo) / 2) + lo
        if bgr:
            padded = padded.flip(1)
        with autocast(self.device, self.precision):
            y = self.model(padded)
        s = self.meta.scale
        y = y[..., : h * s, : w * s].float().clamp_(lo, hi)
        if bgr:
            y = y.flip(1)
        if (lo, hi) != (-1.0, 1.0):
            y = (y - lo) * (2 / (hi - lo)) - 1
        return y

    # --- arrays -------------------------------------------------------------------------
    def _prepare(self, img: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
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
        img = as_channels(img, self.meta.in_channels)
        return to_tensor(img), info

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
        from img2img.inference.tiling import translate_array_tiled

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
