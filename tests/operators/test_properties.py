"""Property tests of every registered operator (DESIGN.md, Tests): adjoint, linearity, normal,
batch consistency, dtype/device preservation, autograd."""

from __future__ import annotations

import pytest
import torch

from .registry import CASES, batch_of, random_input


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a, b> = sum(conj(a) * b)`` (complex for complex tensors)."""
    return torch.sum(a.conj() * b) if a.is_complex() else torch.sum(a * b)


def _dtype(op, side: str, double: bool) -> torch.dtype:
    is_complex = op.in_complex if side == "in" else op.out_complex
    if is_complex:
        return torch.complex128 if double else torch.complex64
    return torch.float64 if double else torch.float32


@pytest.fixture(params=[c.param() for c in CASES])
def case(request):
    return request.param


def test_adjoint_is_matched(case):
    op = case.build()
    assert op.exact_adjoint
    gen = torch.Generator().manual_seed(1)
    b = batch_of(op)
    x = random_input(op, "in", b, _dtype(op, "in", False), gen)
    y = random_input(op, "out", b, _dtype(op, "out", False), gen)
    lhs = _inner(op(x), y)
    rhs = _inner(x, op.adjoint(y))
    if op.in_complex != op.out_complex:
        # A map between a real and a complex space is only real-linear: its adjoint is the one of
        # the real inner product Re<a, b>.
        lhs, rhs = lhs.real, rhs.real
    error = (lhs - rhs).abs() / (op.norm_sq() ** 0.5 * x.norm() * y.norm())
    assert error < 1e-5, f"normalised adjoint error {error:.2e}"


def test_linearity(case):
    op = case.build()
    gen = torch.Generator().manual_seed(2)
    b = batch_of(op)
    x1 = random_input(op, "in", b, _dtype(op, "in", False), gen)
    x2 = random_input(op, "in", b, _dtype(op, "in", False), gen)
    combined = op(0.7 * x1 - 1.3 * x2)
    separate = 0.7 * op(x1) - 1.3 * op(x2)
    assert torch.linalg.vector_norm(combined - separate) <= 1e-5 * torch.linalg.vector_norm(separate)


def test_normal_equals_adjoint_of_forward(case):
    op = case.build()
    gen = torch.Generator().manual_seed(3)
    x = random_input(op, "in", batch_of(op), _dtype(op, "in", False), gen)
    expected = op.adjoint(op(x))
    assert torch.linalg.vector_norm(op.normal(x) - expected) <= 1e-5 * torch.linalg.vector_norm(expected)


def test_batch_consistency(case):
    op = case.build()
    gen = torch.Generator().manual_seed(4)
    b = batch_of(op)
    x = random_input(op, "in", b, _dtype(op, "in", False), gen)
    y = random_input(op, "out", b, _dtype(op, "out", False), gen)
    fx, ay = op(x), op.adjoint(y)
    for i in range(b):
        item_op = op.batch_slice(slice(i, i + 1))
        torch.testing.assert_close(item_op(x[i : i + 1]), fx[i : i + 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(item_op.adjoint(y[i : i + 1]), ay[i : i + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("double", [False, True], ids=["single", "double"])
def test_dtype_and_device_are_kept(case, double):
    op = case.build()
    gen = torch.Generator().manual_seed(5)
    b = batch_of(op)
    x = random_input(op, "in", b, _dtype(op, "in", double), gen)
    y = random_input(op, "out", b, _dtype(op, "out", double), gen)
    for out, side in ((op(x), "out"), (op.adjoint(y), "in"), (op.normal(x), "in")):
        assert out.dtype == _dtype(op, side, double)
        assert out.device == x.device
        expected_shape = (b, *(op.out_shape if side == "out" else op.in_shape))
        assert tuple(out.shape) == expected_shape


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_is_kept(case):
    if case.float32_inside:
        pytest.skip("astra's CPU projector backend runs on host memory")
    op = case.build().to("cuda")
    gen = torch.Generator().manual_seed(6)
    x = random_input(op, "in", batch_of(op), _dtype(op, "in", False), gen)
    out_gpu = op(x.to("cuda"))
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), op(x), rtol=1e-4, atol=1e-4)


def test_gradcheck_in_double(case):
    op = case.build()
    gen = torch.Generator().manual_seed(7)
    b = min(batch_of(op), 3) if op.batch_size is None else op.batch_size
    x = random_input(op, "in", b, _dtype(op, "in", True), gen).requires_grad_()
    y = random_input(op, "out", b, _dtype(op, "out", True), gen).requires_grad_()
    # A linear map's finite differences are exact at any step; a large step keeps the float32
    # rounding of astra's own projectors small next to it.
    opts = dict(eps=0.5, atol=1e-3, rtol=1e-3) if case.float32_inside else dict(eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradcheck(op.forward, (x,), fast_mode=True, **opts)
    assert torch.autograd.gradcheck(op.adjoint, (y,), fast_mode=True, **opts)
