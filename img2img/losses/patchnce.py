"""PatchNCE (Park et al., 2020): a patch of the output should match the input patch at the
same place more than the other patches of that input.

For each chosen generator layer, the same random patch locations are taken from the
features of the source image (keys) and of the translated image (queries); each patch is
projected by a small per-layer MLP (:class:`PatchHead`) and L2-normalised, and InfoNCE with
temperature ``tau`` is computed where, for the query at location i, the key at i is the
positive and the keys at the other sampled locations *of the same image* are the negatives.
The keys carry no gradient. The loss is the mean over patches, then over layers.

    >>> head = PatchHead([3, 16], width=32)
    >>> feats = [torch.randn(2, 3, 8, 8), torch.randn(2, 16, 4, 4)]
    >>> float(patch_nce(head, feats, feats, num_patches=8)) < 1.0  # identical: low loss
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchHead(nn.Module):
    """One Linear-ReLU-Linear projection per feature layer (``channels[l]`` -> ``width``),
    applied to sampled patch locations; the outputs are L2-normalised (float32)."""

    def __init__(self, channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width))
            for c in channels)

    def forward(self, feats: Sequence[Tensor], patch_ids: Sequence[Tensor]) -> list[Tensor]:
        """``feats[l]`` (N, C_l, H_l, W_l) sampled at the flat locations ``patch_ids[l]``
        (P_l,), the same for every image: a list of (N, P_l, width) unit vectors."""
        out = []
        for feat, ids, mlp in zip(feats, patch_ids, self.mlps, strict=True):
            patches = feat.flatten(2)[:, :, ids].transpose(1, 2)  # N, P, C
            out.append(F.normalize(mlp(patches).float(), dim=-1, eps=1e-7))
        return out


def sample_patch_ids(feats: Sequence[Tensor], num_patches: int) -> list[Tensor]:
    """For each feature map, ``num_patches`` distinct random locations (all of them if it
    has fewer), drawn from torch's global generator on the map's device."""
    ids = []
    for feat in feats:
        n = feat.shape[2] * feat.shape[3]
        ids.append(torch.randperm(n, device=feat.device)[:min(num_patches, n)])
    return ids


def info_nce(q: Tensor, k: Tensor, tau: float = 0.07) -> Tensor:
    """InfoNCE of queries ``q`` against keys ``k``, both (N, P, D) unit vectors: for each
    image and location i the logits are ``q_i . k_j / tau`` over the image's P locations j,
    the target is j = i. Mean over the N * P queries; no gradient flows into ``k``."""
    n, p, _ = q.shape
    logits = torch.bmm(q.float(), k.detach().float().transpose(1, 2)) / tau  # N, P, P
    target = torch.arange(p, device=q.device).repeat(n)
    return F.cross_entropy(logits.flatten(0, 1), target)


def patch_nce(head: nn.Module, feats_q: Sequence[Tensor], feats_k: Sequence[Tensor],
              num_patches: int = 256, tau: float = 0.07) -> Tensor:
    """The PatchNCE loss of query features ``feats_q`` (of the translated image, one map per
    layer) against key features ``feats_k`` (of the source), averaged over the layers.
    Patch locations are drawn once per layer and shared by queries and keys."""
    ids = sample_patch_ids(feats_k, num_patches)
    with torch.no_grad():  # the keys are targets only
        keys = head(feats_k, ids)
    queries = head(feats_q, ids)
    losses = [info_nce(q, k, tau) for q, k in zip(queries, keys, strict=True)]
    return torch.stack(losses).mean()
