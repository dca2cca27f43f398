"""The app's model list: ``--checkpoint`` files and folders -> one entry per model.

A folder contributes the ``.safetensors`` and ``.onnx`` files directly inside it (what a
training run, ``img2img models fetch`` and ``img2img export`` write); a file of another kind
(a published ``.pth``) is named on its own. A file named on the command line that does not
load is an error; a file found in a folder that does not load is skipped with a warning.

A CycleGAN pair -- two loaded files in one folder whose names differ only in ``A2B`` /
``B2A`` (``G_A2B.safetensors`` + ``G_B2A.safetensors``, or their ``.best`` versions), of the
same task, whose metadata says A2B and B2A -- becomes one entry with two directions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from img2img.checkpoint import CheckpointError
from img2img.errors import UsageError
from img2img.inference.bundled import bundled_path, is_bare_name
from img2img.inference.translator import Translator

log = logging.getLogger("img2img")

FOLDER_SUFFIXES = (".safetensors", ".onnx")
DIRECTION_LABELS = {"A2B": "A \u2192 B", "B2A": "B \u2192 A"}


@dataclass
class ModelEntry:
    """One choice in the page's model list: a label and a translator per direction."""

    label: str
    translators: dict[str, Translator] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        """The directions this entry offers, e.g. ``["A2B", "B2A"]`` for a CycleGAN pair."""
        return list(self.translators)

    def pick(self, direction: str | None) -> tuple[Translator, Path]:
        """The translator (and its file) for ``direction``; any one-direction entry ignores
        it. Raises UsageError for a direction the entry does not have."""
        if len(self.translators) == 1:
            ((d, translator),) = self.translators.items()
            return translator, self.paths[d]
        if direction not in self.translators:
            raise UsageError(f"{self.label}: choose a direction, one of "
                             f"{', '.join(self.directions)} (got {direction!r})")
        return self.translators[direction], self.paths[direction]


def checkpoint_files(specs: Sequence[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """(file, named on the command line) for every ``--checkpoint`` value, folders expanded,
    each file once. Raises UsageError for a path that does not exist or an empty folder."""
    seen: set[Path] = set()
    files: list[tuple[Path, bool]] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
            if not found:
                raise UsageError(f"--checkpoint {p}: no {' or '.join(FOLDER_SUFFIXES)} files "
                                 f"in this folder")
            items = [(f, False) for f in found]
        elif p.is_file():
            items = [(p, True)]
        elif is_bare_name(spec):  # a bundled model's name (UsageError listing them if not)
            items = [(bundled_path(os.fspath(spec)), True)]
        else:
            raise UsageError(f"--checkpoint {p}: no such file or folder")
        for f, named in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append((f, named))
    return files


def _describe(translator: Translator) -> str:
    meta = translator.meta
    if meta.scale > 1:
        return f"{meta.task} x{meta.scale}"
    return f"{meta.task} {meta.direction}"


def _pair_name(path: Path) -> str | None:
    """The partner file's name of a would-be CycleGAN pair member, else None."""
    name = path.name
    if "A2B" in name and "B2A" not in name:
        return name.replace("A2B", "B2A")
    if "B2A" in name and "A2B" not in name:
        return name.replace("B2A", "A2B")
    return None


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def group_entries(loaded: Sequence[tuple[Path, Translator]]) -> list[ModelEntry]:
    """Model entries for loaded files, CycleGAN pairs joined (see the module docstring)."""
    by_path = {p.resolve(): (p, t) for p, t in loaded}
    used: set[Path] = set()
    entries: list[ModelEntry] = []
    for path, translator in loaded:
        key = path.resolve()
        if key in used:
            continue
        used.add(key)
        partner_name = _pair_name(path)
        partner = by_path.get(key.with_name(partner_name)) if partner_name else None
        meta = translator.meta
        if (partner is not None and partner[1].meta.task == meta.task
                and {meta.direction, partner[1].meta.direction} == {"A2B", "B2A"}):
            used.add(partner[0].resolve())
            pair = sorted([(path, translator), partner], key=lambda x: x[1].meta.direction)
            (pa, ta), (pb, tb) = pair
            entries.append(ModelEntry(f"{_label(pa.with_name(pa.stem))} + {pb.name} "
                                      f"({meta.task})",
                                      {"A2B": ta, "B2A": tb}, {"A2B": pa, "B2A": pb}))
        else:
            entries.append(ModelEntry(f"{_label(path)} ({_describe(translator)})",
                                      {meta.direction: translator}, {meta.direction: path}))
    labels = [e.label for e in entries]
    for e in entries:  # two folders of the same name: say the whole path
        if labels.count(e.label) > 1:
            e.label = f"{e.label} [{next(iter(e.paths.values())).parent}]"
    return entries


def load_entries(specs: Sequence[str | os.PathLike], device: str = "auto",
                 precision: str = "auto") -> list[ModelEntry]:
    """Load every checkpoint of ``specs`` (files or folders) as a :class:`Translator` and
    group them into model entries. Raises UsageError / CheckpointError naming the file
    when a named file does not load or nothing loads."""
    loaded: list[tuple[Path, Translator]] = []
    for path, named in checkpoint_files(specs):
        try:
            loaded.append((path, Translator.from_checkpoint(path, device, precision)))
        except (CheckpointError, UsageError) as exc:
            if named:
                raise
            log.warning("skipping %s: %s", path, exc)
    if not loaded:
        raise UsageError("--checkpoint: none of the files in the given folders loads "
                         "(see the warnings above)")
    return group_entries(loaded)
