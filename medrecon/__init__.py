"""medrecon: medical image reconstruction from undersampled CT and MRI data with diffusion priors.

``import medrecon`` is cheap: torch and the heavier submodules load on first use of a name below.

The Python API, in the order of the pipeline::

    study = medrecon.load_study(path, modality="CT")            # voxels (S, H, W) in HU / MR units
    acquisition = medrecon.CTAcquisition(geometry.to_dict())      # or MRAcquisition(sampling, coils=8)
    measurements = medrecon.simulate(study, acquisition)          # sinograms / multi-coil k-space
    problem = medrecon.problem_from_acquisition(acquisition, measurements)  # in the prior's units
    result = medrecon.reconstruct(problem, "ct-starter", sampler="dds")    # mean (S, 1, H, W), std
    medrecon.save_study(study.with_voxels(problem.to_native(result.mean)), "recon.nii.gz")

Physics operators, geometries, masks and coil maps are in :mod:`medrecon.operators`, classical
reconstructions in :mod:`medrecon.baselines`, metrics in :mod:`medrecon.metrics`, the samplers in
:data:`SAMPLERS` (:mod:`medrecon.samplers`), priors in :mod:`medrecon.priors`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY_MODULES = {
    "operators": "medrecon.operators",
    "baselines": "medrecon.baselines",
    "metrics": "medrecon.metrics",
    "errors": "medrecon.errors",
    "samplers": "medrecon.samplers",
    "priors": "medrecon.priors",
}
_LAZY_NAMES = {
    "Study": "medrecon.study",
    "load_study": "medrecon.io.studies",
    "save_study": "medrecon.io.studies",
    "CTAcquisition": "medrecon.acquisition",
    "MRAcquisition": "medrecon.acquisition",
    "simulate": "medrecon.simulation",
    "Problem": "medrecon.reconstruct",
    "problem_from_acquisition": "medrecon.reconstruct",
    "problem_from_kspace": "medrecon.reconstruct",
    "reconstruct": "medrecon.reconstruct",
    "reconstruct_sharded": "medrecon.distributed",
    "load_prior": "medrecon.priors.hub",
    "SAMPLERS": "medrecon.samplers",
    "psnr": "medrecon.metrics",
    "ssim": "medrecon.metrics",
    "nmse": "medrecon.metrics",
    "CTProjector": "medrecon.operators",
    "ParallelBeamGeometry": "medrecon.operators",
    "FanBeamGeometry": "medrecon.operators",
    "SingleCoilMRI": "medrecon.operators",
    "MultiCoilMRI": "medrecon.operators",
    "CartesianSampling": "medrecon.operators.masks",
    "GridMap": "medrecon.grid",
}


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        value = importlib.import_module(_LAZY_MODULES[name])
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'medrecon' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY_MODULES) + list(_LAZY_NAMES))


__all__ = sorted(_LAZY_NAMES)
