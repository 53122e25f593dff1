"""The contract every sampler of the registry keeps (medrecon.samplers.SAMPLERS), tested for each entry
without a test of its own: a new registry entry is held to it as soon as it is added.

The prior is analytic (:class:`~medrecon.priors.denoiser.GaussianDenoiser`: Tweedie is exact, the
posterior of a linear problem is known); latent-prior samplers get the untrained
:func:`~tests.support.tiny_latent_prior`, volume samplers (and a sampler's volume option) a volume of
slices. The runs use the sampler's presets (``presets.json``) at a few steps. Checks:

- the output has the images' shape, the data's dtype (real or complex, float32 or float64) and finite
  values, and no gradient leaks out (the prior's parameters stay without ``.grad``);
- a slice-wise sampler's item does not depend on the other items of its batch (two items together
  vs item 0 alone, same generator), and the pipeline's volume does not depend on its batch size;
- the same generators give the same result, other generators another one, other data another one;
  one generator per item is required;
- through :func:`medrecon.reconstruct` the prior is called as often as the registry says (NFE);
- noiseless data are fitted where the sampler promises it (:data:`FITS`), and the mean of many
  samples is the Gaussian posterior's mean where the sampler promises that (:data:`POSTERIOR`).

What only one sampler does (its options, its refusals, its own algebra) is tested in that
sampler's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.denoiser import GaussianDenoiser
from medrecon.reconstruct import Problem, reconstruct
from medrecon.samplers import SAMPLERS
from medrecon.samplers.presets import sampler_settings
from tests import support

STEPS = 4


@dataclass(frozen=True)
class Case:
    """One way to run a sampler: slice by slice, or on a volume (``volume``)."""

    name: str
    volume: bool

    @property
    def spec(self):
        return SAMPLERS[self.name]

    @property
    def options(self) -> dict:
        # a sampler whose volume prior is an option (DDS-3D) takes it here; one that always couples
        # the volume (DiffusionMBIR) runs on its presets
        return {"volume_prior": "tv-z"} if self.volume and self.spec.volume == "optional" else {}

    @property
    def slices(self) -> int:
        return 4 if self.volume else 2

    def __str__(self) -> str:
        return self.name + ("-volume" if self.volume and self.spec.volume == "optional" else "")


CASES = [Case(name, False) for name, spec in SAMPLERS.items() if spec.slice_wise]
CASES += [Case(name, True) for name, spec in SAMPLERS.items() if spec.takes_volume_prior]
SLICE_WISE = [c for c in CASES if not c.volume]


def cases(chosen=CASES):
    return pytest.mark.parametrize("case", chosen, ids=str)


PROBLEMS = ("ct", "mr")

FITS = {"dds": ("ct", "mr"), "score_sde": ("mr",)}
"""Samplers whose result fits noiseless data at their presets, and on which problems: DDS ends with
CG on the normal equations; score-SDE with the hard projection (exact where ``T`` is the FFT; its
CT form moves towards the data only)."""


@dataclass(frozen=True)
class PosteriorRun:
    """A run whose sample mean must be the analytic posterior's mean (within 0.2 of the prior mean's
    distance to it), every sample fitting the noiseless data: the problem (:func:`support.ct_posterior_problem`
    or :func:`support.mri_posterior_problem`), steps, option overrides and number of samples."""

    problem: str
    steps: int
    options: dict = field(default_factory=dict)
    samples: int = 64


POSTERIOR = {
    "dds": PosteriorRun("ct", 40, {"cg_iters": 30}),
    "score_sde": PosteriorRun("mr", 99, {"sigma_max": 5.0}),  # 100 geometric levels from 5 to 0.01
    # pixel-space consistency every 3rd step of the last two thirds, then latent solves
    "resample": PosteriorRun("ct", 24, {"consistency_every": 3, "pixel_cg_iters": 30, "latent_iters": 20, "latent_lr": 2e-2},
                             samples=48),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one thread is faster


def problem_of(kind: str, n: int, dtype: torch.dtype = torch.float64) -> Problem:
    """8x8 images (the tiny latent prior's size): CT with 12 parallel views, or single-coil MRI (``A^H A``
    a projector; underdetermined); noiseless, in ``dtype`` (its complex counterpart for MR).

    The CT matrix is well conditioned (smallest singular value 8e-3 of the largest). On worse ones
    (3 to 4 views of 8x8) the presets' 20 CG iterations stop where truncated CG is very sensitive to
    its input: a 1e-13 relative change of the data moved DDS's result by 1e-4, and the different
    rounding of batched and single CT products by 1e-3, which no tolerance tells apart from items
    that interact. Here that rounding moves an item by about 1e-8 (1e-6 with the latent prior's
    float32 network), while items that interacted would differ by the image's own scale."""
    if kind == "ct":
        problem, _ = support.small_ct_problem(n=n, size=8, views=12)
        return Problem(problem.op, problem.y.to(dtype), "CT", noisy=False)
    problem, _ = support.small_single_coil_problem(n=n, size=8)
    return Problem(problem.op, problem.y.to(torch.complex128 if dtype == torch.float64 else torch.complex64), "MR", noisy=False)


def model_of(case: Case, modality: str):
    """What the sampler function takes: the analytic denoiser, or the tiny latent prior."""
    if case.spec.prior == "latent":
        return support.tiny_latent_prior(modality).latent
    return GaussianDenoiser(support.GAUSS_MEAN, support.GAUSS_STD)


def prior_of(case: Case, modality: str):
    """What the pipeline takes: the analytic prior, or the tiny latent prior."""
    return support.tiny_latent_prior(modality) if case.spec.prior == "latent" else support.gaussian_prior(modality, 8)


def run(case: Case, model, problem: Problem, *, seed: int = 0, items: int | None = None, steps: int = STEPS, **overrides):
    """The sampler on the first ``items`` items of ``problem`` with its preset at ``steps`` steps."""
    y = problem.y if items is None else problem.y[:items]
    task = "ct-clean" if problem.modality == "CT" else "mr-clean"
    settings = sampler_settings(case.name, task, steps=steps, **{**case.options, **overrides})
    return case.spec(model, problem.op, y, sigmas=settings.sigmas(), generator=support.generators(y.shape[0], seed),
                     **settings.options)


def relative_residual(op, x, y) -> float:
    return float(torch.linalg.vector_norm(op(x) - y) / torch.linalg.vector_norm(y))


# ------------------------------------------------------------------------------ every sampler
@cases()
@pytest.mark.parametrize("kind", PROBLEMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_the_output_has_the_images_shape_the_datas_dtype_and_finite_values(case, kind, dtype):
    problem = problem_of(kind, case.slices, dtype)
    model = model_of(case, problem.modality)
    out = run(case, model, problem)
    assert out.shape == (case.slices, *problem.op.in_shape)
    assert out.dtype == problem.y.dtype  # the data's precision; complex images for complex k-space
    assert bool(torch.isfinite(out).all())
    assert not out.requires_grad and all(p.grad is None for p in model.parameters())  # gradients stayed inside


@cases(SLICE_WISE)
@pytest.mark.parametrize("kind", PROBLEMS)
def test_an_item_does_not_depend_on_the_other_items_of_its_batch(case, kind):
    problem = problem_of(kind, 2)
    model = model_of(case, problem.modality)
    both = run(case, model, problem)
    alone = run(case, model, problem, items=1)
    # float64 data: only the network of the latent prior computes in float32 (problem_of: the rounding)
    tolerance = 1e-4 if case.spec.prior == "latent" else 1e-6
    torch.testing.assert_close(alone, both[:1], rtol=tolerance, atol=tolerance)
    assert not torch.allclose(both[0], both[1], atol=1e-3)  # two items, two results: the comparison can fail


@cases()
def test_the_same_generators_give_the_same_result_and_others_another(case):
    problem = problem_of("ct", case.slices)
    model = model_of(case, problem.modality)
    first = run(case, model, problem, seed=0)
    torch.testing.assert_close(run(case, model, problem, seed=0), first, rtol=0, atol=0)
    assert float((run(case, model, problem, seed=1) - first).abs().max()) > 1e-3


@cases()
@pytest.mark.parametrize("kind", PROBLEMS)
def test_the_result_depends_on_the_data(case, kind):
    problem = problem_of(kind, case.slices)
    model = model_of(case, problem.modality)
    brighter = Problem(problem.op, 1.2 * problem.y, problem.modality, noisy=False)  # the data of 1.2 x the images
    assert float((run(case, model, brighter) - run(case, model, problem)).abs().max()) > 1e-3


@cases()
def test_one_generator_per_item_is_required(case):
    problem = problem_of("ct", case.slices)
    task = "ct-clean"
    settings = sampler_settings(case.name, task, steps=2, **case.options)
    with pytest.raises(InputError, match="one per batch item"):
        case.spec(model_of(case, "CT"), problem.op, problem.y, sigmas=settings.sigmas(),
                  generator=support.generators(case.slices - 1), **settings.options)


@cases()
@pytest.mark.parametrize("kind", PROBLEMS)
def test_the_pipeline_calls_the_prior_as_the_registry_says_whatever_the_batch_size(case, kind):
    problem = problem_of(kind, case.slices)
    prior = prior_of(case, problem.modality)
    kwargs = dict(sampler=case.name, steps=STEPS, options=case.options, seed=3, progress=False)
    whole = reconstruct(problem, prior, batch_size=case.slices, **kwargs)
    one_by_one = reconstruct(problem, prior, batch_size=1, **kwargs)
    assert whole.mean.shape == (case.slices, *problem.op.in_shape) and bool(torch.isfinite(whole.mean).all())
    assert whole.nfe == one_by_one.nfe == case.spec.nfe(STEPS)  # the prior's calls, counted
    assert whole.settings["sampler"] == case.name
    tolerance = 1e-4 if case.spec.prior == "latent" else 1e-6
    torch.testing.assert_close(one_by_one.mean, whole.mean, rtol=tolerance, atol=tolerance)


# ------------------------------------------------------------------------------ what a sampler promises
@pytest.mark.parametrize(("case", "kind"), [(c, k) for c in SLICE_WISE for k in FITS.get(c.name, ())], ids=str)
def test_noiseless_data_are_fitted(case, kind):
    problem = problem_of(kind, 2)
    out = run(case, model_of(case, problem.modality), problem)
    assert relative_residual(problem.op, out, problem.y) < 1e-3


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name in POSTERIOR])
def test_the_mean_of_the_samples_is_the_gaussian_posterior_mean(name):
    # Noiseless data: the posterior is the prior restricted to {A x = y}. The samples' spread in the
    # null space is below GAUSS_STD, so the sampling error of their mean is below GAUSS_STD / 8.
    setting = POSTERIOR[name]
    case = Case(name, False)
    op, y1, posterior_mean = support.ct_posterior_problem() if setting.problem == "ct" else support.mri_posterior_problem()
    problem = Problem(op, y1.repeat(setting.samples, *([1] * (y1.ndim - 1))), "CT" if setting.problem == "ct" else "MR", False)
    size = op.in_shape[-1]
    model = support.gaussian_latent_prior(size) if case.spec.prior == "latent" else GaussianDenoiser(support.GAUSS_MEAN, support.GAUSS_STD)
    out = run(case, model, problem, steps=setting.steps, **setting.options)
    assert out.shape == (setting.samples, *op.in_shape) and out.dtype == y1.dtype
    error, gap = support.rms(out.mean(0, keepdim=True) - posterior_mean), support.rms(support.GAUSS_MEAN - posterior_mean)
    assert error < 0.2 * gap, (error, gap)
    residuals = torch.linalg.vector_norm((op(out) - problem.y).reshape(setting.samples, -1), dim=1)
    assert float(residuals.max()) < 1e-3 * float(torch.linalg.vector_norm(y1))  # every sample fits the data
