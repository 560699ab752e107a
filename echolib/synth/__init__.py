"""Synthetic multi-view echo benchmark (see shared DATA.md and `echolib.synth.generate`)."""

from .build import generate, run_synthesize

__all__ = ["generate", "run_synthesize"]
