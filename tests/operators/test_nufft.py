"""Non-Cartesian MRI (operators/nufft.py, operators/trajectories.py) against independent references:
an explicit non-uniform DFT, the centred FFT on Cartesian coordinates, the other NUFFT backend, and
a phantom through gridding. The adjoint/linearity/batch/autograd properties are in the registry
(tests/operators/registry.py)."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from medrecon.errors import GeometryError, InputError, MissingResourceError, ShapeError
from medrecon.operators import NonCartesianMRI, Trajectory, fft2c, simulated_maps
from medrecon.operators.coils import noncartesian_espirit_maps
from medrecon.operators.nufft import density_compensation
from medrecon.operators.trajectories import radial, samples_acceleration, spiral

N = 32


def explicit_dft(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``sum_n x[n] exp(-i omega . n) / sqrt(H W)`` by a dense matrix: ``(B, H, W) -> (B, K)``."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, dtype=torch.float64) - h // 2
    cols = torch.arange(w, dtype=torch.float64) - w // 2
    phase = coords[:, 0, None, None] * rows[None, :, None] + coords[:, 1, None, None] * cols[None, None, :]
    matrix = torch.exp(-1j * phase) / math.sqrt(h * w)
    return torch.einsum("khw,bhw->bk", matrix, x.to(torch.complex128))


def _image(batch=2, h=N, w=N, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(batch, 1, h, w, generator=gen, dtype=torch.float64),
                         torch.randn(batch, 1, h, w, generator=gen, dtype=torch.float64))


TRAJECTORIES = {
    "radial": lambda: radial((N, N), 12),
    "spiral": lambda: spiral((N, N), 4, undersampling=2.0),
    "user": lambda: (torch.rand(400, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1) * math.pi,
}


@pytest.mark.parametrize("backend", ["torch", "finufft"])
@pytest.mark.parametrize("trajectory", sorted(TRAJECTORIES))
def test_forward_matches_an_explicit_dft_on_32x32(trajectory, backend):
    coords = TRAJECTORIES[trajectory]()
    x = _image()
    op = NonCartesianMRI(coords, (N, N), backend=backend)
    expected = explicit_dft(x[:, 0], coords)
    error = torch.linalg.vector_norm(op(x)[:, 0] - expected) / torch.linalg.vector_norm(expected)
    assert error < 1e-4, f"relative error {error:.2e}"
    # and the adjoint is the conjugate-transposed DFT
    y = op(x)
    gen = torch.Generator().manual_seed(9)
    y = torch.complex(torch.randn(y.shape, generator=gen, dtype=torch.float64), torch.randn(y.shape, generator=gen, dtype=torch.float64))
    rows = torch.arange(N, dtype=torch.float64) - N // 2
    phase = coords[:, 0, None, None] * rows[None, :, None] + coords[:, 1, None, None] * rows[None, None, :]
    adjoint = torch.einsum("khw,bk->bhw", torch.exp(1j * phase) / N, y[:, 0])
    assert torch.linalg.vector_norm(op.adjoint(y)[:, 0] - adjoint) < 1e-4 * torch.linalg.vector_norm(adjoint)


@pytest.mark.parametrize("backend", ["torch", "finufft"])
def test_cartesian_coordinates_give_the_centred_fft(backend):
    h, w = 12, 16  # not square, even and odd halves exercised by the centring
    k1 = 2 * math.pi * (torch.arange(h, dtype=torch.float64) - h // 2) / h
    k2 = 2 * math.pi * (torch.arange(w, dtype=torch.float64) - w // 2) / w
    coords = torch.stack(torch.meshgrid(k1, k2, indexing="ij"), -1).reshape(-1, 2)
    x = _image(h=h, w=w)
    op = NonCartesianMRI(coords, (h, w), backend=backend)
    torch.testing.assert_close(op(x).reshape(2, 1, h, w), fft2c(x), rtol=0, atol=1e-5 * float(x.abs().max()))


def test_backends_agree_and_the_accuracy_is_configurable():
    coords = radial((N, N), 20)
    x = _image()
    maps = simulated_maps(3, (N, N))[None].to(torch.complex128)
    exact = NonCartesianMRI(coords, (N, N), maps, backend="finufft", eps=1e-12)(x)
    errors = {}
    for backend in ("torch", "finufft"):
        for eps in (1e-3, 1e-6, 1e-9):
            y = NonCartesianMRI(coords, (N, N), maps, backend=backend, eps=eps)(x)
            errors[backend, eps] = float(torch.linalg.vector_norm(y - exact) / torch.linalg.vector_norm(exact))
    for backend in ("torch", "finufft"):
        assert errors[backend, 1e-3] < 1e-2 and errors[backend, 1e-6] < 1e-5 and errors[backend, 1e-9] < 1e-8, errors
        assert errors[backend, 1e-9] < errors[backend, 1e-6] < errors[backend, 1e-3]


def test_toeplitz_normal_equals_the_nufft_pair():
    coords = spiral((N, N), 6, undersampling=1.5)
    maps = simulated_maps(4, (N, N))[None].to(torch.complex128)
    x = _image()
    toeplitz = NonCartesianMRI(coords, (N, N), maps, toeplitz=True)
    plain = NonCartesianMRI(coords, (N, N), maps, toeplitz=False)
    expected = plain.adjoint(plain(x))
    assert torch.linalg.vector_norm(toeplitz.normal(x) - expected) < 1e-5 * torch.linalg.vector_norm(expected)  # eps 1e-6


def _phantom(n: int) -> torch.Tensor:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return torch.tensor(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True), dtype=torch.complex128)[None, None]


def test_gridding_of_a_fully_sampled_radial_acquisition_reproduces_the_phantom():
    """101 spokes of 128 samples at 64x64 (Nyquist: pi 64 / 2 = 100.5 spokes): Pipe-Menon gridding
    within 35 dB of the phantom (37.1 dB measured; what is left is the disk-shaped k-space coverage:
    the corners are never sampled)."""
    n = 64
    x = _phantom(n)
    op = NonCartesianMRI(radial((n, n), 101), (n, n))
    gridded = op.gridding(op(x))
    psnr = 10 * math.log10(float(x.abs().max()) ** 2 / float((gridded.abs() - x.abs()).pow(2).mean()))
    assert psnr > 35, psnr


def test_density_weights_keep_a_smooth_images_scale_and_follow_the_radial_ramp():
    n = 48
    coords = radial((n, n), 80, angles="uniform")
    weights = density_compensation(coords, (n, n))
    assert weights.shape == (coords.shape[0],) and bool((weights > 0).all())
    radius = torch.linalg.vector_norm(coords, dim=1)
    middle = (radius > 0.5) & (radius < 2.5)
    ratio = weights[middle].double() / radius[middle]
    assert float(ratio.std() / ratio.mean()) < 0.1  # w grows like |k| on a radial trajectory
    rows = torch.arange(n, dtype=torch.float64) - n // 2
    blob = torch.exp(-(rows[:, None] ** 2 + rows[None, :] ** 2) / 50.0).to(torch.complex128)[None, None]
    op = NonCartesianMRI(coords, (n, n), density=weights)
    assert abs(float(op.gridding(op(blob)).real.max()) - 1.0) < 0.02


def test_coil_maps_are_estimated_from_the_kspace_centre():
    n = 48
    maps = simulated_maps(4, (n, n))[None].to(torch.complex64)
    x = _phantom(n).to(torch.complex64)
    op = NonCartesianMRI(radial((n, n), 40), (n, n), maps)
    estimate = noncartesian_espirit_maps(op(x), op.coords, (n, n))
    inside = (x.abs()[0, 0] > 0.05)
    # the maps are known up to one phase per pixel: compare |<S_est, S>| over the coils
    overlap = torch.abs(torch.sum(estimate[0].conj() * maps[0], dim=0))[inside]
    assert float(overlap.mean()) > 0.95


def test_trajectories_are_data_with_their_acceleration():
    t = Trajectory("radial", spokes=48)
    assert t.angles == "golden" and t.make((256, 256)).shape == (48 * 512, 2)
    assert t.acceleration((256, 256)) == pytest.approx(math.pi * 256 / 96)
    assert Trajectory.from_dict(t.to_dict()) == t
    s = Trajectory("spiral", interleaves=16, undersampling=4.0)
    assert s.acceleration((256, 256)) > 3 and Trajectory.from_dict(s.to_dict()) == s
    coords = s.make((256, 256))
    assert float(coords.min()) >= -math.pi and float(coords.max()) < math.pi
    assert samples_acceleration((256, 256), 8192) == 8.0
    uniform = Trajectory("radial", spokes=4, angles="uniform", readout=8).make((8, 8)).reshape(4, 8, 2)
    angles = torch.atan2(uniform[:, 0, 1], uniform[:, 0, 0])  # the first sample of each spoke, at -pi
    torch.testing.assert_close(torch.remainder(angles - angles[0], math.pi), torch.arange(4, dtype=torch.float64) * math.pi / 4)
    for bad, match in (({"kind": "rosette"}, "unknown trajectory"), ({"kind": "radial"}, "spokes"),
                       ({"kind": "radial", "spokes": 0}, "spokes"), ({"kind": "radial", "spokes": 8, "interleaves": 2}, "interleaves"),
                       ({"kind": "spiral", "interleaves": 4, "undersampling": -1}, "undersampling"),
                       ({"kind": "radial", "spokes": 8, "angles": "random"}, "angles")):
        with pytest.raises(InputError, match=match):
            Trajectory.from_dict(bad)


def test_bad_input_is_refused_with_the_operators_name():
    coords = radial((8, 8), 4)
    with pytest.raises(GeometryError, match=r"NonCartesianMRI: coordinates must lie in \[-pi, pi\)"):
        NonCartesianMRI(coords * 2, (8, 8))
    with pytest.raises(GeometryError, match=r"shape \(\.\.\., K, 2\)"):
        NonCartesianMRI(coords[:, :1], (8, 8))
    with pytest.raises(GeometryError, match="NaN"):
        NonCartesianMRI(torch.full((3, 2), float("nan"), dtype=torch.float64), (8, 8))
    with pytest.raises(GeometryError, match="coil maps must be a tensor"):
        NonCartesianMRI(coords, (8, 8), torch.ones(1, 2, 8, 6, dtype=torch.complex64))
    with pytest.raises(GeometryError, match="density weights"):
        NonCartesianMRI(coords, (8, 8), density=torch.ones(5))
    with pytest.raises(GeometryError, match="backend"):
        NonCartesianMRI(coords, (8, 8), backend="cufinufft")
    op = NonCartesianMRI(coords, (8, 8))
    with pytest.raises(ShapeError, match=r"NonCartesianMRI.adjoint: expected a tensor of shape \(B, 1, 64\)"):
        op.adjoint(torch.zeros(1, 1, 63, dtype=torch.complex64))  # k-space and trajectory lengths disagree
    with pytest.raises(ShapeError, match="NonCartesianMRI.forward"):
        op(torch.zeros(1, 1, 8, 8))  # real image


def test_without_finufft_the_package_imports_and_the_torch_backend_takes_over(monkeypatch):
    monkeypatch.setitem(sys.modules, "finufft", None)
    coords = radial((N, N), 8)
    op = NonCartesianMRI(coords, (N, N))
    x = _image()
    assert op.backend_for(x) == "torch"
    assert torch.linalg.vector_norm(op(x)[:, 0] - explicit_dft(x[:, 0], coords)) < 1e-4 * torch.linalg.vector_norm(op(x))
    with pytest.raises(MissingResourceError, match="finufft NUFFT backend is not installed"):
        NonCartesianMRI(coords, (N, N), backend="finufft")
