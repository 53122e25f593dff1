"""The operator algebra, norms and the shared conjugate-gradient solver."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import ShapeError
from medrecon.operators import (
    CTProjector,
    IdentityOperator,
    ParallelBeamGeometry,
    SingleCoilMRI,
    conjugate_gradient,
    power_iteration,
)


def test_norm_sq_of_known_operators():
    assert (3.0 * IdentityOperator((1, 4, 4))).norm_sq() == pytest.approx(9.0, rel=1e-6)
    op = CTProjector(ParallelBeamGeometry.sparse_view(16, 6))
    dense = op.matrix(dtype=torch.float64).mat.to_dense()
    largest = float(torch.linalg.eigvalsh(dense.T @ dense).max())
    assert op.norm_sq(n_iter=200) == pytest.approx(largest, rel=1e-3)
    assert op.norm_sq() is op.norm_sq()  # cached


def test_power_iteration_leaves_global_rng_alone():
    state = torch.get_rng_state()
    power_iteration(IdentityOperator((1, 3, 3)), n_iter=3)
    assert torch.equal(state, torch.get_rng_state())


def test_composition_checks_shapes_and_kinds():
    ct = CTProjector(ParallelBeamGeometry.sparse_view(8, 3))
    mri = SingleCoilMRI(torch.ones(8, 8))
    with pytest.raises(ShapeError, match=r"cannot compose CTProjector @ SingleCoilMRI"):
        ct @ mri
    with pytest.raises(ShapeError, match="cannot add"):
        ct + IdentityOperator((1, 8, 8))
    with pytest.raises(ShapeError, match="complex scalar"):
        1j * ct
    assert (ct.H @ ct).in_shape == ct.in_shape
    assert ct.H.H is ct


def test_scaled_pinv_and_algebra_values():
    ct = CTProjector(ParallelBeamGeometry.sparse_view(16, 30))
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close((2 * ct - ct)(x), ct(x))
    torch.testing.assert_close((-ct)(x), -ct(x))
    torch.testing.assert_close((2.0 * ct).pinv(2.0 * ct(x)), ct.pinv(ct(x)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_conjugate_gradient_solves_hermitian_systems_per_item(dtype):
    gen = torch.Generator().manual_seed(0)
    n = 12
    a = torch.randn(3, n, n, generator=gen, dtype=torch.float64).to(dtype)
    if dtype.is_complex:
        a = a + 1j * torch.randn(3, n, n, generator=gen, dtype=torch.float64)
    m = a.conj().transpose(1, 2) @ a + 0.5 * torch.eye(n, dtype=dtype)
    b = torch.randn(3, n, generator=gen, dtype=torch.float64).to(dtype)
    x = conjugate_gradient(lambda v: torch.einsum("bij,bj->bi", m, v), b, n_iter=n + 5)
    torch.testing.assert_close(x, torch.linalg.solve(m, b), rtol=1e-8, atol=1e-8)
    # each item is its own system: solving one alone gives the same answer
    x1 = conjugate_gradient(lambda v: torch.einsum("bij,bj->bi", m[1:2], v), b[1:2], n_iter=n + 5)
    torch.testing.assert_close(x1, x[1:2])


def test_conjugate_gradient_stops_early_with_tolerance_and_handles_zero_rhs():
    calls = []

    def identity(v):
        calls.append(1)
        return v

    b = torch.stack([torch.ones(4), torch.zeros(4)])
    x = conjugate_gradient(identity, b, n_iter=50, tol=1e-10)
    torch.testing.assert_close(x, b)
    assert len(calls) <= 2


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_conjugate_gradient_stays_put_after_converging_on_a_singular_system(dtype):
    # Single-coil MRI: A^H A = F^H M F is a projector, so CG converges in one step; later steps
    # divide round-off by round-off unless converged items are frozen.
    mask = torch.zeros(16, 16)
    mask[:, ::3] = 1
    op = SingleCoilMRI(mask)
    x = torch.randn(2, 1, 16, 16, dtype=dtype, generator=torch.Generator().manual_seed(0))
    y = op(x)
    exact = op.pinv(y)
    for n_iter in (1, 3, 50):
        torch.testing.assert_close(conjugate_gradient(op.normal, op.adjoint(y), n_iter=n_iter), exact)


def test_cg_on_a_sampling_projector_from_a_large_start_stays_finite_and_exact():
    # DDS's data consistency on single-coil MRI: A^H A = F^H M F is a projector (eigenvalues 0 and 1)
    # and the start (a noisy diffusion state) is much larger than the right-hand side. The solution
    # reachable from x0 is x0 + A^H (y - A x0) after one step, and later steps must not move it.
    from medrecon.operators import SingleCoilMRI
    from medrecon.operators.cg import conjugate_gradient

    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(32, 32, generator=g) < 0.3).float()
    op = SingleCoilMRI(mask)
    x_true = torch.rand(2, 1, 32, 32, generator=g).to(torch.complex64)
    y = op(x_true)
    x0 = 10 * torch.randn(2, 1, 32, 32, generator=g, dtype=torch.complex64)
    expected = x0 + op.adjoint(y - op(x0))
    for n_iter in (1, 5, 50):
        out = conjugate_gradient(op.normal, op.adjoint(y), x0, n_iter=n_iter)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
