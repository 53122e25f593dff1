"""The classical MRI baselines on non-Cartesian (radial) data (medrecon.baselines.mri): every one runs,
the iterative ones beat gridding, and the sigpy solvers see exactly the density-weighted operator."""

from __future__ import annotations

import pytest
import torch

from medrecon.baselines import mri as bmr
from medrecon.errors import InputError
from tests.support import noncartesian_problem


def _error(recon, x):
    return float(torch.linalg.vector_norm(recon.abs() - x.abs()) / torch.linalg.vector_norm(x.abs()))


def test_every_baseline_runs_and_the_iterative_ones_beat_gridding():
    op, x, y = noncartesian_problem()
    errors = {
        "gridding": _error(bmr.gridding(op, y), x),
        "cg_sense": _error(bmr.cg_sense(op, y, n_iter=30), x),
        "l1_wavelet": _error(bmr.l1_wavelet(op, y, lam_rel=1e-4, n_iter=60), x),
        "total_variation": _error(bmr.total_variation(op, y, lam_rel=1e-3, n_iter=150), x),
    }
    assert errors["gridding"] < 0.5, errors
    for method in ("cg_sense", "l1_wavelet", "total_variation"):
        assert errors[method] < errors["gridding"], errors
    with pytest.raises(InputError, match="gridding: expected a non-Cartesian"):
        bmr.gridding(object(), y)
    with pytest.raises(InputError, match=r"expects k-space y of shape \(B, 4, 1024\)"):
        bmr.cg_sense(op, y[..., :-1])


def test_the_sigpy_solvers_see_exactly_the_density_weighted_operator():
    op, x, y = noncartesian_problem(size=16, spokes=8, coils=2)
    linop, y0 = next(bmr._sigpy_models(op, y))
    root_w = op.density.sqrt()
    torch.testing.assert_close(torch.from_numpy(y0), root_w * y[0])
    torch.testing.assert_close(torch.from_numpy(linop(x[0, 0].numpy())), root_w * op(x[:1])[0])
    torch.testing.assert_close(torch.from_numpy(linop.H(y0)), op.adjoint((root_w * torch.from_numpy(y0))[None])[0, 0])
    # the weighted model is well scaled: ||W^1/2 A||^2 near 1, where ||A||^2 of a radial trajectory is not
    assert 0.5 < op.weighted_norm_sq() < 2.0 < op.norm_sq()
