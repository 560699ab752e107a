"""ConvNeXt (timm) encoders: the image encoder of the SingleImage ablation and its early-fusion video twin.

Image: training sees one random frame per clip; at inference `forward` embeds every frame and averages (the
paper's SingleImage retrieval rule).
Video (`convnext_early`): the same network with all frames of a clip stacked as input channels (early fusion).
Only the first convolution differs, so the video model contains the image model (stem weights zero on all but
one frame) and costs about the same per clip: comparing the two isolates what motion adds, not what a different
architecture learns at a given budget.
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


class EarlyFusionEncoder(nn.Module):
    """(B, T, C, H, W) -> frames stacked as T*C channels -> ConvNeXt -> linear projection."""

    def __init__(self, arch: str, embed_dim: int, num_frames: int, channels: int = 3):
        super().__init__()
        import timm

        self.num_frames, self.channels = num_frames, channels
        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=num_frames * channels)
        self.proj = nn.Linear(self.backbone.num_features, embed_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.num_frames or x.shape[2] != self.channels:
            raise ValueError(f"video encoder expects (B, {self.num_frames}, C, H, W) with C = {self.channels}, "
                             f"got {tuple(x.shape)}")
        return self.proj(self.backbone(x.flatten(1, 2)))

    def adapt_state(self, state: dict) -> dict:
        """Image-model weights (3-channel stem) -> this stem: timm's rule (repeat over frames, rescale)."""
        from timm.models import adapt_input_conv

        for key, w in state.items():
            if key.endswith("weight") and w.ndim == 4 and w.shape[1] == self.channels and \
                    w.shape[1] != self.num_frames * self.channels:
                state[key] = adapt_input_conv(self.num_frames * self.channels, w)
        return state


VIDEO_FRAMES = {"tiny": 16, "paper": 32}


@register("image", "convnext")
def convnext(size: str = "tiny", arch: str | None = None, embed_dim: int | None = None) -> ImageEncoder:
    default_arch, default_dim = _size(size)
    return ImageEncoder(arch or default_arch, embed_dim or default_dim)


def _size(size: str) -> tuple[str, int]:
    if size not in SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(SIZES)}")
    return SIZES[size]


@register("video", "convnext_early")
def convnext_early(size: str = "tiny", arch: str | None = None, embed_dim: int | None = None,
                   num_frames: int | None = None) -> EarlyFusionEncoder:
    default_arch, default_dim = _size(size)
    return EarlyFusionEncoder(arch or default_arch, embed_dim or default_dim, num_frames or VIDEO_FRAMES[size])
