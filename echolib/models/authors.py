"""The authors' released checkpoints (`checkpoint_{videomae2,vivit-kinetics400,vivit-scratch}.pt`): read their
layout into a model that embeds clips and reports as they did, and write a model back in that layout.

Their layout (`../shared/PAPER.md`): a dict {"epoch", "name", "state_dict", "optimizer"[, "scaler"]} whose keys carry
`module.` (saved from DDP); `visual.model.*` is a transformers `VivitModel` (names of transformers 4.x:
`encoder.layer.N.attention.attention.query`, ...) whose pooler is Linear(768, 512) without activation, or
`visual.model.model.*` is VideoMAE v2 in its original layout (`blocks.N.attn.qkv` with `q_bias`/`v_bias`, mean
pooling, `fc_norm`, `head`), read into transformers' `VideoMAEModel` by the renames of transformers' own VideoMAE
conversion (qkv split in three); `text.transformer.*` a BertModel without pooler, its CLS token through
`text.proj` = Linear(768, 640) - GELU - Linear(640, 512), no biases; `logit_scale`.

Their preprocessing: the first 2T frames at stride 2 from frame 0; their `VivitImageProcessor` (short side to 224,
PIL bilinear, centre crop 224 x 224, [0, 1], their mean and std).
Attention heads are not stored: 64 channels per head (ViT-B, BERT-base) is assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.weights import load_torch
from .clip import ClipInterface
from .pretrained import VIVIT_BACK, VIVIT_RENAMES, hf_to_videomae2, rename, strip_prefixes, videomae2_to_hf

MEAN = (0.0878, 0.0873, 0.0932)
STD = (0.1510, 0.1492, 0.1570)
IMAGE_SIZE = 224
FRAME_STRIDE = 2
VIDEOMAE2_FRAMES = 16
AUTHORS_MAX_LENGTH = 256  # tokens (the paper's text length)
HEAD_DIM = 64

class AuthorsCheckpointError(ValueError):
    """A file that is not one of the authors' checkpoints, or not complete; the message names file and keys."""


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
    keys = strip_prefixes(dict.fromkeys(state)).keys()
    return any(k.startswith("visual.model.") for k in keys) and any(k.startswith("text.transformer.") for k in keys)


def _to_ours(state: dict) -> tuple[str, dict]:
    """Their state dict (prefixes stripped) -> (video tower kind, our module's state dict)."""
    mae = any(k.startswith("visual.model.model.") for k in state)
    if not mae:
        return "vivit", {("visual.model." + rename(k[len("visual.model."):], VIVIT_RENAMES)
                          if k.startswith("visual.model.") else k): v for k, v in state.items()}
    inner = {k[len("visual.model.model."):]: v for k, v in state.items() if k.startswith("visual.model.model.")}
    out = {k: v for k, v in state.items() if not k.startswith("visual.model.model.")}
    for k, v in videomae2_to_hf(inner).items():
        out[("visual." if k.startswith(("fc_norm.", "head.")) else "visual.model.") + k] = v
    return "videomae2", out


def _to_theirs(model: AuthorsClip) -> dict:
    sd = model.state_dict()
    if model.visual.kind == "vivit":
        return {("visual.model." + rename(k[len("visual.model."):], VIVIT_BACK) if k.startswith("visual.model.")
                 else k): v for k, v in sd.items()}
    inner = {k[len("visual.model."):]: v for k, v in sd.items() if k.startswith("visual.model.")}
    inner.update({k[len("visual."):]: v for k, v in sd.items() if k.startswith(("visual.fc_norm.", "visual.head."))})
    out = {k: v for k, v in sd.items() if not k.startswith("visual.")}
    out.update({"visual.model.model." + k: v for k, v in hf_to_videomae2(inner).items()})
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
    obj = load_torch(path, "checkpoint")
    if not is_authors_checkpoint(obj):
        raise AuthorsCheckpointError(f"{path}: not the authors' layout (a dict with 'state_dict' holding "
                                     f"visual.model.* and text.transformer.* keys)")
    kind, state = _to_ours(strip_prefixes(obj["state_dict"]))
    model = _build(kind, state, path, image_size)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AuthorsCheckpointError(f"{path}: refusing a partial load: {len(missing)} missing key(s) "
                                     f"{missing[:4]}, {len(unexpected)} unexpected key(s) {unexpected[:4]}")
    return model.eval()


def named_checkpoint(ck: dict, model_pt: str | Path) -> Path:
    """The checkpoint a run's model.pt names (`authors_checkpoint`): an absolute path (the released file), or a
    name in the run's own folder (a fine-tuned one, which moves with the folder when the stage swaps it in)."""
    p = Path(ck["authors_checkpoint"])
    return p if p.is_absolute() else Path(model_pt).parent / p


def save_authors_checkpoint(model: AuthorsClip, path: str | Path, name: str = "echolib", epoch: int = 0) -> Path:
    """Write `model` in the authors' layout (as saved from DDP: every key under `module.`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"module.{k}": v.detach().clone() for k, v in _to_theirs(model).items()}
    torch.save({"epoch": epoch, "name": name, "state_dict": state, "optimizer": {}}, path)
    return path


def their_processor(image_size: int = IMAGE_SIZE):
    """The image processor of their `create_model_and_transforms`, with their arguments: transformers'
    `VivitImageProcessor` (short side to `image_size` with PIL bilinear, centre crop `image_size` square, [0, 1],
    their mean and std). Their code calls it, so it is used here rather than rewritten."""
    from transformers import VivitImageProcessor

    return VivitImageProcessor(do_resize=True, size={"shortest_edge": image_size}, do_center_crop=True,
                               crop_size={"height": image_size, "width": image_size}, do_rescale=True,
                               rescale_factor=1 / 255, offset=False, do_normalize=True, image_mean=list(MEAN),
                               image_std=list(STD))


def their_frames(frames: np.ndarray, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """RGB frames (T, H, W, 3) uint8 of any shape, prepared as their loader prepares a clip: the short side resized
    to `image_size`, a centre crop, [0, 1], their mean and std: (T, 3, S, S) float32. A non-square clip keeps its
    aspect ratio (the long side is cropped), as in their code."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"their_frames: need uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    x = their_processor(image_size)(list(frames), return_tensors="pt")["pixel_values"][0]
    return x.float().contiguous()


def clip_input(path: str | Path, num_frames: int, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """A clip as their loader gives it: the first 2T frames at stride 2 from frame 0 (past the end, the last
    frame on that grid is repeated), at their own size, then `their_frames`: (T, 3, S, S) float."""
    from ..io.video import read_clip

    return their_frames(read_clip(path, num_frames, stride=FRAME_STRIDE), image_size)


class TheirClips(torch.utils.data.Dataset):
    """Training items for fine-tuning their model on an archive: each clip read from its own video file and
    prepared as their loader prepares it (`clip_input`), its study's report tokenized by their tokenizer to
    AUTHORS_MAX_LENGTH tokens (padded, truncated), and the study's index (for study-level validation)."""

    def __init__(self, paths: list[str], studies: list[str], reports: dict[str, str], tokenizer, num_frames: int):
        from ..text import encode

        self.paths, self.num_frames = list(paths), num_frames
        order = list(dict.fromkeys(studies))
        index = {s: i for i, s in enumerate(order)}
        self.study = [index[s] for s in studies]
        self.ids, self.mask, self.truncated = encode(tokenizer, [reports[s] for s in order], AUTHORS_MAX_LENGTH)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        k = self.study[i]
        return {"video": clip_input(self.paths[i], self.num_frames), "input_ids": self.ids[k],
                "attention_mask": self.mask[k], "study": torch.tensor(k)}

