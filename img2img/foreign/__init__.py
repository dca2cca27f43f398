"""Published checkpoints of other projects, recognised from their tensors and converted.

``import_file("horse2zebra.pth")`` loads a file safely (:mod:`.load`), tries every known
family's recogniser on its tensors and returns an :class:`Imported`: the toolkit
architecture, its arguments and the converted state dict, which
``build_generator(imported.arch, **imported.kwargs).load_state_dict(..., strict=True)``
accepts. No flag describes the network; everything is read from tensor names and shapes.
"""

from __future__ import annotations

import importlib
import os

from .family import Imported, Recogniser, StateDict
from .load import ForeignCheckpointError, clean_state_dict, load_foreign
from .reference import RESNET_FAMILY, UNET_FAMILY, recognise_resnet, recognise_unet

__all__ = [
    "ForeignCheckpointError",
    "Imported",
    "families",
    "import_file",
    "import_file_with_original",
    "load_foreign",
    "recognise",
]


def families() -> list[tuple[str, Recogniser]]:
    """The recognisers tried, in order, with the family names errors report."""
    found: list[tuple[str, Recogniser]] = [
        (RESNET_FAMILY, recognise_resnet),
        (UNET_FAMILY, recognise_unet),
    ]
    try:
        basicsr = importlib.import_module(f"{__name__}.basicsr")
    except ModuleNotFoundError as exc:  # a build without the BasicSR families
        if exc.name != f"{__name__}.basicsr":
            raise
    else:
        found += [("ESRGAN / Real-ESRGAN RRDBNet (BasicSR)", basicsr.recognise_rrdbnet),
                  ("SRResNet MSRResNet (BasicSR)", basicsr.recognise_msrresnet)]
    return found


def describe(state: StateDict, n: int = 8) -> str:
    """The tensor count and the first ``n`` keys with their shapes, for error messages."""
    heads = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state.items())[:n])
    more = ", ..." if len(state) > n else ""
    return f"{len(state)} tensors: {heads}{more}"


def recognise(state: StateDict) -> Imported:
    """Convert ``state`` with the first family whose recogniser accepts it.

    Raises :class:`ForeignCheckpointError` listing the families tried and what the tensors
    look like when none does (or the recogniser's own error when the layout is one family's
    but a variant the toolkit cannot run).
    """
    state, _ = clean_state_dict(state)
    tried = families()
    for name, recogniser in tried:
        try:
            imported = recogniser(state)
        except ValueError as exc:  # the family's layout, in a variant that cannot be converted
            raise ForeignCheckpointError(f"{name}: {exc}") from None
        if imported is not None:
            return imported
    names = "; ".join(name for name, _ in tried)
    raise ForeignCheckpointError(
        f"no known generator architecture matches these weights (tried: {names}); they are "
        f"{describe(state)}")


def import_file(path: str | os.PathLike, key: str | None = None) -> Imported:
    """Load ``path`` safely and recognise its generator; ``key`` as in :func:`load_foreign`.

    The returned record's ``notes["container"]`` says where in the file the weights were.
    """
    return import_file_with_original(path, key)[0]


def import_file_with_original(path: str | os.PathLike,
                              key: str | None = None) -> tuple[Imported, StateDict]:
    """:func:`import_file`, also returning the state dict as loaded (upstream key names),
    which :func:`img2img.foreign.verify.reference_forward` runs to check the conversion."""
    state, where = load_foreign(path, key)
    try:
        imported = recognise(state)
    except ForeignCheckpointError as exc:
        raise ForeignCheckpointError(f"{path}: {exc}") from None
    imported.notes.setdefault("container", where)
    return imported, state
