"""Video encoders from transformers configs (no hub): ViViT and VideoMAE, projected to the shared embedding."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

SIZES = {
    # tiny: 16 frames x 64 px, 2x16x16 tubelets -> 128 tokens, 3 layers, width 128 (~140 clips/s on 2 cores)
    # (mean pooling of the tokens: a from-scratch model's embeddings follow the clip's content from the first step)
    "tiny": dict(num_frames=16, image_size=64, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
                 intermediate_size=512, embed_dim=128, pool="mean"),
    # paper: ViViT-B / VideoMAE-B sizes at 224 px
    "paper": dict(num_frames=32, image_size=224, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, embed_dim=512, pool="cls"),
}


class VideoEncoder(nn.Module):
    """backbone(pixel_values (B, T, C, H, W)) -> pooled features -> linear projection to embed_dim."""

    def __init__(self, backbone: nn.Module, width: int, embed_dim: int, pool: str, num_frames: int):
        super().__init__()
        self.backbone, self.pool, self.num_frames = backbone, pool, num_frames
        self.norm = nn.LayerNorm(width) if pool == "mean" else nn.Identity()
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.num_frames:
            raise ValueError(f"video encoder expects (B, {self.num_frames}, C, H, W), got {tuple(x.shape)}")
        h = self.backbone(pixel_values=x).last_hidden_state
        h = h[:, 0] if self.pool == "cls" else self.norm(h.mean(dim=1))
        return self.proj(h)


def _size(size: str, overrides: dict) -> dict:
    if size not in SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(SIZES)}")
    return {**SIZES[size], **overrides}


@register("video", "vivit")
def vivit(size: str = "tiny", tubelet=(2, 16, 16), **overrides) -> VideoEncoder:
    from transformers import VivitConfig, VivitModel

    s = _size(size, overrides)
    cfg = VivitConfig(num_frames=s["num_frames"], image_size=s["image_size"], tubelet_size=list(tubelet),
                      hidden_size=s["hidden_size"], num_hidden_layers=s["num_hidden_layers"],
                      num_attention_heads=s["num_attention_heads"], intermediate_size=s["intermediate_size"])
    return VideoEncoder(VivitModel(cfg, add_pooling_layer=False), s["hidden_size"], s["embed_dim"], s["pool"],
                        s["num_frames"])


@register("video", "videomae")
def videomae(size: str = "tiny", patch_size: int = 16, tubelet_size: int = 2, **overrides) -> VideoEncoder:
    from transformers import VideoMAEConfig, VideoMAEModel

    s = _size(size, {"num_frames": 16, **overrides})
    cfg = VideoMAEConfig(num_frames=s["num_frames"], image_size=s["image_size"], patch_size=patch_size,
                         tubelet_size=tubelet_size, hidden_size=s["hidden_size"],
                         num_hidden_layers=s["num_hidden_layers"], num_attention_heads=s["num_attention_heads"],
                         intermediate_size=s["intermediate_size"], use_mean_pooling=False)
    return VideoEncoder(VideoMAEModel(cfg), s["hidden_size"], s["embed_dim"], "mean", s["num_frames"])
