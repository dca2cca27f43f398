"""VGG19 perceptual (feature) loss, usable by every task.

Features are taken from torchvision's VGG19 ``features`` stack at named layers
(``relu5_4`` = the SRGAN "VGG54" layer: the 4th convolution of block 5 after its
activation, before the 5th pooling). Inputs in [-1, 1] are mapped to [0, 1] and normalised
with the ImageNet statistics; the loss is the weighted MSE between feature maps, each
multiplied by ``feature_scale`` (1/12.75 by default, the rescaling of the SRGAN paper).

Pretrained weights are never downloaded implicitly: they are read from an explicit path or
from the torch hub cache (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``), and a missing
file raises an error saying exactly which file to put where.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.errors import UsageError

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# VGG19 conv blocks: number of 3x3 convolutions per block.
_BLOCKS = (2, 2, 4, 4, 4)


def vgg19_layer_index() -> dict[str, int]:
    """Map ``convB_C`` / ``reluB_C`` / ``poolB`` names to indices in ``vgg19().features``."""
    names: dict[str, int] = {}
    i = 0
    for b, n in enumerate(_BLOCKS, start=1):
        for c in range(1, n + 1):
            names[f"conv{b}_{c}"], names[f"relu{b}_{c}"] = i, i + 1
            i += 2
        names[f"pool{b}"] = i
        i += 1
    return names


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are not on disk; the message says where to put them."""


def default_vgg19_path() -> Path:
    """Where torchvision keeps VGG19 in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def load_vgg19_state(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """Read VGG19 ImageNet weights (``weights_only``) from ``path`` or the hub cache."""
    target = Path(path) if path else default_vgg19_path()
    if not target.is_file():
        raise MissingWeightsError(
            f"VGG19 weights not found at {target}. Download {VGG19_URL} and save it as "
            f"{default_vgg19_path()} (the torch hub cache), or pass its location with "
            f"--vgg-weights PATH."
        )
    return torch.load(target, map_location="cpu", weights_only=True)


class VGGFeatures(nn.Module):
    """Frozen VGG19 feature extractor returning the requested layers' activations."""

    def __init__(self, layers: list[str], weights: str | os.PathLike | None = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models import vgg19

        index = vgg19_layer_index()
        unknown = [name for name in layers if name not in index]
        if unknown:
            raise UsageError(f"unknown VGG19 layer(s) {unknown}; e.g. relu2_2, relu5_4, conv5_4")
        net = vgg19(weights=None)
        if pretrained:
            net.load_state_dict(load_vgg19_state(weights))
        last = max(index[name] for name in layers)
        self.features = net.features[: last + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.taps = {index[name]: name for name in layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> VGGFeatures:
        """The extractor always stays in eval mode."""
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x`` NCHW in [-1, 1] (1 or 3 channels) -> {layer name: activation}."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x + 1) / 2 - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            # torchvision's in-place ReLU would overwrite a tapped conv output
            x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out


class PerceptualLoss(nn.Module):
    """Weighted MSE between VGG19 features of prediction and target.

    >>> loss = PerceptualLoss(pretrained=False)  # random weights: for tests only
    >>> float(loss(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)))
    0.0
    """

    def __init__(self, layers: dict[str, float] | None = None,
                 weights: str | os.PathLike | None = None, pretrained: bool = True,
                 feature_scale: float = 1 / 12.75) -> None:
        super().__init__()
        self.layer_weights = layers or {"relu5_4": 1.0}
        self.vgg = VGGFeatures(list(self.layer_weights), weights, pretrained)
        self.feature_scale = feature_scale

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Perceptual distance of ``pred`` to ``target`` (both NCHW in [-1, 1])."""
        fp = self.vgg(pred)
        with torch.no_grad():
            ft = self.vgg(target)
        s = self.feature_scale
        total = pred.new_zeros(())
        for name, w in self.layer_weights.items():
            total = total + w * F.mse_loss(fp[name] * s, ft[name] * s)
        return total
