"""Weight initialisation schemes used by the GAN papers (CycleGAN / pix2pix default: normal)."""

from __future__ import annotations

from torch import nn

INIT_KINDS = ("normal", "xavier", "kaiming", "orthogonal")

_WEIGHTED = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise ``module`` and all its submodules in place; returns ``module``.

    Conv / ConvTranspose / Linear weights: ``normal`` draws N(0, gain) (gain is the std),
    ``xavier`` uses xavier_normal with ``gain``, ``kaiming`` uses kaiming_normal (fan_in,
    a=0), ``orthogonal`` uses an orthogonal matrix scaled by ``gain``; their biases are zeroed.
    BatchNorm weights are drawn from N(1, gain) and biases zeroed. Other modules (e.g.
    non-affine InstanceNorm) are left untouched.
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"unknown init kind {kind!r}; expected one of {', '.join(INIT_KINDS)}")

    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BATCH_NORMS) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module
