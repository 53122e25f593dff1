"""One registry of small operators that drives the property tests (tests/operators/test_properties.py).

Every CT geometry and projector on the CPU, single- and multi-coil MRI with several masks,
non-Cartesian MRI (radial, spiral, user coordinates x single/multi-coil x NUFFT backend), and
compositions. Images are small and not square, so a transposed axis cannot pass unnoticed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from medrecon.operators import (
    CTProjector,
    FanBeamGeometry,
    IdentityOperator,
    LinearOperator,
    MultiCoilMRI,
    NonCartesianMRI,
    ParallelBeamGeometry,
    RealImageEmbedding,
    SingleCoilMRI,
    SliceChunkedOperator,
    limited_angles,
    simulated_maps,
    song_angles,
    uniform_angles,
)
from medrecon.operators.masks import make_mask
from medrecon.operators.trajectories import radial, spiral

H, W = 12, 16  # CT and MRI item size


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], LinearOperator]
    float32_inside: bool = False  # computes in float32 whatever the input (astra's own projectors)
    needs_astra: bool = False  # asks for astra itself (its matrix, an astra-only projector, its backend)

    def param(self):
        """The case as a pytest parameter (marked ``astra`` where it needs it)."""
        import pytest

        return pytest.param(self, id=self.name, marks=[pytest.mark.astra] if self.needs_astra else [])


def _parallel(**kw) -> ParallelBeamGeometry:
    return ParallelBeamGeometry((H, W), uniform_angles(7), **kw)


def _fan(**kw) -> FanBeamGeometry:
    return FanBeamGeometry.full_scan((H, W), 9, **kw)


def _mask(pattern: str, accel: float = 2.0) -> torch.Tensor:
    return make_mask(pattern, (H, W), accel, seed=3)


def _maps(batch: int) -> torch.Tensor:
    maps = simulated_maps(4, (H, W))[None].repeat(batch, 1, 1, 1)
    phase = torch.exp(1j * torch.linspace(0, 1.0, batch))[:, None, None, None]
    return (maps * phase).to(torch.complex64)


def _user_coords() -> torch.Tensor:
    gen = torch.Generator().manual_seed(8)
    return (torch.rand(90, 2, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi


_TRAJECTORIES = {
    "radial": lambda: radial((H, W), 9, angles="golden"),
    "spiral": lambda: spiral((H, W), 4, undersampling=1.5),
    "user": _user_coords,
}


def _nufft_cases() -> list[Case]:
    """Every trajectory x coil setting x NUFFT backend (per-slice maps on one backend each)."""
    cases = []
    for traj, coords in _TRAJECTORIES.items():
        for backend in ("torch", "finufft"):
            cases.append(Case(f"nufft-{traj}-1coil-{backend}", lambda c=coords, b=backend: NonCartesianMRI(c(), (H, W), backend=b)))
            cases.append(Case(f"nufft-{traj}-sense-{backend}",
                              lambda c=coords, b=backend: NonCartesianMRI(c(), (H, W), _maps(1), backend=b)))
        backend = "torch" if traj == "spiral" else "finufft"
        cases.append(Case(f"nufft-{traj}-sense-per-slice-maps-{backend}",
                          lambda c=coords, b=backend: NonCartesianMRI(c(), (H, W), _maps(3), backend=b, toeplitz=False)))
    return cases


CASES: list[Case] = [
    Case("ct-parallel-linear-astra", lambda: CTProjector(_parallel(), matrix_source="astra"), needs_astra=True),
    Case("ct-parallel-linear-torch", lambda: CTProjector(_parallel(), matrix_source="torch")),
    Case("ct-parallel-line", lambda: CTProjector(_parallel(), projector="line", matrix_source="astra"), needs_astra=True),
    Case("ct-parallel-strip", lambda: CTProjector(_parallel(), projector="strip", matrix_source="astra"), needs_astra=True),
    Case(
        "ct-parallel-anisotropic-units",
        lambda: CTProjector(_parallel(pixel_size=0.8, detector_spacing=1.1), matrix_source="torch"),
    ),
    Case("ct-parallel-song", lambda: CTProjector(ParallelBeamGeometry((H, W), song_angles(5, W)))),
    Case("ct-parallel-limited", lambda: CTProjector(ParallelBeamGeometry((H, W), limited_angles(6, math.pi / 2)))),
    Case("ct-parallel-astra-backend", lambda: CTProjector(_parallel(), backend="astra"), float32_inside=True, needs_astra=True),
    Case("ct-fan-line-astra", lambda: CTProjector(_fan(), matrix_source="astra"), needs_astra=True),
    Case("ct-fan-line-torch", lambda: CTProjector(_fan(), matrix_source="torch")),
    Case("ct-fan-strip", lambda: CTProjector(_fan(), projector="strip_fanflat"), needs_astra=True),
    Case(
        "ct-fan-short-distances",
        lambda: CTProjector(
            FanBeamGeometry((H, W), uniform_angles(8, arc=2 * math.pi), source_origin=15.0, origin_detector=5.0),
            matrix_source="torch",
        ),
    ),
    Case("ct-fan-astra-backend", lambda: CTProjector(_fan(), backend="astra"), float32_inside=True, needs_astra=True),
    Case("mri-1coil-equispaced", lambda: SingleCoilMRI(_mask("equispaced_fraction"))),
    Case("mri-1coil-random", lambda: SingleCoilMRI(_mask("random"))),
    Case("mri-1coil-gaussian2d", lambda: SingleCoilMRI(_mask("gaussian2d", 3.0))),
    Case("mri-1coil-poisson", lambda: SingleCoilMRI(_mask("poisson", 2.0))),
    Case("mri-1coil-radial", lambda: SingleCoilMRI(_mask("radial", 2.0))),
    Case("mri-sense-shared-maps", lambda: MultiCoilMRI(_maps(1), _mask("equispaced"))),
    Case("mri-sense-per-slice-maps", lambda: MultiCoilMRI(_maps(3), _mask("gaussian1d"))),
    Case("compose-scaled-ct", lambda: 2.5 * CTProjector(_parallel())),
    Case(
        "compose-sum-ct",
        lambda: CTProjector(_parallel(), matrix_source="torch") + CTProjector(_parallel(), projector="strip"),
        needs_astra=True,
    ),
    Case("compose-ct-after-identity", lambda: CTProjector(_fan()) @ IdentityOperator((1, H, W))),
    Case("compose-complex-scaled-mri", lambda: (1.0 - 2.0j) * SingleCoilMRI(_mask("random"))),
    Case("compose-mri-difference", lambda: SingleCoilMRI(_mask("random")) - SingleCoilMRI(_mask("equispaced"))),
    Case("compose-sense-gram", lambda: MultiCoilMRI(_maps(1), _mask("random")).H @ MultiCoilMRI(_maps(1), _mask("random"))),
    Case("compose-adjoint-ct", lambda: CTProjector(_parallel()).H),
    Case("real-image-zero-phase", lambda: RealImageEmbedding((1, H, W))),
    Case("real-image-per-slice-phase", lambda: RealImageEmbedding((1, H, W), torch.linspace(-2, 2, 3 * H * W).reshape(3, 1, H, W))),
    Case(
        "compose-sense-real-image",
        lambda: MultiCoilMRI(_maps(3), _mask("equispaced"))
        @ RealImageEmbedding((1, H, W), torch.rand(3, 1, H, W, generator=torch.Generator().manual_seed(5))),
    ),
    Case("chunked-ct", lambda: SliceChunkedOperator(CTProjector(_parallel()), 2)),
    Case("chunked-sense-per-slice-maps", lambda: SliceChunkedOperator(MultiCoilMRI(_maps(3), _mask("gaussian1d")), 2)),
    *_nufft_cases(),
    Case("chunked-nufft-per-slice-maps", lambda: SliceChunkedOperator(NonCartesianMRI(radial((H, W), 7), (H, W), _maps(3)), 2)),
]


def random_input(op: LinearOperator, shape_of: str, batch: int, dtype, generator) -> torch.Tensor:
    """A random batch for the operator's input (``shape_of='in'``) or output (``'out'``)."""
    shape = op.in_shape if shape_of == "in" else op.out_shape
    is_complex = op.in_complex if shape_of == "in" else op.out_complex
    real_dtype = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
    x = torch.randn((batch, *shape), generator=generator, dtype=real_dtype)
    if is_complex:
        x = torch.complex(x, torch.randn((batch, *shape), generator=generator, dtype=real_dtype))
    return x


def batch_of(op: LinearOperator) -> int:
    return op.batch_size or 3


