"""Synthetic multi-view echo benchmark (see shared DATA.md and `echolib.synth.generate`)."""

from .build import PROFILES, Profile, generate

__all__ = ["PROFILES", "Profile", "generate"]
