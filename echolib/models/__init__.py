"""Encoders by name (`create_video_encoder("vivit", size="tiny")`), the CLIP model `EchoClip`, and `build_model`
/ `load_clip_model`, which make one from a run's settings or a saved model.pt.

Importing the package registers every encoder (its modules call `registry.register` on import)."""

from . import convnext, text, video  # noqa: F401  (registration)
from .clip import EchoClip
from .factory import build_model, load_clip_model
from .registry import create_image_encoder, create_text_encoder, create_video_encoder, list_encoders

__all__ = ["EchoClip", "build_model", "create_image_encoder", "create_text_encoder", "create_video_encoder",
           "list_encoders", "load_clip_model"]
