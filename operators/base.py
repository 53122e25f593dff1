"""The linear-operator contract every physics model of medrecon follows.

A :class:`LinearOperator` maps a batch of items ``x`` of shape ``(B, *in_shape)`` to a batch of
measurements ``y`` of shape ``(B, *out_shape)``; B is a batch of slices and may be anything (unless
the operator carries per-item data such as per-slice coil maps, in which case B must match it).
Operators are ``torch.nn.Module`` objects: ``op(x)`` is the forward model.

Contract
--------
- ``forward(x)``, ``adjoint(y)``, ``normal(x) = A^H A x`` and ``pinv(y)`` keep the input's device
  and dtype (float32/float64 for real operators, complex64/complex128 for complex ones);
- every call checks the trailing shape and the kind of dtype and raises :class:`ShapeError` naming
  the operator, what it expected and what it got;
- the adjoint is exact (matched) unless ``exact_adjoint`` is False;
- every method is differentiable with autograd;
- operators compose: ``A @ B``, ``A.H``, ``2.0 * A``, ``A + B``, ``A - B``, ``-A``.

``norm_sq()`` is ``||A||^2``, the largest eigenvalue of ``A^H A``, from a power iteration done once
and cached on the operator: data-consistency weights are stated relative to it.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from medrecon.errors import ShapeError, positive_int

from .cg import conjugate_gradient

REAL_DTYPES = (torch.float32, torch.float64)
COMPLEX_DTYPES = (torch.complex64, torch.complex128)


def complex_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision (float32 -> complex64, float64 -> complex128)."""
    return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, dtype)


def real_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (complex64 -> float32, complex128 -> float64)."""
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


class LinearOperator(nn.Module, metaclass=ABCMeta):
    """Base class: a batched linear map ``(B, *in_shape) -> (B, *out_shape)``.

    Subclasses implement ``_forward`` and ``_adjoint`` (and may override ``_normal`` and ``pinv``);
    the public methods do the checking. ``in_complex``/``out_complex`` say whether the input and
    output are complex tensors. ``batch_size`` is None when any batch size is accepted, else the
    batch size the operator's per-item data (coil maps, say) fixes.
    """

    exact_adjoint: bool = True

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        *,
        in_complex: bool = False,
        out_complex: bool = False,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.in_complex = bool(in_complex)
        self.out_complex = bool(out_complex)
        self.batch_size = batch_size
        self._norm_sq: float | None = None

    # ----------------------------------------------------------------- checks
    @property
    def name(self) -> str:
        return type(self).__name__

    def _check(self, t: torch.Tensor, shape: tuple, is_complex: bool, what: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise ShapeError(f"{self.name}.{what}: expected a torch.Tensor, got {type(t).__name__}")
        expected = f"(B, {', '.join(str(s) for s in shape)})"
        if t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            raise ShapeError(
                f"{self.name}.{what}: expected a tensor of shape {expected}, got {tuple(t.shape)}"
            )
        if self.batch_size is not None and t.shape[0] != self.batch_size:
            raise ShapeError(
                f"{self.name}.{what}: this operator holds per-item data for a batch of "
                f"{self.batch_size}, got a batch of {t.shape[0]} (use op.batch_slice(...) for a chunk)"
            )
        allowed = COMPLEX_DTYPES if is_complex else REAL_DTYPES
        if t.dtype not in allowed:
            kinds = "complex64 or complex128" if is_complex else "float32 or float64"
            hint = ""
            if is_complex and t.dtype in REAL_DTYPES:
                hint = f" (convert a real image with x.to({complex_dtype_of(t.dtype)}))"
            raise ShapeError(f"{self.name}.{what}: expected dtype {kinds}, got {t.dtype}{hint}")

    # ---------------------------------------------------------- public methods
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = A x``: ``(B, *in_shape) -> (B, *out_shape)``."""
        self._check(x, self.in_shape, self.in_complex, "forward")
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^H y``: ``(B, *out_shape) -> (B, *in_shape)``."""
        self._check(y, self.out_shape, self.out_complex, "adjoint")
        return self._adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``: ``(B, *in_shape) -> (B, *in_shape)``."""
        self._check(x, self.in_shape, self.in_complex, "normal")
        return self._normal(x)

    def pinv(self, y: torch.Tensor, *, n_iter: int = 30) -> torch.Tensor:
        """A pseudo-inverse of ``y``: here ``n_iter`` conjugate-gradient steps on ``A^H A x = A^H y``.

        Operators with a direct inverse (FBP for CT) override this.
        """
        self._check(y, self.out_shape, self.out_complex, "pinv")
        rhs = self._adjoint(y)
        return conjugate_gradient(self._normal, rhs, n_iter=n_iter)

    @property
    def H(self) -> LinearOperator:
        """The adjoint operator ``A^H`` as an operator of its own."""
        return AdjointOperator(self)

    def batch_slice(self, index: slice) -> LinearOperator:
        """The operator for items ``index`` of the batch; itself when it holds no per-item data."""
        return self

    # ---------------------------------------------------------- subclass hooks
    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward model on a checked input."""

    @abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint on a checked input."""

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))

    # ---------------------------------------------------------------- algebra
    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return ComposedOperator(self, other)

    def __mul__(self, scalar) -> LinearOperator:
        if isinstance(scalar, (int, float, complex)) and not isinstance(scalar, bool):
            return ScaledOperator(self, scalar)
        return NotImplemented

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return ScaledOperator(self, -1.0)

    def __add__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return SumOperator(self, other)

    def __sub__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return SumOperator(self, ScaledOperator(other, -1.0))

    # ------------------------------------------------------------------ norms
    def norm_sq(self, *, n_iter: int = 50, device=None, dtype=None) -> float:
        """``||A||^2``: the largest eigenvalue of ``A^H A``, by power iteration, cached.

        The start vector comes from a fixed private generator, so the value is reproducible and
        global RNG state is untouched. With per-item data the largest value over the batch is kept.
        """
        if self._norm_sq is None:
            self._norm_sq = power_iteration(self, n_iter=n_iter, device=device, dtype=dtype)
        return self._norm_sq

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, out_shape={self.out_shape}"


def power_iteration(op: LinearOperator, *, n_iter: int = 50, device=None, dtype=None) -> float:
    """Largest eigenvalue of ``op.normal`` by ``n_iter`` power-iteration steps (float)."""
    device = device if device is not None else _module_device(op)
    real = dtype if dtype is not None else torch.float32
    real = real_dtype_of(real)
    batch = op.batch_size or 1
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((batch, *op.in_shape), generator=generator, dtype=torch.float64)
    if op.in_complex:
        x = torch.complex(x, torch.randn(x.shape, generator=generator, dtype=torch.float64))
        x = x.to(complex_dtype_of(real))
    else:
        x = x.to(real)
    x = x.to(device)
    dims = tuple(range(1, x.ndim))
    eig = torch.zeros(batch, device=device)
    with torch.no_grad():
        for _ in range(n_iter):
            x = x / torch.linalg.vector_norm(x, dim=dims, keepdim=True).clamp_min(1e-30)
            ax = op.normal(x)
            eig = torch.sum((x.conj() * ax).real, dim=dims)
            x = ax
    return float(eig.max())


def _module_device(op: nn.Module) -> torch.device:
    for t in list(op.parameters()) + list(op.buffers()):
        return t.device
    return torch.device("cpu")


class AdjointOperator(LinearOperator):
    """``A^H`` of an operator: forward and adjoint swapped."""

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(
            op.out_shape,
            op.in_shape,
            in_complex=op.out_complex,
            out_complex=op.in_complex,
            batch_size=op.batch_size,
        )
        self.op = op
        self.exact_adjoint = op.exact_adjoint

    @property
    def name(self) -> str:
        return f"{self.op.name}.H"

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    @property
    def H(self) -> LinearOperator:
        return self.op

    def batch_slice(self, index: slice) -> LinearOperator:
        return AdjointOperator(self.op.batch_slice(index))


class ComposedOperator(LinearOperator):
    """``A @ B``: apply B, then A."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if inner.out_shape != outer.in_shape or inner.out_complex != outer.in_complex:
            raise ShapeError(
                f"cannot compose {outer.name} @ {inner.name}: {inner.name} gives items of shape "
                f"{inner.out_shape} ({'complex' if inner.out_complex else 'real'}), {outer.name} takes "
                f"{outer.in_shape} ({'complex' if outer.in_complex else 'real'})"
            )
        batch = _common_batch(outer, inner)
        super().__init__(
            inner.in_shape,
            outer.out_shape,
            in_complex=inner.in_complex,
            out_complex=outer.out_complex,
            batch_size=batch,
        )
        self.outer = outer
        self.inner = inner
        self.exact_adjoint = outer.exact_adjoint and inner.exact_adjoint

    @property
    def name(self) -> str:
        return f"({self.outer.name} @ {self.inner.name})"

    def _forward(self, x):
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y):
        return self.inner._adjoint(self.outer._adjoint(y))

    def batch_slice(self, index: slice) -> LinearOperator:
        return ComposedOperator(self.outer.batch_slice(index), self.inner.batch_slice(index))


class ScaledOperator(LinearOperator):
    """``c A`` for a real or complex scalar c (the adjoint uses conj(c))."""

    def __init__(self, op: LinearOperator, scalar) -> None:
        if isinstance(scalar, complex) and not (op.in_complex or op.out_complex):
            raise ShapeError(f"a complex scalar cannot scale the real operator {op.name}")
        super().__init__(
            op.in_shape,
            op.out_shape,
            in_complex=op.in_complex,
            out_complex=op.out_complex,
            batch_size=op.batch_size,
        )
        self.op = op
        self.scalar = scalar
        self.exact_adjoint = op.exact_adjoint

    @property
    def name(self) -> str:
        return f"{self.scalar!r} * {self.op.name}"

    def _forward(self, x):
        return self.scalar * self.op._forward(x)

    def _adjoint(self, y):
        c = self.scalar.conjugate() if isinstance(self.scalar, complex) else self.scalar
        return c * self.op._adjoint(y)

    def _normal(self, x):
        return (abs(self.scalar) ** 2) * self.op._normal(x)

    def pinv(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(y, self.out_shape, self.out_complex, "pinv")
        return self.op.pinv(y, **kwargs) / self.scalar

    def batch_slice(self, index: slice) -> LinearOperator:
        return ScaledOperator(self.op.batch_slice(index), self.scalar)


class SumOperator(LinearOperator):
    """``A + B`` of two operators with the same input and output shapes."""

    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        if (a.in_shape, a.out_shape, a.in_complex, a.out_complex) != (
            b.in_shape,
            b.out_shape,
            b.in_complex,
            b.out_complex,
        ):
            raise ShapeError(
                f"cannot add {a.name} and {b.name}: shapes {a.in_shape} -> {a.out_shape} and "
                f"{b.in_shape} -> {b.out_shape} (or their real/complex kinds) differ"
            )
        super().__init__(
            a.in_shape,
            a.out_shape,
            in_complex=a.in_complex,
            out_complex=a.out_complex,
            batch_size=_common_batch(a, b),
        )
        self.a = a
        self.b = b
        self.exact_adjoint = a.exact_adjoint and b.exact_adjoint

    @property
    def name(self) -> str:
        return f"({self.a.name} + {self.b.name})"

    def _forward(self, x):
        return self.a._forward(x) + self.b._forward(x)

    def _adjoint(self, y):
        return self.a._adjoint(y) + self.b._adjoint(y)

    def batch_slice(self, index: slice) -> LinearOperator:
        return SumOperator(self.a.batch_slice(index), self.b.batch_slice(index))


class IdentityOperator(LinearOperator):
    """``I`` on items of a given shape (real or complex)."""

    def __init__(self, shape: Sequence[int], *, complex: bool = False) -> None:
        super().__init__(shape, shape, in_complex=complex, out_complex=complex)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y

    def pinv(self, y, **kwargs):
        self._check(y, self.out_shape, self.out_complex, "pinv")
        return y


class RealImageEmbedding(LinearOperator):
    """``x -> x e^{i phi}``: real images ``(B, *shape)`` as complex ones with a known phase.

    Composed in front of an MR operator (``MultiCoilMRI(...) @ RealImageEmbedding(...)``) it
    restricts the unknowns to a real image times the phase ``phi`` (radians; None for zero phase,
    else a tensor ``(B, *shape)`` or broadcastable to it, per item), which halves the unknowns of a
    Cartesian MR problem. The adjoint is ``Re(e^{-i phi} y)``: exact for the real inner product on
    the input side.
    """

    def __init__(self, shape: Sequence[int], phase: torch.Tensor | None = None) -> None:
        batch = None
        if phase is not None:
            phase = torch.as_tensor(phase)
            if phase.is_complex():
                raise ShapeError("RealImageEmbedding: phase must be real (radians)")
            if phase.ndim == len(tuple(shape)) + 1 and phase.shape[0] > 1:
                batch = int(phase.shape[0])
        super().__init__(shape, shape, in_complex=False, out_complex=True, batch_size=batch)
        self.register_buffer("phase", None if phase is None else phase.detach().clone(), persistent=False)

    def _rotation(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.phase is None:
            return None
        return torch.exp(1j * self.phase.to(device=like.device, dtype=like.real.dtype))

    def _forward(self, x):
        z = x.to(complex_dtype_of(x.dtype))
        rotation = self._rotation(x)
        return z if rotation is None else z * rotation

    def _adjoint(self, y):
        rotation = self._rotation(y)
        return (y if rotation is None else y * rotation.conj()).real.contiguous()

    def _normal(self, x):
        return x

    def batch_slice(self, index: slice) -> LinearOperator:
        if self.batch_size is None:
            return self
        return RealImageEmbedding(self.in_shape, self.phase[index])


class SliceChunkedOperator(LinearOperator):
    """``op`` applied to a batch ``chunk`` items at a time (``op.batch_slice`` for each chunk).

    The same map as ``op`` on the whole batch, in bounded memory: a whole volume passes through an
    operator whose intermediate tensors are large (multi-coil k-space) or which holds per-slice
    data, one chunk of slices after another. ``norm_sq`` is the largest of the chunks' values.
    """

    def __init__(self, op: LinearOperator, chunk: int) -> None:
        chunk = positive_int(chunk, "SliceChunkedOperator: chunk", ShapeError)
        super().__init__(op.in_shape, op.out_shape, in_complex=op.in_complex, out_complex=op.out_complex,
                         batch_size=op.batch_size)
        self.op = op
        self.chunk = chunk

    @property
    def name(self) -> str:
        return f"SliceChunked({self.op.name})"

    def _chunks(self, n: int):
        return [slice(a, min(a + self.chunk, n)) for a in range(0, n, self.chunk)]

    def _map(self, t: torch.Tensor, method: str, **kwargs) -> torch.Tensor:
        n = t.shape[0]
        if n <= self.chunk:
            return getattr(self.op, method)(t, **kwargs)
        return torch.cat([getattr(self.op.batch_slice(s), method)(t[s], **kwargs) for s in self._chunks(n)])

    def _forward(self, x):
        return self._map(x, "forward")

    def _adjoint(self, y):
        return self._map(y, "adjoint")

    def _normal(self, x):
        return self._map(x, "normal")

    def pinv(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(y, self.out_shape, self.out_complex, "pinv")
        return self._map(y, "pinv", **kwargs)

    def norm_sq(self, *, n_iter: int = 50, device=None, dtype=None) -> float:
        if self._norm_sq is None:
            n = self.op.batch_size
            parts = [self.op] if n is None else [self.op.batch_slice(s) for s in self._chunks(n)]
            self._norm_sq = max(part.norm_sq(n_iter=n_iter, device=device, dtype=dtype) for part in parts)
        return self._norm_sq

    def batch_slice(self, index: slice) -> LinearOperator:
        return self if self.batch_size is None else SliceChunkedOperator(self.op.batch_slice(index), self.chunk)


def _common_batch(a: LinearOperator, b: LinearOperator) -> int | None:
    if a.batch_size is not None and b.batch_size is not None and a.batch_size != b.batch_size:
        raise ShapeError(
            f"{a.name} holds data for a batch of {a.batch_size}, {b.name} for a batch of {b.batch_size}"
        )
    return a.batch_size if a.batch_size is not None else b.batch_size


__all__ = [
    "LinearOperator",
    "AdjointOperator",
    "ComposedOperator",
    "ScaledOperator",
    "SumOperator",
    "IdentityOperator",
    "RealImageEmbedding",
    "SliceChunkedOperator",
    "power_iteration",
    "complex_dtype_of",
    "real_dtype_of",
    "REAL_DTYPES",
    "COMPLEX_DTYPES",
]
