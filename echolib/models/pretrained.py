"""Pretrained weights from a local file or folder, in the layouts researchers hold them (never downloaded).

`load_weights(encoder, path)` reads a state dict, recognises its layout from the key names, renames it into the
encoder's backbone and loads it. Heads the layout is known to carry (a classifier, a pretraining decoder, the other
tower of a CLIP model) are dropped by name and counted in the returned report; any other key left over, or any
backbone key the file does not fill, is an error naming them: there is no silent partial load.

| layout | recognised by | read into |
|---|---|---|
| `echolib-ssl` | `{"echolib_init": ...}` (written by `echolib.pretrain`) | the same encoder; another ConvNeXt's backbone |
| `timm-convnext` | `stem.0.*`, `stages.N.*` (timm, e.g. ImageNet-21k; `head.fc` dropped) | the ConvNeXt backbone |
| `open_clip-convnext` | `visual.trunk.*` (open_clip LAION-2B, EchoCLIP's image tower) | the ConvNeXt backbone |
| `videomae` | `videomae.*` (VideoMAEForPreTraining / ForVideoClassification) or VideoMAEModel keys | VideoMAEModel |
| `videomae2` | `blocks.N.attn.qkv.*` (VideoMAE v2's own layout, optionally under `encoder.`) | VideoMAEModel |
| `vivit` | `vivit.*` (VivitForVideoClassification, Kinetics-400) or VivitModel keys, 4.x or 5.x names | VivitModel |

A ConvNeXt image checkpoint loads into the video ConvNeXts too: `convnext_st`'s temporal layers are not in it and
start as the identity (so the video model starts as the image model on every frame); `convnext_early` adapts its
stem (timm's rule). ViViT's learned position embeddings are interpolated (trilinear over the time x height x width
token grid) when the frame count or resolution differs; VideoMAE's are sinusoidal and follow the model's own grid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from ..io.weights import load_torch

#: files looked for, in order, when the user names a folder (transformers, then open_clip's hub layout)
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: nestings of the state dict inside a saved object (Lightning, VideoMAE v2's training scripts, ours)
NESTS = ("state_dict", "model", "module", "echolib_init")

#: ViViT names of transformers 4.x (the hub's files) -> the installed transformers' names; {i} a layer index
VIVIT_NAMES = [("encoder.layer.{i}.attention.attention.query.", "layers.{i}.attention.q_proj."),
               ("encoder.layer.{i}.attention.attention.key.", "layers.{i}.attention.k_proj."),
               ("encoder.layer.{i}.attention.attention.value.", "layers.{i}.attention.v_proj."),
               ("encoder.layer.{i}.attention.output.dense.", "layers.{i}.attention.o_proj."),
               ("encoder.layer.{i}.intermediate.dense.", "layers.{i}.mlp.fc1."),
               ("encoder.layer.{i}.output.dense.", "layers.{i}.mlp.fc2."),
               ("encoder.layer.{i}.", "layers.{i}.")]
#: VideoMAE v2 original names -> transformers VideoMAEModel (as transformers' convert_videomae_to_pytorch.py; the
#: fused qkv weight is split apart, not renamed)
MAE_NAMES = [("patch_embed.proj.", "embeddings.patch_embeddings.projection."),
             ("blocks.{i}.norm1.", "encoder.layer.{i}.layernorm_before."),
             ("blocks.{i}.norm2.", "encoder.layer.{i}.layernorm_after."),
             ("blocks.{i}.attn.proj.", "encoder.layer.{i}.attention.output.dense."),
             ("blocks.{i}.attn.q_bias", "encoder.layer.{i}.attention.attention.query.bias"),
             ("blocks.{i}.attn.v_bias", "encoder.layer.{i}.attention.attention.value.bias"),
             ("blocks.{i}.mlp.fc1.", "encoder.layer.{i}.intermediate.dense."),
             ("blocks.{i}.mlp.fc2.", "encoder.layer.{i}.output.dense."),
             ("norm.", "layernorm.")]


class WeightsError(ValueError):
    """Weights that cannot be loaded as asked; the message names the file, the layout and the keys."""


def rules(pairs, back: bool = False) -> list[tuple[str, str]]:
    """Regex rules for one direction of a name table: theirs -> ours, or ours -> theirs with `back`."""
    out = []
    for theirs, ours in pairs:
        src, dst = (ours, theirs) if back else (theirs, ours)
        out.append(("^" + r"(\d+)".join(map(re.escape, src.split("{i}"))), dst.replace("{i}", r"\1")))
    return out


VIVIT_RENAMES, VIVIT_BACK = rules(VIVIT_NAMES), rules(VIVIT_NAMES, back=True)
MAE_RENAMES, MAE_BACK = rules(MAE_NAMES), rules(MAE_NAMES, back=True)
#: VideoMAE as transformers 4.x saved it (the hub's files): query and value biases as separate parameters
HF_MAE_RENAMES = rules([("encoder.layer.{i}.attention.attention.q_bias", "encoder.layer.{i}.attention.attention.query.bias"),
                        ("encoder.layer.{i}.attention.attention.v_bias", "encoder.layer.{i}.attention.attention.value.bias")])


def rename(key: str, table) -> str:
    for pattern, repl in table:
        renamed, n = re.subn(pattern, repl, key, count=1)
        if n:
            return renamed
    return key


def strip_prefixes(state: dict) -> dict:
    """Drop `module.` (DDP) and `_orig_mod.` (torch.compile) wherever they lead a key, and `position_ids` buffers."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"(^|\.)(?:(?:module|_orig_mod)\.)+", r"\1", k)
        if not k.endswith("position_ids"):
            out[k] = v
    return out


def videomae2_to_hf(state: dict) -> dict:
    """VideoMAE v2 original names -> transformers VideoMAEModel names (qkv split in three); other keys unchanged."""
    out = {}
    for k, v in state.items():
        if m := re.match(r"blocks\.(\d+)\.attn\.qkv\.weight$", k):
            base = f"encoder.layer.{m.group(1)}.attention.attention."
            out[base + "query.weight"], out[base + "key.weight"], out[base + "value.weight"] = v.chunk(3, dim=0)
        else:
            out[rename(k, MAE_RENAMES)] = v
    return out


def hf_to_videomae2(state: dict) -> dict:
    """The inverse of `videomae2_to_hf` (query, key and value weights fused back into qkv)."""
    out = {}
    for k, v in state.items():
        if m := re.match(r"encoder\.layer\.(\d+)\.attention\.attention\.query\.weight$", k):
            base = f"encoder.layer.{m.group(1)}.attention.attention."
            out[f"blocks.{m.group(1)}.attn.qkv.weight"] = torch.cat(
                [v, state[base + "key.weight"], state[base + "value.weight"]])
        elif not re.match(r"encoder\.layer\.\d+\.attention\.attention\.(key|value)\.weight$", k):
            out[rename(k, MAE_BACK)] = v
    return out


def weights_file(path: str | Path) -> Path:
    """The one file to read: `path` itself, or in a folder the first of FOLDER_FILES (or its only weights file)."""
    path = Path(path)
    if path.is_dir():
        for name in FOLDER_FILES:
            if (path / name).is_file():
                return path / name
        found = sorted(p for ext in ("*.safetensors", "*.pt", "*.pth", "*.bin") for p in path.glob(ext))
        if len(found) == 1:
            return found[0]
        raise FileNotFoundError(f"{path}: no weights file in this folder (looked for {', '.join(FOLDER_FILES)} "
                                f"or a single .safetensors/.pt/.pth/.bin; found {[p.name for p in found]})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found (weights load only from local files)")
    return path


def read_state(path: str | Path) -> tuple[dict, dict, Path]:
    """(state dict with DDP/compile prefixes stripped, the saved object's other entries, the file read)."""
    f = weights_file(path)
    if f.suffix == ".safetensors":
        from safetensors.torch import load_file

        return strip_prefixes(load_file(str(f))), {}, f
    obj = load_torch(f, "weights file")
    meta = {}
    while isinstance(obj, dict):
        nest = next((n for n in NESTS if isinstance(obj.get(n), dict)), None)
        if nest is None:
            break
        meta.update({k: v for k, v in obj.items() if k != nest})
        meta.setdefault("nested_in", nest)
        obj = obj[nest]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"{f}: no state dict of tensors in it (looked under {', '.join(NESTS)})")
    return strip_prefixes(obj), meta, f


def detect_layout(state: dict, meta: dict | None = None) -> str:
    keys = list(state)

    def has(pattern: str) -> bool:
        return any(re.match(pattern, k) for k in keys)

    if (meta or {}).get("layout") == "echolib-ssl":
        return "echolib-ssl"
    if has(r"visual\.trunk\."):
        return "open_clip-convnext"
    if has(r"(encoder\.)?blocks\.\d+\.attn\.qkv\.weight") or has(r"(encoder\.)?patch_embed\.proj\."):
        return "videomae2"
    if has(r"vivit\.") or has(r"embeddings\.cls_token$"):
        return "vivit"
    if has(r"videomae\.") or has(r"embeddings\.patch_embeddings\.projection\.weight$"):
        return "videomae"
    if has(r"stem\.0\.weight$") and has(r"stages\.\d+\."):
        return "timm-convnext"
    raise WeightsError("the keys match no known layout (timm or open_clip ConvNeXt, VideoMAE, VideoMAE v2, ViViT, "
                       f"echolib-ssl); first keys: {keys[:4]}")


#: what both VideoMAE layouts may carry beyond the encoder
_MAE_HEADS = [("decoder.", "the pretraining decoder"), ("encoder_to_decoder.", "the pretraining decoder"),
              ("mask_token", "the pretraining mask token"), ("fc_norm.", "the classifier's pooling norm")]
#: key prefixes each layout may carry beyond the backbone, and why they are dropped
_DROPPED = {
    "timm-convnext": [("head.fc.", "the classifier")],
    "open_clip-convnext": [("head.fc.", "the classifier")],
    "videomae": [*_MAE_HEADS, ("classifier.", "the classifier")],
    "videomae2": [*_MAE_HEADS, ("head.", "the classifier"),
                  ("pos_embed", "a fixed sinusoidal position table (recomputed)")],
    "vivit": [("classifier.", "the classifier"), ("pooler.", "the pooler")],
    "echolib-ssl": [],
}


def to_backbone(state: dict, layout: str) -> tuple[dict, dict[str, list[str]]]:
    """(the state renamed into the target's namespace, {why: dropped keys}). The target is the encoder's
    `backbone` for every layout but echolib-ssl (the whole encoder)."""
    dropped: dict[str, list[str]] = {}
    if layout == "open_clip-convnext":
        kept = {}
        for k, v in state.items():
            if k.startswith("visual.trunk."):
                kept[k[len("visual.trunk."):]] = v
            else:
                why = "the CLIP projection" if k.startswith("visual.") else "the text tower and logit scale"
                dropped.setdefault(why, []).append(k)
        state = kept
    elif layout in ("videomae", "vivit"):
        prefix = layout + "."
        state = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    elif layout == "videomae2":
        if any(k.startswith("encoder.blocks.") for k in state):  # a pretraining checkpoint: encoder.* + decoder.*
            state = {(k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in state.items()}
        state = videomae2_to_hf(state)
    if layout == "vivit":
        state = {rename(k, VIVIT_RENAMES): v for k, v in state.items()}
    if layout == "videomae":
        state = {rename(k, HF_MAE_RENAMES): v for k, v in state.items()}
    kept = {}
    for k, v in state.items():
        why = next((w for p, w in _DROPPED[layout] if k.startswith(p)), None)
        if why:
            dropped.setdefault(why, []).append(k)
        else:
            kept[k] = v
    return kept, dropped


def _grid_of(config: dict) -> tuple[int, int, int] | None:
    try:
        tub = config.get("tubelet_size", [2, 16, 16])
        return config["num_frames"] // tub[0], config["image_size"] // tub[1], config["image_size"] // tub[2]
    except (KeyError, TypeError, IndexError, ZeroDivisionError):
        return None


def interpolate_positions(pos: torch.Tensor, target: tuple[int, int, int], source: tuple[int, int, int] | None,
                          where: str) -> torch.Tensor:
    """ViViT position embeddings (1, 1 + t*h*w, D) on the source token grid -> the target grid (trilinear); the
    CLS position is kept. The source grid comes from the checkpoint's config.json, or is inferred when one of time
    or space is the target's."""
    n, d = pos.shape[1] - 1, pos.shape[2]
    if source is None or source[0] * source[1] * source[2] != n:
        t, h, w = target
        guesses = [g for g in [(t, round((n / t) ** 0.5), round((n / t) ** 0.5)),
                               (n // (h * w), h, w)] if g[0] * g[1] * g[2] == n and min(g) > 0]
        if not guesses:
            raise WeightsError(f"{where}: {n} position embeddings do not form a token grid this model can use "
                               f"(model: {t}x{h}x{w}); put the checkpoint's config.json (num_frames, image_size, "
                               "tubelet_size) beside it")
        source = guesses[0]
    if tuple(source) == tuple(target):
        return pos
    grid = pos[:, 1:].reshape(1, *source, d).permute(0, 4, 1, 2, 3)
    grid = nn.functional.interpolate(grid.float(), size=target, mode="trilinear", align_corners=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 4, 1).reshape(1, -1, d).to(pos.dtype)], dim=1)


def _fresh_allowed(encoder: nn.Module, layout: str) -> tuple[tuple[str, ...], str]:
    """Target keys a layout may leave at their initialisation, and why."""
    if layout in ("videomae", "videomae2"):
        return ("layernorm.",), "the final LayerNorm (a pretraining checkpoint has none)"
    if layout == "echolib-ssl":
        return ("proj.",), "the CLIP projection"
    return (), ""


def load_weights(encoder: nn.Module, path: str | Path, log=None) -> dict:
    """Load local pretrained weights into one of our encoders (see the module's table). Returns a report: layout,
    file, keys loaded, keys dropped by reason, keys left at their initialisation, position embeddings resized."""
    state, meta, f = read_state(path)
    try:
        layout = detect_layout(state, meta)
    except WeightsError as e:
        raise WeightsError(f"{f}: {e}") from None
    if layout == "echolib-ssl" and meta.get("encoder") != type(encoder).__name__:
        if not (hasattr(encoder, "backbone") and "backbone.stem.0.weight" in state):
            raise WeightsError(f"{f}: self-supervised weights of our {meta.get('encoder')}, which do not fit a "
                               f"{type(encoder).__name__}")
        # another ConvNeXt encoder (e.g. the image model's weights into a video ConvNeXt): its backbone only
        layout, state = "timm-convnext", {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    state, dropped = to_backbone(state, layout)
    if layout == "echolib-ssl":
        target = encoder
    else:
        target = getattr(encoder, "backbone", encoder)
        if hasattr(encoder, "adapt_state"):
            state = encoder.adapt_state(dict(state))
    own = target.state_dict()
    resized = None
    if layout == "vivit" and "embeddings.position_embeddings" in state and "embeddings.position_embeddings" in own:
        pos, want = state["embeddings.position_embeddings"], own["embeddings.position_embeddings"]
        if pos.shape != want.shape and pos.shape[-1] == want.shape[-1]:
            cfg_file = f.parent / "config.json"
            source = _grid_of(json.loads(cfg_file.read_text())) if cfg_file.is_file() else None
            c = target.config
            grid = (c.num_frames // c.tubelet_size[0], c.image_size // c.tubelet_size[1],
                    c.image_size // c.tubelet_size[2])
            state["embeddings.position_embeddings"] = interpolate_positions(pos, grid, source, str(f))
            resized = [list(pos.shape), list(want.shape)]
    fresh_ok, fresh_why = _fresh_allowed(encoder, layout)
    prefix = "" if target is encoder else "backbone."
    own_full = {prefix + k: v for k, v in own.items()}
    state_full = {prefix + k: v for k, v in state.items()}
    mismatched = [f"{k} {tuple(v.shape)} vs the model's {tuple(own_full[k].shape)}" for k, v in state_full.items()
                  if k in own_full and v.shape != own_full[k].shape]
    unexpected = sorted(set(state_full) - set(own_full))
    missing = sorted(k for k in set(own_full) - set(state_full)
                     if not (k[len(prefix):].startswith(fresh_ok) if fresh_ok else False))
    if mismatched or unexpected or missing:
        parts = [f"{len(mismatched)} of other shape, e.g. {mismatched[:2]}" if mismatched else "",
                 f"{len(missing)} missing, e.g. {missing[:3]}" if missing else "",
                 f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}" if unexpected else ""]
        raise WeightsError(f"{f}: {layout} weights do not fit this {type(encoder).__name__} ("
                           + "; ".join(p for p in parts if p) + "); a different size or architecture? "
                           "Refusing a partial load")
    target.load_state_dict(state, strict=False)
    fresh = sorted(k for k in own_full if k not in state_full)
    report = {"file": str(f), "layout": layout, "loaded": len(state), "dropped": {w: len(v) for w, v in dropped.items()},
              "fresh": len(fresh), "fresh_why": fresh_why if fresh else "", "position_embeddings_resized": resized}
    if log:
        log(f"weights {f.name} ({layout}): {len(state)} tensors loaded"
            + "".join(f"; {len(v)} dropped ({w})" for w, v in dropped.items())
            + (f"; {len(fresh)} at initialisation ({fresh_why})" if fresh else "")
            + (f"; position embeddings {resized[0]} -> {resized[1]}" if resized else ""))
    return report
