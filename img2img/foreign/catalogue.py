"""A small catalogue of well-known published generator checkpoints (data and lookup only).

Each :class:`PublishedModel` names one file its authors publish: the reference CycleGAN and
pix2pix generators (pytorch-CycleGAN-and-pix2pix, ``scripts/download_cyclegan_model.sh`` /
``download_pix2pix_model.sh``) and three Real-ESRGAN RRDBNets (its GitHub releases). Every
file holds a single generator; the toolkit records it as direction ``A2B``, A being the
input domain its name gives (``zebra2horse`` maps zebras to horses). The pix2pix names get a
``pix2pix_`` prefix (``facades_label2photo`` exists for both methods). Only files the
upstream scripts list are here (so no pix2pix ``edges2handbags``: its script does not offer
one).

``sha256`` is the SHA-256 of the published file when it has been observed; none has been
here, so every entry has ``None`` and ``img2img models fetch`` records what it downloads
instead of checking it. A value must never be filled in without having hashed the file.

Licences: the upstream repositories license their code (pytorch-CycleGAN-and-pix2pix:
BSD-2-Clause; Real-ESRGAN: BSD-3-Clause); neither states a separate licence for the weights,
which ``licence_note`` says.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

from img2img.errors import UsageError

__all__ = [
    "CATALOGUE",
    "CYCLEGAN_MODELS_URL",
    "FAMILIES",
    "PIX2PIX_MODELS_URL",
    "REALESRGAN_RELEASES_URL",
    "PublishedModel",
    "UnknownModelError",
    "lookup",
]

# The reference's scripts download these over plain http://. The same host serves the CycleGAN
# datasets over https (see img2img.data.download), so https is used here too; that these two
# folders answer on https could not be checked from the offline machine this was written on.
# If it fails: img2img models fetch NAME --url http://efrosgans.eecs.berkeley.edu/... works.
CYCLEGAN_MODELS_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
PIX2PIX_MODELS_URL = "https://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
REALESRGAN_RELEASES_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download"

FAMILIES: dict[str, str] = {"cyclegan": "cyclegan", "pix2pix": "pix2pix", "real-esrgan": "sr"}
"""family -> the task the importer gives its network (reference ResNet generator, reference
U-Net generator, RRDBNet); a fetched file must import as that task."""

_REFERENCE_LICENCE = "BSD-2-Clause"
_REALESRGAN_LICENCE = "BSD-3-Clause"
_WEIGHTS_NOTE = "the upstream repository's code licence; its weights are not licensed separately"


@dataclass(frozen=True)
class PublishedModel:
    """One published checkpoint: where it is, what it does, under which terms."""

    name: str  # catalogue name; the output is DIR/<name>.safetensors
    family: str  # key of FAMILIES
    task: str  # cyclegan | pix2pix | sr
    scale: int
    licence: str
    url: str  # upstream URL of the file
    description: str  # what it does, one line
    sha256: str | None = None  # SHA-256 of the file, only when observed
    licence_note: str = _WEIGHTS_NOTE

    @property
    def file_name(self) -> str:
        """The upstream file name (last part of the URL)."""
        return self.url.rsplit("/", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-ready values."""
        return asdict(self)


class UnknownModelError(UsageError):
    """The name is not in the catalogue (exit code 2)."""


def _cyclegan(name: str, description: str) -> PublishedModel:
    return PublishedModel(name, "cyclegan", "cyclegan", 1, _REFERENCE_LICENCE,
                          f"{CYCLEGAN_MODELS_URL}/{name}.pth", description)


def _pix2pix(remote: str, description: str) -> PublishedModel:
    return PublishedModel(f"pix2pix_{remote}", "pix2pix", "pix2pix", 1, _REFERENCE_LICENCE,
                          f"{PIX2PIX_MODELS_URL}/{remote}.pth", description)


def _realesrgan(name: str, release: str, scale: int, description: str) -> PublishedModel:
    return PublishedModel(name, "real-esrgan", "sr", scale, _REALESRGAN_LICENCE,
                          f"{REALESRGAN_RELEASES_URL}/{release}/{name}.pth", description)


CATALOGUE: dict[str, PublishedModel] = {
    m.name: m
    for m in (
        _cyclegan("apple2orange", "apples -> oranges (ImageNet photos)"),
        _cyclegan("orange2apple", "oranges -> apples (ImageNet photos)"),
        _cyclegan("summer2winter_yosemite", "Yosemite in summer -> in winter (Flickr photos)"),
        _cyclegan("winter2summer_yosemite", "Yosemite in winter -> in summer (Flickr photos)"),
        _cyclegan("horse2zebra", "horses -> zebras (ImageNet photos)"),
        _cyclegan("zebra2horse", "zebras -> horses (ImageNet photos)"),
        _cyclegan("monet2photo", "Monet paintings -> photo-like landscapes"),
        _cyclegan("style_monet", "landscape photos -> in the style of Monet"),
        _cyclegan("style_cezanne", "landscape photos -> in the style of Cezanne"),
        _cyclegan("style_ukiyoe", "landscape photos -> in the style of ukiyo-e prints"),
        _cyclegan("style_vangogh", "landscape photos -> in the style of Van Gogh"),
        _cyclegan("sat2map", "aerial photos -> Google Maps renderings (unpaired training)"),
        _cyclegan("map2sat", "Google Maps renderings -> aerial photos (unpaired training)"),
        _cyclegan("cityscapes_photo2label", "street photos -> Cityscapes colour label maps"),
        _cyclegan("cityscapes_label2photo", "Cityscapes colour label maps -> street photos"),
        _cyclegan("facades_photo2label", "facade photos -> CMP facade label maps"),
        _cyclegan("facades_label2photo", "CMP facade label maps -> facade photos"),
        _cyclegan("iphone2dslr_flower",
                  "iPhone flower photos -> DSLR-like shallow depth of field"),
        _pix2pix("facades_label2photo", "CMP facade label maps -> facade photos (paired)"),
        _pix2pix("sat2map", "aerial photos -> Google Maps renderings (paired)"),
        _pix2pix("map2sat", "Google Maps renderings -> aerial photos (paired)"),
        _pix2pix("edges2shoes", "edge drawings -> shoe photos"),
        _pix2pix("day2night", "daytime outdoor scenes -> the same at night"),
        _realesrgan("RealESRGAN_x4plus", "v0.1.0", 4,
                    "x4 upscaling of real photos; removes blur, noise, JPEG artefacts"),
        _realesrgan("RealESRGAN_x2plus", "v0.2.1", 2,
                    "x2 upscaling of real photos; removes blur, noise, JPEG artefacts"),
        _realesrgan("RealESRGAN_x4plus_anime_6B", "v0.2.2.4", 4,
                    "x4 upscaling of anime illustrations (small: 6 blocks)"),
    )
}


def lookup(name: str) -> PublishedModel:
    """The catalogue entry called ``name``; UnknownModelError suggesting close names."""
    key = name.strip()
    if key in CATALOGUE:
        return CATALOGUE[key]
    folded = {n.lower(): n for n in CATALOGUE}
    if key.lower() in folded:
        return CATALOGUE[folded[key.lower()]]
    close = difflib.get_close_matches(key.lower(), list(folded), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(folded[c] for c in close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint} (img2img models lists them)")
