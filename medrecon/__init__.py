"""medrecon: medical image reconstruction from undersampled CT and MRI data with diffusion priors.

``import medrecon`` is cheap: torch and the heavier submodules load on first use of a name below.
Physics operators live in :mod:`medrecon.operators`, classical reconstructions in
:mod:`medrecon.baselines`, image-quality metrics in :mod:`medrecon.metrics`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "operators": "medrecon.operators",
    "baselines": "medrecon.baselines",
    "metrics": "medrecon.metrics",
    "errors": "medrecon.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'medrecon' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
