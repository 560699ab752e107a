"""Reading PyTorch files without running code from them.

A `.pt` / `.ckpt` file is a pickle: loaded with `torch.load(weights_only=False)` it can run any command the file
names (a crafted `model.pt` in a shared folder is enough). Every file echolib reads is loaded here, with
`weights_only=True`: tensors, numbers, strings, lists and dicts only. A file holding anything else is refused
with one line, as is a damaged one; neither is ever loaded another way.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A weights or checkpoint file that cannot be read safely: refused (code in it) or damaged."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects that would run code when loaded."""


class DamagedCheckpointError(CheckpointError):
    """The file is truncated or otherwise not a readable PyTorch file."""


def load_torch(path: str | Path, what: str = "checkpoint") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; one-line CheckpointError naming the file otherwise."""
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4": said by our own message when it fails
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # no object to build, a bad opcode: not a PyTorch file at all
            raise DamagedCheckpointError(f"{path}: damaged {what}: it cannot be read (not a PyTorch file)") from None
        raise UnsafeCheckpointError(f"{path}: refused: this {what} holds Python objects that would run code when "
                                    "loaded; only plain weights (tensors, numbers, text) are read") from None
    except Exception as e:  # zip, EOF and storage errors of many kinds
        raise DamagedCheckpointError(f"{path}: damaged {what}: it cannot be read ({type(e).__name__})") from None
