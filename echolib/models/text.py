"""Japanese BERT text encoder: pooling + projection; from a config, or from a local pretrained directory.

Pooling: `cls` (the pretrained BERT convention, paper size) or `mean` over real tokens (tiny models trained from
scratch: their embeddings differ between reports from the first step, so contrastive training starts sooner)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .registry import register

SIZES = {
    # tiny: no dropout (as in CLIP text towers); at ~200 tokens BERT's dropout masks cost as much as the layer
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512, embed_dim=128,
                 pool="mean", dropout=0.0),
    "paper": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  embed_dim=512, pool="cls", dropout=0.1),
}


class TextEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, embed_dim: int, pool: str = "cls"):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"text pooling must be 'cls' or 'mean', got {pool!r}")
        self.backbone, self.pool = backbone, pool
        self.proj = nn.Linear(backbone.config.hidden_size, embed_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pool == "cls":
            return self.proj(h[:, 0])
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.proj((h * m).sum(1) / m.sum(1).clamp_min(1.0))


@register("text", "bert")
def bert(size: str = "tiny", vocab_size: int = 8000, max_length: int = 256, pretrained_dir: str | Path | None = None,
         embed_dim: int | None = None, **overrides) -> TextEncoder:
    """BERT from a config (`size` plus any overridden config keys) or from a local pretrained directory."""
    from transformers import BertConfig, BertModel

    if pretrained_dir:  # e.g. a local copy of tohoku-nlp/bert-base-japanese-v3; never fetched from a hub
        d = Path(pretrained_dir)
        if not (d / "config.json").is_file():
            raise FileNotFoundError(f"{d}: not a local BERT directory (config.json missing)")
        backbone, info = BertModel.from_pretrained(str(d), local_files_only=True, add_pooling_layer=False,
                                                   output_loading_info=True)
        # BertForPreTraining files (tohoku-nlp/bert-base-japanese-v3) carry `cls.*` heads and a pooler: dropped;
        # anything else left over or missing is a partial load, refused
        missing = sorted(k for k in info.get("missing_keys", []) if "position_ids" not in k)
        unexpected = sorted(k for k in info.get("unexpected_keys", [])
                            if not k.startswith(("cls.", "pooler.", "bert.pooler.")))
        mismatched = sorted(map(str, info.get("mismatched_keys", [])))
        if missing or unexpected or mismatched:
            raise ValueError(f"{d}: the BERT weights do not fit its config.json (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}, other shapes {mismatched[:3]}): refusing a partial load")
        return TextEncoder(backbone, embed_dim or SIZES[size]["embed_dim"], "cls")
    if size not in SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(SIZES)}")
    unknown = sorted(set(overrides) - set(SIZES[size]))
    if unknown:
        raise ValueError(f"bert: unknown setting(s) {unknown}; known: {sorted(SIZES[size])}")
    s = {**SIZES[size], **overrides}
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=s["hidden_size"], num_hidden_layers=s["num_hidden_layers"],
                     num_attention_heads=s["num_attention_heads"], intermediate_size=s["intermediate_size"],
                     hidden_dropout_prob=s["dropout"], attention_probs_dropout_prob=s["dropout"],
                     max_position_embeddings=max(512, max_length))
    return TextEncoder(BertModel(cfg, add_pooling_layer=False), embed_dim or s["embed_dim"], s["pool"])
