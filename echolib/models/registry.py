"""Encoder registry (open_clip / timm style): an ablation changes a name in params.yaml, not code.

Encoder modules register their factories when `echolib.models` is imported (its `__init__` imports them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
        from .pretrained import load_weights

        load_weights(model, weights, log=print)
    return model


def create_video_encoder(name: str, **kw) -> nn.Module:
    return _create("video", name, **kw)


def create_image_encoder(name: str, **kw) -> nn.Module:
    return _create("image", name, **kw)


def create_text_encoder(name: str, **kw) -> nn.Module:
    return _create("text", name, **kw)
