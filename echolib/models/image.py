"""Image encoder (timm ConvNeXt) for the SingleImage ablation.

Training sees one random frame per clip; at inference `forward` embeds every frame and averages (the paper's
SingleImage retrieval rule).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

SIZES = {"tiny": ("convnext_atto", 128), "paper": ("convnext_base", 512)}


class ImageEncoder(nn.Module):
    def __init__(self, arch: str, embed_dim: int):
        super().__init__()
        import timm

        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        self.proj = nn.Linear(self.backbone.num_features, embed_dim, bias=False)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(frames))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return self.embed_frames(x)
        b, t = x.shape[:2]
        if self.training:  # one random frame per clip
            idx = torch.randint(t, (b,), device=x.device)
            return self.embed_frames(x[torch.arange(b, device=x.device), idx])
        emb = self.embed_frames(x.flatten(0, 1)).view(b, t, -1)
        return nn.functional.normalize(emb, dim=-1).mean(dim=1)


@register("image", "convnext")
def convnext(size: str = "tiny", arch: str | None = None, embed_dim: int | None = None) -> ImageEncoder:
    if size not in SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(SIZES)}")
    default_arch, default_dim = SIZES[size]
    return ImageEncoder(arch or default_arch, embed_dim or default_dim)
