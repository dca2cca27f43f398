"""Faster execution of the toolkit's built generators, mostly on the CPU.

The architecture files (``img2img.nn.resnet``, ``img2img.nn.srresnet``) hold the published
layers as plain PyTorch modules. :func:`accelerate` rewrites a built network in place for
speed, by module type, without changing what it computes (up to float rounding), its
parameters or its state dict:

==========================================  =============================================
layer (built as)                            runs as
==========================================  =============================================
ResNet residual blocks' 3x3 ``nn.Conv2d``   :class:`~.winograd.Conv3x3` (Winograd, fp32 CPU,
                                            128 channels or more)
ResNet 7x7 / SRResNet 9x9 output conv       :class:`~.polyphase.PhaseConv2d` (2x2 phases, CPU)
ResNet ``nn.ReflectionPad2d``               :class:`~.pad.ReflectionPad2d` (keeps autocast's
                                            dtype, any device)
ResNet ``nn.ConvTranspose2d``, and the      :class:`~.channels_last.ChannelsLastConvTranspose2d`,
``nn.InstanceNorm2d`` after the first one   :class:`~.channels_last.ChannelsLastInstanceNorm2d`
                                            (the upsampling half in channels-last, CPU
                                            inference)
``SRResNet`` itself                         :class:`~.banded.BandedSRResNet` (channels-last,
                                            banded last stage in CPU inference)
==========================================  =============================================

Each fast layer is a subclass of the built one that adds no state and only replaces
``forward`` (falling back to the parent's where its path does not apply: another device,
dtype or autocast), so the rewrite changes the modules' classes: the module objects stay,
and with them their parameters (the optimiser's references), buffers, hooks and state dict
keys. :func:`direct` puts the built classes back for a block, for one model at a time (ONNX
export, FLOP counts, baselines). Other architectures are left as they are.

    >>> from img2img.nn import build_generator
    >>> net = accelerate(build_generator("resnet_6blocks", ngf=8))
    >>> type(net.model[-2]).__name__
    'PhaseConv2d'
    >>> with direct(net):
    ...     type(net.model[-2]).__name__
    'Conv2d'
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import nn

from ..resnet import ResidualBlock, ResnetGenerator
from ..srresnet import SRResNet
from . import banded, channels_last, polyphase, winograd
from .banded import BandedSRResNet
from .channels_last import ChannelsLastConvTranspose2d, ChannelsLastInstanceNorm2d
from .pad import ReflectionPad2d
from .polyphase import PhaseConv2d
from .winograd import Conv3x3

# Each fast class and the built class it stands in for (its parent).
_BUILT: dict[type[nn.Module], type[nn.Module]] = {
    Conv3x3: nn.Conv2d,
    PhaseConv2d: nn.Conv2d,
    ReflectionPad2d: nn.ReflectionPad2d,
    BandedSRResNet: SRResNet,
    ChannelsLastConvTranspose2d: nn.ConvTranspose2d,
    ChannelsLastInstanceNorm2d: nn.InstanceNorm2d,
}


def _become(module: nn.Module, fast: type[nn.Module]) -> None:
    if type(module) is not _BUILT[fast]:
        raise TypeError(f"{fast.__name__} stands in for {_BUILT[fast].__name__}, "
                        f"not {type(module).__name__}")
    module.__class__ = fast


def _residual_block(block: ResidualBlock) -> None:
    for m in block.block:
        if type(m) is nn.ReflectionPad2d:
            _become(m, ReflectionPad2d)
        elif winograd.fits(m):
            _become(m, Conv3x3)


def _resnet(net: ResnetGenerator) -> None:
    upsampling = False  # from the first transposed conv on (channels-last in inference)
    for m in net.model:  # its residual blocks have their own rule
        if type(m) is nn.ReflectionPad2d:
            _become(m, ReflectionPad2d)
        elif type(m) is nn.ConvTranspose2d:
            _become(m, ChannelsLastConvTranspose2d)
            upsampling = True
        elif upsampling and channels_last.fits_norm(m):
            _become(m, ChannelsLastInstanceNorm2d)
    output = [m for m in net.model if isinstance(m, nn.Conv2d)][-1]  # the 7x7 before Tanh
    if polyphase.fits(output):
        _become(output, PhaseConv2d)


def _srresnet(net: SRResNet) -> None:
    if polyphase.fits(net.tail):
        _become(net.tail, PhaseConv2d)
    if banded.fits(net):
        _become(net, BandedSRResNet)


_RULES: dict[type[nn.Module], Callable[[nn.Module], None]] = {
    ResidualBlock: _residual_block,  # type: ignore[dict-item]
    ResnetGenerator: _resnet,  # type: ignore[dict-item]
    SRResNet: _srresnet,  # type: ignore[dict-item]
}


def accelerate(model: nn.Module) -> nn.Module:
    """Rewrite the toolkit generators in ``model`` (itself or nested) in place for fast
    execution (see the module docstring); returns ``model``. Doing it twice changes nothing;
    any other network is left as it is."""
    for m in list(model.modules()):
        rule = _RULES.get(type(m))
        if rule is not None:
            rule(m)
    return model


@contextlib.contextmanager
def direct(*models: nn.Module) -> Iterator[None]:
    """Within this block, the layers of ``models`` that :func:`accelerate` rewrote are the
    built PyTorch layers again (direct convolutions, the published forward); other models
    keep theirs. Not for a model another thread runs meanwhile."""
    swapped: list[tuple[nn.Module, type[nn.Module]]] = []
    try:
        for model in models:
            for m in model.modules():
                built = _BUILT.get(type(m))
                if built is not None:
                    swapped.append((m, type(m)))
                    m.__class__ = built
        yield
    finally:
        for m, fast in swapped:
            m.__class__ = fast


__all__ = ["BandedSRResNet", "ChannelsLastConvTranspose2d", "ChannelsLastInstanceNorm2d",
           "Conv3x3", "PhaseConv2d", "ReflectionPad2d", "accelerate", "direct"]
