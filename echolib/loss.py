"""Contrastive losses for (clip, report) pairs.

`ClipLoss` is the paper's Eq. (1)-(2): with L2-normalised video embeddings v and report embeddings t and the
multiplicative logit scale s = 1/tau, logits = s * v t^T; the loss is the mean of the video->report and
report->video cross-entropies with the matching pair as the target. Under DDP each rank scores its local rows
against the features gathered from all ranks; the labels are offset by the rank's position, and gradients flow
through the local part (and, via the autograd-aware all_gather, to the other ranks' parts as well), so the
summed gradient equals that of one process on the joined batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks in rank order, differentiably (torch.distributed.nn.all_gather)."""
    if not _dist_ready():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE. forward(video_emb, text_emb, logit_scale) with logit_scale = exp(learned log scale)."""

    def __init__(self, normalize: bool = True):
        super().__init__()
        self.normalize = normalize

    def logits(self, video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor):
        if self.normalize:
            video, text = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
        all_video, all_text = gather_features(video), gather_features(text)
        return logit_scale * video @ all_text.T, logit_scale * text @ all_video.T

    def ground_truth(self, n_local: int, device) -> torch.Tensor:
        rank = dist.get_rank() if _dist_ready() else 0
        return torch.arange(n_local, device=device) + rank * n_local

    def forward(self, video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        if video.shape != text.shape:
            raise ValueError(f"ClipLoss: video {tuple(video.shape)} and text {tuple(text.shape)} embeddings differ")
        v2t, t2v = self.logits(video, text, logit_scale)
        labels = self.ground_truth(video.shape[0], video.device)
        return 0.5 * (F.cross_entropy(v2t, labels) + F.cross_entropy(t2v, labels))


class SigLipLoss(nn.Module):
    """Pairwise sigmoid loss (SigLIP): every (video, report) pair is a binary decision; needs a bias."""

    def forward(self, video, text, logit_scale, logit_bias) -> torch.Tensor:
        video, text = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
        all_text = gather_features(text)
        logits = logit_scale * video @ all_text.T + logit_bias
        labels = -torch.ones_like(logits)
        offset = dist.get_rank() * video.shape[0] if _dist_ready() else 0
        idx = torch.arange(video.shape[0], device=video.device)
        labels[idx, idx + offset] = 1.0
        return -F.logsigmoid(labels * logits).sum() / video.shape[0]


def create_loss(name: str) -> nn.Module:
    losses = {"clip": ClipLoss, "siglip": SigLipLoss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(losses)}")
    return losses[name]()
