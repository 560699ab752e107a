"""The authors' released checkpoints (`checkpoint_{videomae2,vivit-kinetics400,vivit-scratch}.pt`): read their
layout into a model that embeds clips and reports as they did, and write a model back in that layout.

Their layout (`../shared/PAPER.md`): a dict {"epoch", "name", "state_dict", "optimizer"[, "scaler"]} whose keys carry
`module.` (saved from DDP); `visual.model.*` is a transformers `VivitModel` (names of transformers 4.x:
`encoder.layer.N.attention.attention.query`, ...) whose pooler is Linear(768, 512) without activation, or
`visual.model.model.*` is VideoMAE v2 in its original layout (`blocks.N.attn.qkv` with `q_bias`/`v_bias`, mean
pooling, `fc_norm`, `head`), read into transformers' `VideoMAEModel` by the renames of transformers' own VideoMAE
conversion (qkv split in three); `text.transformer.*` a BertModel without pooler, its CLS token through
`text.proj` = Linear(768, 640) - GELU - Linear(640, 512), no biases; `logit_scale`.

Their preprocessing: the first 2T frames at stride 2 from frame 0, 224 px, [0, 1] then their mean and std.
Attention heads are not stored: 64 channels per head (ViT-B, BERT-base) is assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .clip import ClipInterface

MEAN = (0.0878, 0.0873, 0.0932)
STD = (0.1510, 0.1492, 0.1570)
IMAGE_SIZE = 224
FRAME_STRIDE = 2
VIDEOMAE2_FRAMES = 16
AUTHORS_MAX_LENGTH = 256  # tokens (the paper's text length)
HEAD_DIM = 64

#: name pairs (their layout, the installed transformers) with {i} for a layer index; the first matching prefix wins,
#: so both directions (reading and writing their layout) come from one table.
#: ViViT: transformers 4.x names -> 5.x names (the renames of transformers' own conversion mapping)
_VIVIT_NAMES = [("encoder.layer.{i}.attention.attention.query.", "layers.{i}.attention.q_proj."),
                ("encoder.layer.{i}.attention.attention.key.", "layers.{i}.attention.k_proj."),
                ("encoder.layer.{i}.attention.attention.value.", "layers.{i}.attention.v_proj."),
                ("encoder.layer.{i}.attention.output.dense.", "layers.{i}.attention.o_proj."),
                ("encoder.layer.{i}.intermediate.dense.", "layers.{i}.mlp.fc1."),
                ("encoder.layer.{i}.output.dense.", "layers.{i}.mlp.fc2."),
                ("encoder.layer.{i}.", "layers.{i}.")]
#: VideoMAE v2 original names -> transformers VideoMAEModel (as transformers' convert_videomae_to_pytorch.py; the
#: fused qkv weight is split apart, not renamed)
_MAE_NAMES = [("patch_embed.proj.", "embeddings.patch_embeddings.projection."),
              ("blocks.{i}.norm1.", "encoder.layer.{i}.layernorm_before."),
              ("blocks.{i}.norm2.", "encoder.layer.{i}.layernorm_after."),
              ("blocks.{i}.attn.proj.", "encoder.layer.{i}.attention.output.dense."),
              ("blocks.{i}.attn.q_bias", "encoder.layer.{i}.attention.attention.query.bias"),
              ("blocks.{i}.attn.v_bias", "encoder.layer.{i}.attention.attention.value.bias"),
              ("blocks.{i}.mlp.fc1.", "encoder.layer.{i}.intermediate.dense."),
              ("blocks.{i}.mlp.fc2.", "encoder.layer.{i}.output.dense.")]


def _rules(pairs, back: bool = False) -> list[tuple[str, str]]:
    """Regex rules for one direction of a name table: theirs -> ours, or ours -> theirs with `back`."""
    out = []
    for theirs, ours in pairs:
        src, dst = (ours, theirs) if back else (theirs, ours)
        out.append(("^" + r"(\d+)".join(map(re.escape, src.split("{i}"))), dst.replace("{i}", r"\1")))
    return out


_VIVIT_RENAMES, _VIVIT_BACK = _rules(_VIVIT_NAMES), _rules(_VIVIT_NAMES, back=True)
_MAE_RENAMES, _MAE_BACK = _rules(_MAE_NAMES), _rules(_MAE_NAMES, back=True)


class AuthorsCheckpointError(ValueError):
    """A file that is not one of the authors' checkpoints, or not complete; the message names file and keys."""


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        renamed, n = re.subn(pattern, repl, key, count=1)
        if n:
            return renamed
    return key


def _strip_prefixes(state: dict) -> dict:
    """Drop `module.` (DDP) and `_orig_mod.` (torch.compile) wherever they lead a key, and `position_ids` buffers."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"(^|\.)(?:(?:module|_orig_mod)\.)+", r"\1", k)
        if not k.endswith("position_ids"):
            out[k] = v
    return out


def _layers(state: dict, prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


class AuthorsVideo(nn.Module):
    """`kind` "vivit": VivitModel, pooler output (CLS through a linear map); "videomae2": VideoMAEModel, mean of
    the tokens, `fc_norm`, `head`."""

    def __init__(self, kind: str, hidden: int, layers: int, intermediate: int, embed_dim: int, num_frames: int,
                 tubelet: tuple[int, int, int], image_size: int = IMAGE_SIZE):
        super().__init__()
        self.kind, self.num_frames, self.image_size = kind, num_frames, image_size
        heads = max(1, hidden // HEAD_DIM)
        if kind == "vivit":
            from transformers import VivitConfig, VivitModel

            cfg = VivitConfig(num_frames=num_frames, image_size=image_size, tubelet_size=list(tubelet),
                              hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=intermediate, pooler_output_size=embed_dim, pooler_act="linear")
            self.model = VivitModel(cfg, add_pooling_layer=True)
        elif kind == "videomae2":
            from transformers import VideoMAEConfig, VideoMAEModel

            cfg = VideoMAEConfig(num_frames=num_frames, image_size=image_size, patch_size=tubelet[1],
                                 tubelet_size=tubelet[0], hidden_size=hidden, num_hidden_layers=layers,
                                 num_attention_heads=heads, intermediate_size=intermediate, use_mean_pooling=True,
                                 qv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu")
            self.model = VideoMAEModel(cfg)
            self.fc_norm = nn.LayerNorm(hidden, eps=1e-6)
            self.head = nn.Linear(hidden, embed_dim)
        else:
            raise ValueError(f"unknown video tower {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.num_frames:
            raise ValueError(f"the authors' {self.kind} takes (B, {self.num_frames}, 3, {self.image_size}, "
                             f"{self.image_size}), got {tuple(x.shape)}")
        if self.kind == "vivit":
            return self.model(pixel_values=x).pooler_output
        return self.head(self.fc_norm(self.model(pixel_values=x).last_hidden_state.mean(dim=1)))


class AuthorsText(nn.Module):
    def __init__(self, config, width: int, embed_dim: int):
        super().__init__()
        from transformers import BertModel

        self.transformer = BertModel(config, add_pooling_layer=False)
        self.proj = nn.Sequential(nn.Linear(config.hidden_size, width, bias=False), nn.GELU(),
                                  nn.Linear(width, embed_dim, bias=False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.proj(h[:, 0])


class AuthorsClip(ClipInterface, nn.Module):
    """The authors' model (towers `visual` and `text`, as their state dict names them) with EchoClip's interface."""

    def __init__(self, visual: AuthorsVideo, text: AuthorsText):
        super().__init__()
        self.visual, self.text = visual, text
        self.logit_scale = nn.Parameter(torch.tensor(0.0))

    @property
    def video_encoder(self) -> AuthorsVideo:
        return self.visual

    @property
    def text_encoder(self) -> AuthorsText:
        return self.text

    @property
    def num_frames(self) -> int:
        return self.visual.num_frames


def is_authors_checkpoint(obj) -> bool:
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        return False
    keys = _strip_prefixes(dict.fromkeys(state)).keys()
    return any(k.startswith("visual.model.") for k in keys) and any(k.startswith("text.transformer.") for k in keys)


def _to_ours(state: dict) -> tuple[str, dict]:
    """Their state dict (prefixes stripped) -> (video tower kind, our module's state dict)."""
    out, mae = {}, any(k.startswith("visual.model.model.") for k in state)
    for k, v in state.items():
        if mae and k.startswith("visual.model.model."):
            sub = k[len("visual.model.model."):]
            if m := re.match(r"blocks\.(\d+)\.attn\.qkv\.weight$", sub):
                q, kk, vv = v.chunk(3, dim=0)
                base = f"visual.model.encoder.layer.{m.group(1)}.attention.attention."
                out[base + "query.weight"], out[base + "key.weight"], out[base + "value.weight"] = q, kk, vv
            elif sub.startswith(("fc_norm.", "head.")):
                out["visual." + sub] = v
            else:
                out["visual.model." + _rename(sub, _MAE_RENAMES)] = v
        elif k.startswith("visual.model."):
            out["visual.model." + _rename(k[len("visual.model."):], _VIVIT_RENAMES)] = v
        else:
            out[k] = v
    return ("videomae2" if mae else "vivit"), out


def _to_theirs(model: AuthorsClip) -> dict:
    out, sd = {}, model.state_dict()
    for k, v in sd.items():
        if k.startswith("visual.model.") and model.visual.kind == "vivit":
            out["visual.model." + _rename(k[len("visual.model."):], _VIVIT_BACK)] = v
        elif k.startswith("visual.") and model.visual.kind == "videomae2":
            sub = k[len("visual."):]
            if sub.startswith(("fc_norm.", "head.")):
                out["visual.model.model." + sub] = v
                continue
            sub = sub[len("model."):]
            if m := re.match(r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$", sub):
                if m.group(2) == "query":
                    base = f"encoder.layer.{m.group(1)}.attention.attention."
                    out[f"visual.model.model.blocks.{m.group(1)}.attn.qkv.weight"] = torch.cat(
                        [sd["visual.model." + base + p + ".weight"] for p in ("query", "key", "value")])
            else:
                out["visual.model.model." + _rename(sub, _MAE_BACK)] = v
        else:
            out[k] = v
    return out


def _build(kind: str, state: dict, path: Path, image_size: int) -> AuthorsClip:
    from transformers import BertConfig

    def shape(key):
        if key not in state:
            raise AuthorsCheckpointError(f"{path}: not the authors' layout: key {key} missing")
        return tuple(state[key].shape)

    proj = shape("visual.model.embeddings.patch_embeddings.projection.weight")  # (hidden, 3, t, p, p)
    hidden, tubelet = proj[0], (proj[2], proj[3], proj[4])
    if kind == "vivit":
        layers = _layers(state, "visual.model.layers.")
        intermediate = shape("visual.model.layers.0.mlp.fc1.weight")[0]
        embed = shape("visual.model.pooler.dense.weight")[0]
        positions = shape("visual.model.embeddings.position_embeddings")[1] - 1
        per_slot = (image_size // tubelet[1]) * (image_size // tubelet[2])
        if positions % per_slot:
            raise AuthorsCheckpointError(f"{path}: {positions + 1} position embeddings do not fit {image_size} px "
                                         f"with {tubelet[1]}x{tubelet[2]} patches")
        frames = positions // per_slot * tubelet[0]
    else:
        layers = _layers(state, "visual.model.encoder.layer.")
        intermediate = shape("visual.model.encoder.layer.0.intermediate.dense.weight")[0]
        embed, frames = shape("visual.head.weight")[0], VIDEOMAE2_FRAMES
    visual = AuthorsVideo(kind, hidden, layers, intermediate, embed, frames, tubelet, image_size)
    vocab, width = shape("text.transformer.embeddings.word_embeddings.weight")
    cfg = BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=_layers(state, "text.transformer.encoder.layer."),
                     num_attention_heads=max(1, width // HEAD_DIM),
                     intermediate_size=shape("text.transformer.encoder.layer.0.intermediate.dense.weight")[0],
                     max_position_embeddings=shape("text.transformer.embeddings.position_embeddings.weight")[0],
                     type_vocab_size=shape("text.transformer.embeddings.token_type_embeddings.weight")[0])
    text = AuthorsText(cfg, shape("text.proj.0.weight")[0], shape("text.proj.2.weight")[0])
    return AuthorsClip(visual, text)


def load_authors_checkpoint(path: str | Path, image_size: int = IMAGE_SIZE) -> AuthorsClip:
    """One of the authors' checkpoints as an AuthorsClip in eval mode; refuses a partial load, naming the keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle and zip errors of many kinds
        raise AuthorsCheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__})") from None
    if not is_authors_checkpoint(obj):
        raise AuthorsCheckpointError(f"{path}: not the authors' layout (a dict with 'state_dict' holding "
                                     f"visual.model.* and text.transformer.* keys)")
    kind, state = _to_ours(_strip_prefixes(obj["state_dict"]))
    model = _build(kind, state, path, image_size)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AuthorsCheckpointError(f"{path}: refusing a partial load: {len(missing)} missing key(s) "
                                     f"{missing[:4]}, {len(unexpected)} unexpected key(s) {unexpected[:4]}")
    return model.eval()


def save_authors_checkpoint(model: AuthorsClip, path: str | Path, name: str = "echolib", epoch: int = 0) -> Path:
    """Write `model` in the authors' layout (as saved from DDP: every key under `module.`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"module.{k}": v.detach().clone() for k, v in _to_theirs(model).items()}
    torch.save({"epoch": epoch, "name": name, "state_dict": state, "optimizer": {}}, path)
    return path


def clip_input(path: str | Path, num_frames: int, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """A clip as their loader gives it: the first 2T frames at stride 2 from frame 0 (past the end, the last
    frame on that grid is repeated), resized to `image_size`, in [0, 1], normalised by their mean and std: (T, 3, S, S) float."""
    from ..io.video import read_clip

    frames = read_clip(path, num_frames, stride=FRAME_STRIDE, size=image_size)  # (T, H, W, 3) uint8
    x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float().div_(255.0)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std
