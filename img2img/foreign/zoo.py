"""The long tail of published SR / restoration models, run through spandrel (``img2img[zoo]``).

When no native family claims a state dict, :func:`recognise_spandrel` hands it (already loaded
safely by :mod:`.load`; spandrel never opens the file) to ``spandrel.ModelLoader``, which reads
the architecture and its hyperparameters from the tensors: SwinIR, Swin2SR, HAT, DAT, DRCT,
ATD, SPAN, OmniSR, SAFMN, Real-CUGAN, Real-ESRGAN Compact, SCUNet, NAFNet, DnCNN, GFPGAN and
the rest of spandrel's registry. Only image-to-image models with 1 or 3 channels are
accepted (inpainting models, which also take a mask, are refused). The module is wrapped in a
:class:`SpandrelGenerator`, which exposes what the toolkit reads from a generator: channels,
scale, value range ``(0, 1)`` (spandrel models take and give RGB in [0, 1]) and the size
requirements (``size_multiple``, ``min_size``). An architecture that needs square inputs
gets them: spandrel's own call pads to a square and crops the result.

The toolkit checkpoint of such a model (``img2img import``) stores the spandrel module's own
state dict under its own tensor names, with arch ``"spandrel"`` and
``kwargs={"architecture": <spandrel id>}``; :func:`load_saved` rebuilds it through spandrel
from those tensors and checks that spandrel still reads them as that architecture.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from img2img.checkpoint import CheckpointError, GeneratorMeta
from img2img.data.io import atomic_write_bytes
from img2img.extras import missing_message, optional

from .family import Imported, StateDict
from .load import ForeignCheckpointError

SPANDREL_ARCH = "spandrel"  # the ``arch`` of a toolkit checkpoint holding a spandrel model
EXAMPLES = "SwinIR, HAT, DAT, SPAN, OmniSR, Real-CUGAN, ..."
CHANNELS = (1, 3)


def spandrel_or_none() -> ModuleType | None:
    """The ``spandrel`` module, or None when the ``zoo`` extra is not installed."""
    return optional("spandrel")


def missing_hint() -> str:
    """What the error says when spandrel is absent: the extra to install."""
    return missing_message(f"other published architectures ({EXAMPLES})", "zoo")


def tried_name(spandrel: ModuleType) -> str:
    """How the error that lists the families tried names spandrel's registry."""
    return (f"the {len(spandrel.MAIN_REGISTRY)} architectures of spandrel "
            f"{spandrel.__version__}")


class SpandrelGenerator(nn.Module):
    """A spandrel image model as a toolkit generator: NCHW in [0, 1] -> NCHW x ``scale``.

    ``forward`` goes through the descriptor's own call (the architecture's input
    conversions, padding to its size requirements, output clamped to [0, 1]) one image at a
    time, since some architectures' calls assume a batch of one.
    """

    value_range = (0.0, 1.0)

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.net = descriptor.model
        self._descriptor = descriptor  # not a Module: holds the same network as self.net
        self.architecture = str(descriptor.architecture.id)
        self.in_channels = int(descriptor.input_channels)
        self.out_channels = int(descriptor.output_channels)
        self.scale = int(descriptor.scale)
        req = descriptor.size_requirements
        self.size_multiple = int(req.multiple_of)
        self.min_size = max(1, int(req.minimum))
        self.square = bool(req.square)
        self.supports_fp16 = bool(descriptor.supports_half)
        self.supports_bf16 = bool(descriptor.supports_bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB (or gray) in [0, 1] -> the model's output in [0, 1], ``scale`` times larger."""
        if x.shape[0] == 1:
            return self._descriptor(x)
        return torch.cat([self._descriptor(x[i:i + 1]) for i in range(x.shape[0])])

    def weights(self) -> StateDict:
        """The spandrel module's own state dict: what spandrel detects the architecture from."""
        return self.net.state_dict()


def describe(descriptor: Any) -> dict[str, Any]:
    """JSON-ready facts about a descriptor, kept in the checkpoint metadata's ``extra``."""
    req = descriptor.size_requirements
    return {
        "spandrel_architecture": str(descriptor.architecture.name),
        "purpose": str(descriptor.purpose),
        "tags": [str(t) for t in descriptor.tags],
        "min_size": int(req.minimum),
        "square": bool(req.square),
        "tiling": descriptor.tiling.name.lower(),
        "supports_fp16": bool(descriptor.supports_half),
    }


def _detected(spandrel: ModuleType, state: StateDict) -> str:
    canonical = spandrel.canonicalize_state_dict(dict(state))
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        if support.detect(canonical):
            return str(support.architecture.name)
    return "an"


def _descriptor(spandrel: ModuleType, state: StateDict) -> Any | None:
    """spandrel's descriptor for ``state``, None when no architecture of its registry matches."""
    try:  # a copy: some architectures' loaders add or rename entries of the dict they get
        return spandrel.ModelLoader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        return None
    except Exception as exc:  # noqa: BLE001 - the architecture's own loader, any exception
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ForeignCheckpointError(
            f"the tensors look like spandrel's {_detected(spandrel, state)} architecture, but "
            f"spandrel cannot build it from them ({type(exc).__name__}: {reason})") from None


def _accepted(spandrel: ModuleType, descriptor: Any) -> None:
    """Refuse what the toolkit cannot run as an image-to-image generator."""
    name = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ForeignCheckpointError(
            f"recognised as {name} ({descriptor.purpose}) through spandrel, a model that takes "
            "an image and a mask; img2img runs image-to-image models only")
    if descriptor.input_channels not in CHANNELS or descriptor.output_channels not in CHANNELS:
        raise ForeignCheckpointError(
            f"recognised as {name} through spandrel, with {descriptor.input_channels} input "
            f"and {descriptor.output_channels} output channels; img2img runs gray (1) or "
            "RGB (3) models")


def recognise_spandrel(state: StateDict) -> Imported | None:
    """A spandrel-supported model for ``state``, or None (also when spandrel is absent).

    The returned record carries the built :class:`SpandrelGenerator` in ``module``; its
    ``kwargs`` name the spandrel architecture id. Raises :class:`ForeignCheckpointError`
    when spandrel recognises the tensors but cannot build them, or builds a model the
    toolkit cannot run.
    """
    spandrel = spandrel_or_none()
    if spandrel is None:
        return None
    descriptor = _descriptor(spandrel, state)
    if descriptor is None:
        return None
    _accepted(spandrel, descriptor)
    model = SpandrelGenerator(descriptor)
    return Imported(
        family=f"{descriptor.architecture.name} (spandrel {spandrel.__version__})",
        arch=SPANDREL_ARCH, kwargs={"architecture": model.architecture},
        state_dict=model.state_dict(), task="sr", scale=model.scale, value_range=(0.0, 1.0),
        channel_order="RGB", notes=describe(descriptor), module=model)


def save_spandrel(path: str | os.PathLike, model: SpandrelGenerator,
                  meta: GeneratorMeta) -> None:
    """Write ``model`` as a toolkit checkpoint (atomically): spandrel's tensor names kept."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.weights().items()}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta.to_metadata()))


def load_saved(path: str | os.PathLike, meta: GeneratorMeta) -> SpandrelGenerator:
    """Rebuild the spandrel model of a toolkit checkpoint whose ``arch`` is ``"spandrel"``.

    Raises CheckpointError naming the file when spandrel is absent (with the extra to
    install), or reads the tensors as another architecture than the one recorded.
    """
    spandrel = spandrel_or_none()
    want = meta.kwargs.get("architecture")
    if spandrel is None:
        raise CheckpointError(f"{path}: {missing_message(f'its {want} model', 'zoo')}")
    try:
        descriptor = _descriptor(spandrel, load_file(str(path), device="cpu"))
    except ForeignCheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    got = None if descriptor is None else str(descriptor.architecture.id)
    if got != want:
        found = f"as {got}" if got else "as no architecture it knows"
        raise CheckpointError(f"{path}: written for spandrel's {want} architecture, but "
                              f"spandrel {spandrel.__version__} reads its tensors {found}")
    try:
        _accepted(spandrel, descriptor)
    except ForeignCheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = SpandrelGenerator(descriptor)
    if (model.scale, model.in_channels, model.out_channels) != (
            meta.scale, meta.in_channels, meta.out_channels):
        raise CheckpointError(
            f"{path}: spandrel builds a x{model.scale} {model.in_channels}->"
            f"{model.out_channels} channel {got}; the metadata says x{meta.scale} "
            f"{meta.in_channels}->{meta.out_channels}")
    return model
