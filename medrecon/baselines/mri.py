r"""Classical MRI reconstructions: the references every diffusion result is compared with.

Every function takes an MRI operator ``op`` (:class:`~medrecon.operators.mri.SingleCoilMRI`, the
SENSE operator :class:`~medrecon.operators.mri.MultiCoilMRI`, ``A = M F S``, or the non-Cartesian
:class:`~medrecon.operators.nufft.NonCartesianMRI`, ``A = NUFFT S``) and measured k-space ``y``
(complex, ``(B, 1, H, W)`` single-coil or ``(B, coils, H, W)`` multi-coil; ``(B, coils, K)``
non-Cartesian) and returns complex images ``(B, 1, H, W)`` on ``y``'s device and dtype. Data
outside the sampling mask are ignored, exactly as ``op.adjoint`` ignores them.

Methods and the objective each one minimises
--------------------------------------------
* :func:`zero_filled` -- ``A^H y`` (single-coil ``F^H M y``; SENSE: the coil combination
  ``sum_c conj(S_c) F^H M y_c`` with the operator's maps). No optimisation.
* :func:`gridding` -- non-Cartesian only: density-compensated gridding ``A^H (w y)`` with the
  operator's density weights ``w`` (Pipe-Menon; Jackson et al. 1991, Pipe and Menon 1999).
* :func:`cg_sense` -- CG-SENSE (Pruessmann et al. 2001): ``n_iter`` conjugate-gradient steps on the
  normal equations ``(A^H A + lam I) x = A^H y`` of ``0.5 ||A x - y||^2 + 0.5 lam ||x||^2``, starting
  from zero, with the project's one batched solver
  :func:`medrecon.operators.cg.conjugate_gradient`. Batched over slices, on ``y``'s device,
  differentiable with autograd.
* :func:`l1_wavelet` -- compressed sensing (Lustig et al. 2007):
  ``min_x 0.5 ||A x - y||^2 + lam ||W x||_1`` with ``W`` sigpy's 2-D discrete wavelet transform
  (PyWavelets, ``db4`` by default, all levels, zero-padded boundaries: ``W^H W = I`` but ``W`` is
  slightly redundant, and sigpy applies the l1 prox through ``W`` as if it were unitary, its
  standard approximation), solved as sigpy's :class:`sigpy.mri.app.L1WaveletRecon` does (FISTA, the
  accelerated proximal gradient method) for ``n_iter`` iterations from zero.
* :func:`total_variation` -- ``min_x 0.5 ||A x - y||^2 + lam ||G x||_1`` with ``G`` the 2-D forward
  finite differences (periodic boundary) and the anisotropic l1 norm (``sum |d_h x| + |d_v x|`` of
  complex moduli), solved as sigpy's :class:`sigpy.mri.app.TotalVariationRecon` does (primal-dual hybrid
  gradient, Chambolle-Pock) for ``n_iter`` iterations from zero.

The sigpy methods run on the CPU, one slice at a time (sigpy has no batch axis): ``y`` is moved to
numpy in its own precision, reconstructed, and moved back to its device and dtype. They are not
differentiable. Non-Cartesian operators are handed to sigpy's solvers as a sigpy ``Linop`` that
calls medrecon's own NUFFT operator (so the model is exactly the one the data were simulated or
reconstructed with, not sigpy's lower-accuracy NUFFT), density-weighted: the data term is
``0.5 ||W^1/2 (A x - y)||^2`` with ``W`` the operator's density weights, as sigpy's apps do with
their ``weights``. Without it ``A^H A`` of a radial trajectory has eigenvalues from about 0.4 to
78 (the centre is sampled 48 times over), so the solvers' steps ``1 / ||A||^2`` barely move the
high frequencies in 100-300 iterations, and every weight of a ``lam_rel`` grid that was tried on
a training patient was best at its smallest value. ``||A||^2`` below is then ``||W^1/2 A||^2``
(:meth:`~medrecon.operators.nufft.NonCartesianMRI.weighted_norm_sq`). CG-SENSE stays unweighted.
sigpy is handed the operator's own mask (as ``weights``: sigpy multiplies both the model and ``y``
by ``sqrt(weights)``, which for a 0/1 mask is the mask itself) and coil maps (an all-ones map for
single-coil), so sigpy's model is exactly ``op``: its centred orthonormal FFT is
our :func:`~medrecon.operators.mri.fft2c` (checked to machine precision in the tests).

Weight convention (docs/conventions.md, "Weights")
-----------------------------------------------
Regularisation weights are given relative to the operator's scale, ``||A||^2`` (the largest
eigenvalue of ``A^H A``, ``op.norm_sq()``, computed once per operator and cached on it):

* ``lam = l2_rel * op.norm_sq()`` for :func:`cg_sense`;
* ``lam = lam_rel * op.norm_sq()`` for :func:`l1_wavelet` and :func:`total_variation`.

The absolute ``lam`` also scales with the image intensity (the data term is quadratic in it, the
l1 terms linear), so a ``lam_rel`` is meaningful for images normalised to [0, 1] (the
normalisation of the priors' cards); for other intensity scales multiply it by the image scale.
For single-coil operators and SENSE with normalised maps (``sum_c |S_c|^2 = 1``, as ESPIRiT and
:func:`~medrecon.operators.coils.simulated_maps` give) ``||A||^2`` is 1 (to the power iteration's
accuracy), so ``lam == lam_rel`` there. An operator with per-slice maps has one ``norm_sq()``, the
largest over its batch, and every slice of the batch uses it.

Step sizes of the sigpy solvers are set here, not left to sigpy's default power iteration (which
draws its start vector from numpy's *global* random state, so results would change from run to run
and library code would touch global RNG state):

* FISTA (l1-wavelet): ``alpha = 1 / ||A||^2``, sigpy's own rule with our cached ``||A||^2``.
* PDHG (TV): ``sigma = 0.1`` and ``tau = 1 / (sigma (||A||^2 + 8))``. ``||A||^2 + 8`` bounds
  ``||K||^2`` of the stacked ``K = [A; G]`` (``||G||^2 <= 8`` for 2-D periodic finite differences),
  so ``sigma tau ||K||^2 <= 1`` and PDHG converges. sigpy's default ``sigma = 1`` is badly balanced
  for images in [0, 1]: on a 64 x 64 MR slice (8 coils at 4x, single coil at 4x, 4 coils at 2x;
  ``lam_rel`` 1e-4 and 3e-3) 100 iterations left a relative objective gap of 1.6e-2 to 1.4 and up
  to 20 dB of PSNR unrealised, where ``sigma = 0.1`` left 1.4e-4 to 9e-2 (at ``lam_rel = 3e-2``
  both are within 1 %). A fair TV reference needs a converged solver: at small ``lam_rel`` check
  the objective gap at your ``n_iter`` (it can need several hundred).

References
----------
* K. P. Pruessmann, M. Weiger, P. Boernert, P. Boesiger. Advances in sensitivity encoding with
  arbitrary k-space trajectories. Magn. Reson. Med. 46(4):638-651, 2001 (CG-SENSE).
* M. Lustig, D. Donoho, J. M. Pauly. Sparse MRI: the application of compressed sensing for rapid
  MR imaging. Magn. Reson. Med. 58(6):1182-1195, 2007 (l1-wavelet and TV regularised recon).
* K. T. Block, M. Uecker, J. Frahm. Undersampled radial MRI with multiple coils: iterative image
  reconstruction using a total variation constraint. Magn. Reson. Med. 57(6):1086-1098, 2007.
* A. Beck, M. Teboulle. A fast iterative shrinkage-thresholding algorithm. SIAM J. Imaging Sci.
  2(1):183-202, 2009 (FISTA); A. Chambolle, T. Pock. J. Math. Imaging Vis. 40:120-145, 2011 (PDHG).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pywt
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.operators.base import COMPLEX_DTYPES
from medrecon.operators.cg import conjugate_gradient
from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI
from medrecon.operators.nufft import NonCartesianMRI

__all__ = ["zero_filled", "gridding", "cg_sense", "l1_wavelet", "total_variation"]

_MRI_OPERATORS = (SingleCoilMRI, MultiCoilMRI, NonCartesianMRI)

#: ``||G||^2`` bound of 2-D periodic forward finite differences (sum over the two axes of 4).
_FINITE_DIFFERENCE_NORM_SQ_2D = 8.0
#: PDHG dual step of :func:`total_variation` (the primal step follows from it; module docstring).
_PDHG_SIGMA = 0.1


# --------------------------------------------------------------------------------------------------
# validation


def _check_op(op, who: str) -> None:
    if not isinstance(op, _MRI_OPERATORS):
        raise InputError(
            f"{who}: expected an MRI operator (SingleCoilMRI, MultiCoilMRI or NonCartesianMRI), "
            f"got {type(op).__name__}"
        )


def _check_y(op, y, who: str) -> None:
    """The operator's k-space contract, stated from the baseline's point of view."""
    if not isinstance(y, torch.Tensor):
        raise ShapeError(f"{who}: y must be a torch.Tensor of k-space, got {type(y).__name__}")
    if y.ndim != 1 + len(op.out_shape) or tuple(y.shape[1:]) != op.out_shape:
        raise ShapeError(
            f"{who}: {op.name} expects k-space y of shape (B, {', '.join(map(str, op.out_shape))}), "
            f"got {tuple(y.shape)}"
        )
    if y.dtype not in COMPLEX_DTYPES:
        raise ShapeError(f"{who}: y must be complex64 or complex128 k-space, got {y.dtype}")
    if y.shape[0] == 0:
        raise ShapeError(f"{who}: y holds an empty batch (shape {tuple(y.shape)})")
    if op.batch_size is not None and y.shape[0] != op.batch_size:
        raise ShapeError(
            f"{who}: {op.name} holds coil maps for a batch of {op.batch_size}, got k-space for a "
            f"batch of {y.shape[0]} (use op.batch_slice(...) for a chunk)"
        )


def _check_n_iter(n_iter, who: str) -> int:
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise InputError(f"{who}: n_iter must be an integer >= 1, got {n_iter!r}")
    return int(n_iter)


def _check_weight(value, name: str, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{who}: {name} must be a real number >= 0, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"{who}: {name} must be finite and >= 0, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# torch methods


def zero_filled(op: SingleCoilMRI | MultiCoilMRI, y: torch.Tensor) -> torch.Tensor:
    """Zero-filled reconstruction ``A^H y``: complex ``(B, 1, H, W)``.

    Single-coil: ``F^H (M y)``, which is also the minimum-norm least-squares solution (F unitary, M a
    projector). SENSE: the coil-combined adjoint ``sum_c conj(S_c) F^H (M y_c)`` with the operator's
    maps (with normalised maps, the matched-filter / Roemer combination of the aliased coil images).
    """
    _check_op(op, "zero_filled")
    _check_y(op, y, "zero_filled")
    return op.adjoint(y)


def gridding(op: NonCartesianMRI, y: torch.Tensor) -> torch.Tensor:
    """Density-compensated gridding ``A^H (w y)``: complex ``(B, 1, H, W)``, coil-combined with the
    operator's maps (or the single coil's image). ``w``: the operator's density weights
    (Pipe-Menon when it was given none), scaled so that the point-spread function peaks at 1."""
    if not isinstance(op, NonCartesianMRI):
        raise InputError(f"gridding: expected a non-Cartesian MRI operator (NonCartesianMRI), got {type(op).__name__}")
    _check_y(op, y, "gridding")
    return op.gridding(y)


def cg_sense(
    op: SingleCoilMRI | MultiCoilMRI,
    y: torch.Tensor,
    *,
    n_iter: int = 30,
    l2_rel: float = 0.0,
) -> torch.Tensor:
    """CG-SENSE (Pruessmann et al. 2001): ``n_iter`` CG steps on ``(A^H A + lam I) x = A^H y``.

    Minimises ``0.5 ||A x - y||^2 + 0.5 lam ||x||^2`` with ``lam = l2_rel * op.norm_sq()``
    (``l2_rel = 0``: plain least squares; CG from zero then converges to the minimum-norm solution).
    Every slice of the batch is its own system (the shared solver
    :func:`~medrecon.operators.cg.conjugate_gradient`), on ``y``'s device and dtype; a slice whose
    residual reaches round-off is frozen by the solver, so more iterations never hurt.

    Returns complex ``(B, 1, H, W)``.
    """
    who = "cg_sense"
    _check_op(op, who)
    n_iter = _check_n_iter(n_iter, who)
    l2_rel = _check_weight(l2_rel, "l2_rel", who)
    _check_y(op, y, who)
    rhs = op.adjoint(y)
    lam = l2_rel * op.norm_sq() if l2_rel > 0 else 0.0

    if lam > 0:

        def apply_matrix(x: torch.Tensor) -> torch.Tensor:
            return op.normal(x) + lam * x

    else:
        apply_matrix = op.normal
    return conjugate_gradient(apply_matrix, rhs, n_iter=n_iter)


# --------------------------------------------------------------------------------------------------
# sigpy methods


def _torch_linop(op: NonCartesianMRI, dtype):
    """A sigpy ``Linop`` for one slice of a non-Cartesian operator, density-weighted:
    ``W^1/2 A``, image ``(H, W)`` -> k-space ``(coils, K)``, computed by ``op`` (its adjoint by
    ``op.adjoint``) and the density weights ``W`` (module docstring)."""
    import sigpy as sp

    root_w = op.density.to(torch.float64).sqrt().to(op.coords.device)

    class _Linop(sp.linop.Linop):
        def __init__(self, adjoint: bool = False):
            self.adjoint_of = adjoint
            image, kspace = list(op.in_shape[1:]), list(op.out_shape)
            super().__init__(image if adjoint else kspace, kspace if adjoint else image)

        def _apply(self, input):
            t = torch.from_numpy(np.ascontiguousarray(input)).to(dtype)
            w = root_w.to(t.real.dtype)
            if self.adjoint_of:
                return op.adjoint(w * t[None]).squeeze(0).squeeze(0).numpy()
            return (w * op(t[None, None])).squeeze(0).numpy()

        def _adjoint_linop(self):
            return _Linop(not self.adjoint_of)

    return _Linop()


def _solver_norm_sq(op) -> float:
    """``||A||^2`` of the model the sigpy solvers see (density-weighted for non-Cartesian data)."""
    return op.weighted_norm_sq() if isinstance(op, NonCartesianMRI) else op.norm_sq()


def _sigpy_models(op, y: torch.Tensor):
    """For each slice, sigpy's ``(A, y)``: Cartesian ``A = Sense(maps, weights=mask)`` and
    ``y * mask`` (what sigpy's ``L1WaveletRecon`` / ``TotalVariationRecon`` build); non-Cartesian
    the density-weighted operator ``W^1/2 A`` (:func:`_torch_linop`) and ``W^1/2 y``."""
    import sigpy.mri

    if isinstance(op, NonCartesianMRI):
        ksp = y.detach().to("cpu")
        root_w = op.density.to(ksp.real.dtype).sqrt()
        for i in range(ksp.shape[0]):
            op_i = op.batch_slice(slice(i, i + 1)).to("cpu") if op.batch_size else op.to("cpu")
            yield _torch_linop(op_i, ksp.dtype), (root_w * ksp[i]).numpy()
        return
    ksp, maps, mask = _sigpy_problem(op, y)
    for i in range(ksp.shape[0]):
        maps_i = maps[i] if maps.shape[0] > 1 else maps[0]
        yield sigpy.mri.linop.Sense(maps_i, weights=mask), ksp[i] * mask


def _sigpy_problem(op, y: torch.Tensor):
    """numpy copies of what sigpy needs, in ``y``'s precision: k-space ``(B, C, H, W)``, maps
    ``(B or 1, C, H, W)`` and the 0/1 mask ``(H, W)``."""
    complex_np = np.complex64 if y.dtype == torch.complex64 else np.complex128
    real_np = np.float32 if y.dtype == torch.complex64 else np.float64
    ksp = y.detach().to("cpu").numpy().astype(complex_np, copy=False)
    mask = op.mask.detach().to("cpu").numpy().astype(real_np)
    if isinstance(op, MultiCoilMRI):
        maps = op.coil_maps.detach().to("cpu").numpy().astype(complex_np)
    else:
        maps = np.ones((1, 1) + tuple(mask.shape), dtype=complex_np)
    return ksp, maps, mask


def _run_sigpy(op, y: torch.Tensor, build) -> torch.Tensor:
    """Reconstruct each slice with ``build(A_i, y_i) -> sigpy App`` (:func:`_sigpy_models`); back to torch."""
    out = [np.asarray(build(a, y_i).run()) for a, y_i in _sigpy_models(op, y)]
    images = np.stack(out)[:, None]
    return torch.from_numpy(images).to(device=y.device, dtype=y.dtype)


def l1_wavelet(
    op: SingleCoilMRI | MultiCoilMRI,
    y: torch.Tensor,
    *,
    lam_rel: float,
    n_iter: int = 100,
    wavelet: str = "db4",
) -> torch.Tensor:
    """l1-wavelet compressed sensing (Lustig et al. 2007) through sigpy's ``L1WaveletRecon``.

    Minimises ``0.5 ||A x - y||^2 + lam ||W x||_1``, ``lam = lam_rel * op.norm_sq()`` (meaningful
    for images normalised to [0, 1]; see the module docstring), with ``n_iter`` FISTA iterations
    from zero at step ``1 / op.norm_sq()``. ``wavelet`` is a PyWavelets name (``"db4"``, ``"haar"``,
    ``"sym8"``, ...). Runs on the CPU one slice at a time; returns complex ``(B, 1, H, W)`` on
    ``y``'s device and dtype (not differentiable).
    """
    who = "l1_wavelet"
    _check_op(op, who)
    lam_rel = _check_weight(lam_rel, "lam_rel", who)
    n_iter = _check_n_iter(n_iter, who)

    if not isinstance(wavelet, str) or wavelet not in pywt.wavelist(kind="discrete"):
        raise InputError(
            f"{who}: wavelet must be the name of a discrete PyWavelets wavelet (e.g. 'db4', 'haar', "
            f"'sym8'; see pywt.wavelist(kind='discrete')), got {wavelet!r}"
        )
    _check_y(op, y, who)
    import sigpy as sp  # sigpy loads only when used

    norm_sq = _solver_norm_sq(op)
    lam = lam_rel * norm_sq

    def build(a, y_i):
        wavelets = sp.linop.Wavelet(a.ishape, wave_name=wavelet)
        proxg = sp.prox.UnitaryTransform(sp.prox.L1Reg(wavelets.oshape, lam), wavelets)
        return sp.app.LinearLeastSquares(a, y_i, proxg=proxg, max_iter=n_iter, alpha=1.0 / norm_sq, show_pbar=False)

    return _run_sigpy(op, y, build)


def total_variation(
    op: SingleCoilMRI | MultiCoilMRI,
    y: torch.Tensor,
    *,
    lam_rel: float,
    n_iter: int = 300,
) -> torch.Tensor:
    """Total-variation regularised reconstruction through sigpy's ``TotalVariationRecon``.

    Minimises ``0.5 ||A x - y||^2 + lam ||G x||_1`` (anisotropic TV, periodic finite differences),
    ``lam = lam_rel * op.norm_sq()`` (meaningful for images normalised to [0, 1]; see the module
    docstring), with ``n_iter`` primal-dual (PDHG) iterations from zero, ``sigma = 0.1`` and
    ``tau = 1 / (sigma (op.norm_sq() + 8))``. Runs on the CPU one slice at a time; returns complex
    ``(B, 1, H, W)`` on ``y``'s device and dtype (not differentiable).
    """
    who = "total_variation"
    _check_op(op, who)
    lam_rel = _check_weight(lam_rel, "lam_rel", who)
    n_iter = _check_n_iter(n_iter, who)
    _check_y(op, y, who)
    import sigpy as sp  # sigpy loads only when used

    norm_sq = _solver_norm_sq(op)
    lam = lam_rel * norm_sq
    tau = 1.0 / (_PDHG_SIGMA * (norm_sq + _FINITE_DIFFERENCE_NORM_SQ_2D))

    def build(a, y_i):
        differences = sp.linop.FiniteDifference(a.ishape)
        return sp.app.LinearLeastSquares(a, y_i, proxg=sp.prox.L1Reg(differences.oshape, lam), G=differences,
                                         max_iter=n_iter, sigma=_PDHG_SIGMA, tau=tau, show_pbar=False)

    return _run_sigpy(op, y, build)
