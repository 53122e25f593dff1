"""Physics forward operators (installed as ``medrecon.operators``): no learning, no file I/O.

- :mod:`.base`: the :class:`LinearOperator` contract and its algebra (``@``, ``.H``, ``*``, ``+``);
- :mod:`.cg`: the batched conjugate-gradient solver every module shares;
- :mod:`.ct_geometry`, :mod:`.ct`: parallel- and fan-beam CT geometries, :class:`CTProjector`, FBP;
- :mod:`.mri`, :mod:`.masks`, :mod:`.coils`: Cartesian MRI (single-coil, SENSE), sampling masks,
  coil sensitivities;
- :mod:`.nufft`, :mod:`.trajectories`: non-Cartesian MRI (radial, spiral, any coordinates) through
  a NUFFT (a torch backend on any device, finufft on the CPU), density compensation;
- :mod:`.noise`: measurement noise models with per-item generators.

astra-toolbox is imported only when a CT operator needs it.
"""

from .base import (
    AdjointOperator,
    ComposedOperator,
    IdentityOperator,
    LinearOperator,
    RealImageEmbedding,
    ScaledOperator,
    SliceChunkedOperator,
    SumOperator,
    power_iteration,
)
from .cg import batch_dot, conjugate_gradient
from .coils import espirit_maps, rss, simulated_maps
from .ct import CTProjector
from .ct_geometry import (
    FanBeamGeometry,
    ParallelBeamGeometry,
    geometry_from_dict,
    limited_angles,
    song_angles,
    sparse_view_angles,
    uniform_angles,
)
from .mri import MultiCoilMRI, SingleCoilMRI, fft2c, ifft2c
from .noise import add_gaussian_noise, add_log_poisson_noise, randn_per_item, transmission_counts
from .nufft import NonCartesianMRI, density_compensation
from .trajectories import Trajectory

__all__ = [
    "LinearOperator",
    "AdjointOperator",
    "ComposedOperator",
    "IdentityOperator",
    "RealImageEmbedding",
    "ScaledOperator",
    "SliceChunkedOperator",
    "SumOperator",
    "power_iteration",
    "conjugate_gradient",
    "batch_dot",
    "CTProjector",
    "ParallelBeamGeometry",
    "FanBeamGeometry",
    "geometry_from_dict",
    "uniform_angles",
    "song_angles",
    "sparse_view_angles",
    "limited_angles",
    "SingleCoilMRI",
    "MultiCoilMRI",
    "NonCartesianMRI",
    "Trajectory",
    "density_compensation",
    "fft2c",
    "ifft2c",
    "rss",
    "simulated_maps",
    "espirit_maps",
    "add_gaussian_noise",
    "add_log_poisson_noise",
    "transmission_counts",
    "randn_per_item",
]
