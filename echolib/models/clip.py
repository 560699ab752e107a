"""EchoClip: a video (or image) encoder and a text encoder sharing an embedding space, plus the logit scale."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)


class ClipInterface:
    """What retrieval and evaluation call on a CLIP model: its towers are `video_encoder` and `text_encoder`, its
    learned temperature `logit_scale`."""

    def encode_video(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        v = self.video_encoder(x)
        return F.normalize(v, dim=-1) if normalize else v

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True):
        t = self.text_encoder(input_ids, attention_mask)
        return F.normalize(t, dim=-1) if normalize else t

    def scale(self) -> torch.Tensor:
        """The multiplicative factor 1/tau, with log-scale clamped at ln 100."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, video, input_ids, attention_mask):
        """What training calls: both towers' normalised embeddings and the logit scale."""
        return self.encode_video(video), self.encode_text(input_ids, attention_mask), self.scale()


class EchoClip(ClipInterface, nn.Module):
    def __init__(self, video_encoder: nn.Module, text_encoder: nn.Module, init_temperature: float = 0.07,
                 siglip: bool = False):
        super().__init__()
        self.video_encoder, self.text_encoder = video_encoder, text_encoder
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if siglip else None
