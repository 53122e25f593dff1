"""What every record states about the software that wrote it."""

from __future__ import annotations

import platform

import numpy as np
import torch

from medrecon import __version__


def versions() -> dict:
    """medrecon, torch, numpy, diffusers, Python and the platform, as strings."""
    import diffusers  # heavy; only when a record is written

    return {"medrecon": __version__, "torch": torch.__version__, "numpy": np.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


__all__ = ["versions"]
