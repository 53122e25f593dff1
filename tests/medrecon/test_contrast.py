"""medrecon.contrast: the contrast-shift remappings and the training augmentation built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.contrast import (
    MONOTONE_SHIFTS,
    NON_MONOTONE_SHIFTS,
    SHIFTS,
    fold_tissue,
    invert_tissue,
    match_histogram,
    random_monotone_curve,
    random_remap,
    remap,
)
from medrecon.errors import InputError
from medrecon.priors.training import TrainingSlices
from medrecon.study import Study


def test_fixed_shifts():
    x = torch.tensor([0.0, 0.01, 0.25, 0.5, 1.0])
    torch.testing.assert_close(remap(x, "gamma0.5"), torch.tensor([0.0, 0.1, 0.5, 0.5**0.5, 1.0]))
    torch.testing.assert_close(remap(x, "gamma2"), x**2)
    inv = remap(x, "invert")
    assert inv[0] == 0 and inv[1] == 0  # background stays dark
    torch.testing.assert_close(inv[2:], 1 - x[2:])  # tissue inverted
    assert set(SHIFTS) == {"gamma0.5", "gamma2", "invert", "fold"} and torch.equal(remap(x, "none"), x)
    assert set(MONOTONE_SHIFTS) | set(NON_MONOTONE_SHIFTS) == set(SHIFTS)
    fold = remap(torch.tensor([0.0, 0.01, 0.15, 0.45, 0.7, 1.0]), "fold")  # mid-grey brightest, both ends darker
    torch.testing.assert_close(fold, torch.tensor([0.0, 0.0, 1 - 0.3 / 0.55, 1.0, 1 - 0.25 / 0.55, 0.0]))
    torch.testing.assert_close(fold_tissue(torch.tensor([0.45])), torch.tensor([1.0]))
    for bad in ("gammaX", "gamma-1", "solarise"):
        with pytest.raises(InputError, match="contrast shift"):
            remap(x, bad)


def test_random_remap_draws_only_from_its_generator():
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a = random_remap(x, torch.Generator().manual_seed(1))
    b = random_remap(x, torch.Generator().manual_seed(1))
    c = random_remap(x, torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(random_remap(x, torch.Generator().manual_seed(1), p_gamma=0.0, p_invert=0.0), x)
    inverted = random_remap(x, torch.Generator().manual_seed(1), p_gamma=0.0, p_invert=1.0)
    torch.testing.assert_close(inverted, invert_tissue(x))
    changed = (a != x).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 16  # some images keep their contrast, some change


def test_training_slices_with_contrast_augmentation_and_all_orientations():
    vol = torch.rand(10, 12, 14, generator=torch.Generator().manual_seed(3)) * 100
    iso = Study(vol, np.diag([1.0, 1.0, 1.05, 1.0]), "MR", name="iso")
    aniso = Study(vol, np.diag([1.0, 1.0, 3.0, 1.0]), "MR", name="aniso")
    axial = TrainingSlices.from_studies([iso], size=8, modality="MR")
    every = TrainingSlices.from_studies([iso, aniso], size=8, modality="MR", orientations="all",
                                        intensity={"p_invert": 0.5})
    assert len(axial) == 10 and len(every) == (10 + 12 + 14) + 10  # the anisotropic volume stays axial
    assert every.sources[0]["orientations"] == ["axial", "coronal", "sagittal"] and every.sources[1]["orientations"] == ["axial"]
    assert every.describe()["augmentation"]["intensity"] == {"p_gamma": 0.5, "gamma_range": [0.5, 2.0], "p_invert": 0.5}
    plain = TrainingSlices(every.images, modality="MR", normalisation=every.normalisation)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert not torch.equal(every.batch(list(range(8)), g()), plain.batch(list(range(8)), g()))
    assert torch.equal(every.batch([0, 1], None), plain.batch([0, 1], None))  # no generator, no augmentation
    assert every.fingerprint() != plain.fingerprint()  # a run resumes only with the same augmentation
    with pytest.raises(InputError, match="unknown settings"):
        TrainingSlices(every.images, modality="MR", normalisation=every.normalisation, intensity={"p_solarise": 1})
    with pytest.raises(InputError, match="orientations"):
        TrainingSlices.from_studies([iso], size=8, modality="MR", orientations="oblique")


def test_coronal_and_sagittal_slices_have_superior_at_the_top():
    ramp = torch.arange(10, dtype=torch.float32)[:, None, None].expand(10, 12, 14) + 1  # brighter superiorly
    study = Study(ramp.clone(), np.diag([1.0, 1.0, 1.0, 1.0]), "MR", name="ramp")  # slices run inferior -> superior
    slices = TrainingSlices.from_studies([study], size=8, modality="MR", orientations="all")
    for image in slices.images[10:]:  # coronal and sagittal
        rows = image[0].mean(dim=1)
        assert bool((rows[:-1] >= rows[1:]).all()) and rows[0] > rows[-1]


def _is_monotone(before: torch.Tensor, after: torch.Tensor) -> bool:
    order = before.flatten().argsort()
    return bool((after.flatten()[order].diff() >= -1e-6).all())


def test_random_curves_and_histogram_matching_are_monotone_and_keep_the_background_dark():
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    x[:, :, :2] = 0  # background
    curves = random_monotone_curve(x, torch.rand(6, 7, generator=torch.Generator().manual_seed(4)))
    assert all(_is_monotone(x[b], curves[b]) for b in range(6))
    assert torch.equal(curves[:, :, :2], torch.zeros_like(curves[:, :, :2])) and 0.7 <= float(curves.amax()) <= 1.0
    assert not torch.allclose(curves, x, atol=0.05)  # the curves do change the contrast
    reference = torch.rand(6, 1, 9, 9, generator=torch.Generator().manual_seed(5)) ** 3
    matched = match_histogram(x, reference)
    assert all(_is_monotone(x[b], matched[b]) for b in range(6))
    quantiles = torch.tensor([0.25, 0.5, 0.75])
    for b in range(6):  # the image takes the reference's distribution
        torch.testing.assert_close(torch.quantile(matched[b].flatten(), quantiles), torch.quantile(reference[b].flatten(), quantiles),
                                   atol=0.03, rtol=0)


def test_monotone_families_never_invert_and_need_their_references():
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    refs = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) ** 2
    out = random_remap(x, torch.Generator().manual_seed(2), p_gamma=0.5, p_invert=0.0, p_curve=0.5, p_match=0.5, references=refs)
    assert all(_is_monotone(x[b], out[b]) for b in range(32))  # p_invert 0: only monotone remaps
    assert int((out != x).flatten(1).any(1).sum()) > 16
    again = random_remap(x, torch.Generator().manual_seed(2), p_gamma=0.5, p_invert=0.0, p_curve=0.5, p_match=0.5, references=refs)
    assert torch.equal(out, again)
    with pytest.raises(InputError, match="needs reference images"):
        random_remap(x, torch.Generator().manual_seed(2), p_match=0.5)


def test_training_slices_match_the_histograms_of_their_other_contrast_sources():
    bright_fluid = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(6)) ** 0.3
    dark_fluid = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(7)) ** 3
    from medrecon.priors.normalisation import Normalisation

    data = TrainingSlices(torch.cat([dark_fluid, bright_fluid]), modality="MR", normalisation=Normalisation.for_modality("MR"),
                          sources=[{"id": "t1", "slices": 4}, {"id": "b0", "slices": 4}], flip=False, rotate_degrees=0.0,
                          intensity={"p_gamma": 0.0, "p_invert": 0.0, "p_match": 1.0, "match_sources": ["b0"]})
    out = data.batch([0, 1], torch.Generator().manual_seed(8))
    assert float(out.mean()) > float(dark_fluid[:2].mean()) + 0.2  # the T1-like slices took the bright histogram
    assert data.describe()["augmentation"]["intensity"]["match_sources"] == ["b0"]
    with pytest.raises(InputError, match="match_sources"):
        TrainingSlices(dark_fluid, modality="MR", normalisation=Normalisation.for_modality("MR"), sources=[{"id": "t1", "slices": 4}],
                       intensity={"p_match": 0.5, "match_sources": ["b0"]})
    with pytest.raises(InputError, match="needs match_sources"):
        TrainingSlices(dark_fluid, modality="MR", normalisation=Normalisation.for_modality("MR"), intensity={"p_match": 0.5})
