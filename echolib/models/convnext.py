"""ConvNeXt (timm) encoders: the image encoder of the SingleImage ablation and two video encoders built on it.

Image (`convnext`): training sees one random frame per clip; at inference `forward` embeds every frame and
averages (the paper's SingleImage retrieval rule).
Video (`convnext_st`, the default): the same network applied to every frame, with residual temporal convolutions
(zero-initialised) and temporal average pooling after the stem (8 -> 4 -> 2 frames) and in the first stage
(2 -> 1), a factorised space-time design. On a still clip it computes exactly the image model and it can load
its weights; at 8 frames of 64 px it costs about twice the image model per clip.
Video (`convnext_early`): the frames of a clip stacked as input channels (early fusion); fixed filters over
stacked frames do not line up with a cardiac phase that differs from clip to clip, so it models time poorly.
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


class TemporalMix(nn.Module):
    """x + pointwise(GELU(depthwise temporal conv(LayerNorm(x)))) over the frames of each clip, per pixel; the
    pointwise layer starts at zero, so the block starts as the identity."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.pw = nn.Linear(channels, channels)
        nn.init.zeros_(self.pw.weight)
        nn.init.zeros_(self.pw.bias)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        y = self.norm(x.view(bt // t, t, c, h, w).permute(0, 3, 4, 1, 2))  # (B, H, W, T, C)
        y = self.conv(y.reshape(-1, t, c).transpose(1, 2)).transpose(1, 2)  # (BHW, T, C)
        y = self.pw(nn.functional.gelu(y)).view(bt // t, h, w, t, c).permute(0, 3, 4, 1, 2)
        return x + y.reshape(bt, c, h, w)


def _tpool(x: torch.Tensor, t: int) -> tuple[torch.Tensor, int]:
    """Average neighbouring frames (stride 2 in time): (B*T, C, H, W) -> (B*T/2, ...)."""
    if t == 1:
        return x, t
    bt, c, h, w = x.shape
    return x.view(bt // t, t // 2, 2, c, h, w).mean(2).reshape(bt // 2, c, h, w), t // 2


class SpatioTemporalEncoder(nn.Module):
    """(B, T, C, H, W) -> ConvNeXt on every frame, temporal mixing and pooling between stages -> projection."""

    STAGE0_FRAMES = 2  # frames left for the first (most expensive, full-resolution) stage

    def __init__(self, arch: str, embed_dim: int, num_frames: int):
        super().__init__()
        import timm

        if num_frames < 1 or num_frames & (num_frames - 1):
            raise ValueError(f"convnext_st takes a power-of-two number of frames, got {num_frames}")
        self.num_frames = num_frames  # 8 frames: mixed and pooled after the stem (8 -> 4 -> 2), stage 0 at 2, then 1
        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        dims = [stage.blocks[0].conv_dw.in_channels for stage in self.backbone.stages]
        # after the stem (stage 0 does not downsample): mix and halve the frames until at most STAGE0_FRAMES remain
        t, stem = num_frames, []
        while t > self.STAGE0_FRAMES:
            stem.append(TemporalMix(dims[0]))
            t //= 2
        self.stem_mix, mixes = nn.ModuleList(stem), []
        for i, stage in enumerate(self.backbone.stages):
            if i == 1:
                t = max(1, t // 2)
            mixes.append(nn.ModuleList(TemporalMix(dims[i]) for _ in stage.blocks) if t > 1 else nn.ModuleList())
        self.mix = nn.ModuleList(mixes)
        self.proj = nn.Linear(self.backbone.num_features, embed_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.num_frames:
            raise ValueError(f"video encoder expects (B, {self.num_frames}, C, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        h = self.backbone.stem(x.flatten(0, 1))
        for mix in self.stem_mix:
            h, t = _tpool(mix(h, t), t)
        for i, stage in enumerate(self.backbone.stages):
            if i == 1:
                h, t = _tpool(h, t)
            h = stage.downsample(h)
            for j, block in enumerate(stage.blocks):
                h = block(h)
                if len(self.mix[i]):
                    h = self.mix[i][j](h, t)
        h = self.backbone.norm_pre(h)
        h = h.view(b, t, *h.shape[1:]).mean(1)
        return self.proj(self.backbone.forward_head(h, pre_logits=True))


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


@register("video", "convnext_st")
def convnext_st(size: str = "tiny", arch: str | None = None, embed_dim: int | None = None,
                num_frames: int | None = None) -> SpatioTemporalEncoder:
    from ..encoders import frames

    default_arch, default_dim = _size(size)
    return SpatioTemporalEncoder(arch or default_arch, embed_dim or default_dim, num_frames or frames("convnext_st", size))
