"""Encoder registry (open_clip / timm style): an ablation changes a name in params.yaml, not code.

Encoder modules register their factories when `echolib.models` is imported (its `__init__` imports them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

_REGISTRY: dict[str, dict[str, Callable[..., nn.Module]]] = {"video": {}, "image": {}, "text": {}}


def register(kind: str, name: str):
    """Register an encoder factory under a name the catalogue (`echolib.encoders`) lists with that kind."""
    from ..encoders import ENCODERS

    if ENCODERS.get(name, {}).get("kind") != kind:
        raise ValueError(f"encoder {name!r} ({kind}) is not in echolib.encoders.ENCODERS: add it there first")

    def deco(fn):
        _REGISTRY[kind][name] = fn
        return fn

    return deco


def list_encoders() -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in _REGISTRY.items()}


def _create(kind: str, name: str, weights: str | Path | None = None, **kw) -> nn.Module:
    if name not in _REGISTRY[kind]:
        raise ValueError(f"unknown {kind} encoder {name!r}; registered: {sorted(_REGISTRY[kind])}")
    model = _REGISTRY[kind][name](**kw)
    if weights:
        load_weights(model, weights)
    return model


def create_video_encoder(name: str, **kw) -> nn.Module:
    return _create("video", name, **kw)


def create_image_encoder(name: str, **kw) -> nn.Module:
    return _create("image", name, **kw)


def create_text_encoder(name: str, **kw) -> nn.Module:
    return _create("text", name, **kw)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict (safetensors, .pt/.bin, or a HF directory holding one); strict, named errors."""
    path = Path(path)
    if path.is_dir():
        files = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
        if not files:
            raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin in this directory")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found (weights load only from local files)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    target = getattr(model, "backbone", model)
    if hasattr(model, "adapt_state"):
        state = model.adapt_state(dict(state))
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the {type(model).__name__} backbone "
                         f"(missing {len(missing)} keys e.g. {missing[:3]}, unexpected {len(unexpected)} e.g. "
                         f"{unexpected[:3]})")
