"""History buffer of generated images (Shrivastava et al.), used by CycleGAN's discriminators."""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    """Keeps up to ``size`` past fakes; each query returns, per image, either the new fake or
    (with probability 0.5 once full) a stored one, which the new fake then replaces.

    The pool owns its random generator so its choices are part of the resumable state.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape mixing new and historical fakes (detached)."""
        images = images.detach()
        if self.size <= 0:
            return images
        out = []
        for img in images:
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
                continue
            if torch.rand(1, generator=self.generator).item() < 0.5:
                idx = int(torch.randint(self.size, (1,), generator=self.generator).item())
                out.append(self.images[idx].clone())
                self.images[idx] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        """Stored images (on CPU) and the generator state."""
        return {
            "images": [t.cpu() for t in self.images],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore what :meth:`state_dict` returned."""
        self.images = [t.to(device) for t in state["images"]]
        self.generator.set_state(state["generator"])
