"""Encoders by name (`create_video_encoder("vivit", size="tiny")`) and the CLIP model `EchoClip`."""

from .clip import EchoClip
from .registry import create_image_encoder, create_text_encoder, create_video_encoder, list_encoders

__all__ = ["EchoClip", "create_image_encoder", "create_text_encoder", "create_video_encoder", "list_encoders"]
