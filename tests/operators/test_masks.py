"""Tests of medrecon.operators.masks.

The fastMRI column masks are compared with tests/fixtures/fastmri_masks.npz, written by the real
``fastmri`` package (tests/fixtures/make_fastmri_masks.py), and the Poisson disc with the public
``sigpy.mri.poisson``. Expected values elsewhere come from the definitions (1 / acceleration, the
fastMRI centre-block rule), never from the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medrecon.errors import GeometryError, InputError
from medrecon.operators import masks
from medrecon.operators.masks import CartesianSampling, describe_mask, make_mask, sampled_fraction

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fastmri_masks.npz"
SHAPES = [(64, 64), (96, 80), (40, 77)]  # square, wide, odd width


@pytest.fixture(scope="module")
def fastmri_cases():
    data = np.load(FIXTURE)
    cases = json.loads(str(data["cases"]))
    return [(case, data[f"mask_{i}"]) for i, case in enumerate(cases)]


def fastmri_block(n: int, fraction: float) -> slice:
    """fastMRI's centre block (subsample.py): round(n * fraction) lines from (n - count + 1) // 2."""
    count = round(n * fraction)
    return slice((n - count + 1) // 2, (n - count + 1) // 2 + count)


# ---------------------------------------------------------------- equality with the fastmri package


def test_fixture_covers_the_grid(fastmri_cases):
    patterns = {c["pattern"] for c, _ in fastmri_cases}
    widths = {c["num_cols"] for c, _ in fastmri_cases}
    seeds = {type(c["seed"]) for c, _ in fastmri_cases}
    assert patterns == set(masks.COLUMN_PATTERNS)
    assert any(w % 2 for w in widths) and any(w % 2 == 0 for w in widths)
    assert seeds == {int, str} and len(fastmri_cases) >= 100


def test_column_masks_equal_fastmri(fastmri_cases):
    mismatched = []
    for case, expected in fastmri_cases:
        sampling = CartesianSampling(case["pattern"], case["acceleration"],
                                     case["center_fraction"], case["seed"])
        mask = sampling.make((3, case["num_cols"])).numpy()
        column, n_low = masks.fastmri_column_mask(case["pattern"], case["num_cols"],
                                                  case["acceleration"], case["center_fraction"],
                                                  case["seed"])
        same_rows = (mask == expected[None, :].astype(np.float32)).all()
        if not same_rows or not (column == expected.astype(bool)).all() or \
                n_low != case["num_low_frequencies"]:
            mismatched.append(case)
    assert not mismatched, f"{len(mismatched)} masks differ from fastmri, first: {mismatched[0]}"


def test_name_seed_is_fastmri_ord_tuple(fastmri_cases):
    assert masks.seed_from_name("file1000001.h5") == tuple(map(ord, "file1000001.h5"))
    case, expected = next((c, m) for c, m in fastmri_cases if isinstance(c["seed"], str))
    as_tuple = make_mask(case["pattern"], (2, case["num_cols"]), case["acceleration"],
                         case["center_fraction"], seed=tuple(map(ord, case["seed"])))
    assert (as_tuple[0].numpy() == expected).all()


def test_describe_reports_true_acceleration(fastmri_cases):
    for case, expected in fastmri_cases[:: 7]:
        sampling = CartesianSampling(case["pattern"], case["acceleration"],
                                     case["center_fraction"], case["seed"])
        info = describe_mask(sampling.make((5, case["num_cols"])), sampling)
        true_fraction = expected.sum() / expected.size
        assert info["nominal_acceleration"] == case["acceleration"]
        assert info["sampled_fraction"] == pytest.approx(true_fraction, abs=1e-12)
        assert info["true_acceleration"] == pytest.approx(1 / true_fraction, rel=1e-12)
    # fastMRI's equispaced grid plus its centre block samples more than 1/4 of 320 columns
    sampling = CartesianSampling("equispaced", 4, 0.08, seed=0)
    assert describe_mask(sampling.make((8, 320)), sampling)["true_acceleration"] < 3.5


# --------------------------------------------------------------------------------- determinism


SEEDED = ["equispaced", "equispaced_fraction", "random", "gaussian1d", "gaussian2d", "poisson"]


@pytest.mark.parametrize("pattern", SEEDED)
def test_same_seed_same_mask_other_seed_other_mask(pattern):
    shape = (48, 40)
    first = make_mask(pattern, shape, 4, seed="file1000001.h5")
    assert torch.equal(first, make_mask(pattern, shape, 4, seed="file1000001.h5"))
    others = [make_mask(pattern, shape, 4, seed=s) for s in range(8)]
    assert any(not torch.equal(first, m) for m in others)
    assert len({m.numpy().tobytes() for m in others}) > 1


@pytest.mark.parametrize("pattern", SEEDED)
def test_global_random_state_untouched(pattern):
    saved = np.random.get_state(), torch.random.get_rng_state()
    try:
        # a state no seeding inside masks.py could leave behind by chance
        np.random.seed(987654321)
        np.random.uniform(size=3)
        torch.manual_seed(987654321)
        np_state, torch_state = np.random.get_state(), torch.random.get_rng_state()
        make_mask(pattern, (32, 40), 4, seed=7)
        assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
                   for a, b in zip(np_state, np.random.get_state(), strict=True))
        assert torch.equal(torch_state, torch.random.get_rng_state())
    finally:
        np.random.set_state(saved[0])
        torch.random.set_rng_state(saved[1])


# ------------------------------------------------------------------------------ sampled fraction


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("acceleration", [4, 8])
def test_sampled_fraction_close_to_nominal(shape, acceleration):
    H, W = shape
    target = 1 / acceleration
    cf = {4: 0.08, 8: 0.04}[acceleration]
    # gaussian1d/2d draw exactly round(N / acceleration) of N points (columns or points)
    assert sampled_fraction(make_mask("gaussian1d", shape, acceleration, seed=1)) == \
        round(W / acceleration) / W
    assert sampled_fraction(make_mask("gaussian2d", shape, acceleration, seed=1)) == \
        round(H * W / acceleration) / (H * W)
    for seed in range(5):
        # equispaced_fraction spaces columns so that W / a are sampled, up to rounding of the
        # fractional positions: within 2 columns (fastMRI issue #54: it is not exactly equispaced)
        frac = sampled_fraction(make_mask("equispaced_fraction", shape, acceleration, seed=seed))
        assert abs(frac - target) <= 2 / W
        # equispaced: a grid of every a-th column (ceil or floor of W / a) plus the centre block,
        # so between 1/a - 1/W and 1/a + cf + 1/W (its true acceleration is below nominal)
        frac = sampled_fraction(make_mask("equispaced", shape, acceleration, seed=seed))
        assert target - 1 / W <= frac <= target + cf + 1 / W
        # random: each outer column independently with p = (W/a - n) / (W - n), so the count is
        # binomial with mean W / a: allow 5 standard deviations
        n = round(W * cf)
        p = (W / acceleration - n) / (W - n)
        frac = sampled_fraction(make_mask("random", shape, acceleration, seed=seed))
        assert abs(frac - target) <= 5 * math.sqrt((W - n) * p * (1 - p)) / W
    # poisson: sigpy's slope search stops once |H W / count - a| < 0.1
    count = make_mask("poisson", shape, acceleration, seed=1).sum().item()
    assert abs(H * W / count - acceleration) < 0.1
    # radial: the line count is chosen by the fraction; one line adds at most H + W points, so
    # the fraction is within (H + W) / (H W) of the target
    for angles in masks.RADIAL_ANGLES:
        frac = sampled_fraction(make_mask("radial", shape, acceleration, angles=angles))
        assert abs(frac - target) <= (H + W) / (H * W)


def test_random_mean_over_seeds_is_nominal():
    W, a = 368, 4
    fractions = [sampled_fraction(make_mask("random", (1, W), a, seed=s)) for s in range(200)]
    n = round(W * 0.08)
    p = (W / a - n) / (W - n)
    assert abs(np.mean(fractions) - 1 / a) <= 4 * math.sqrt((W - n) * p * (1 - p) / 200) / W


# -------------------------------------------------------------------------------- centre blocks


@pytest.mark.parametrize("pattern", ["equispaced", "equispaced_fraction", "random", "gaussian1d"])
@pytest.mark.parametrize("shape", SHAPES)
def test_column_centre_block_fully_sampled(pattern, shape):
    for cf in (0.08, 0.2):
        mask = make_mask(pattern, shape, 4, center_fraction=cf, seed=11)
        block = fastmri_block(shape[1], cf)
        assert block.stop > block.start
        assert (mask[:, block] == 1).all()
        assert (mask == mask[:1]).all()  # every row sampled identically


@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian2d_and_poisson_centre_blocks(shape):
    H, W = shape
    mask = make_mask("gaussian2d", shape, 6, center_fraction=0.1, seed=2)
    assert (mask[fastmri_block(H, 0.1), fastmri_block(W, 0.1)] == 1).all()
    # sigpy places its calibration region at int(n/2 - c/2) : int(n/2 + c/2)
    ch, cw = round(H * 0.1), round(W * 0.1)
    mask = make_mask("poisson", shape, 4, center_fraction=0.1, seed=2)
    assert (mask[int(H / 2 - ch / 2):int(H / 2 + ch / 2), int(W / 2 - cw / 2):int(W / 2 + cw / 2)]
            == 1).all()


def test_radial_samples_centre_row():
    for angles in masks.RADIAL_ANGLES:
        mask = make_mask("radial", (40, 77), 5, angles=angles)
        assert (mask[20] == 1).all()  # the first line, angle 0, is the centre row
        assert mask.shape == (40, 77) and mask.dtype == torch.float32


def test_gaussian_density_and_std():
    W = 128
    block = fastmri_block(W, 0.04)
    k = np.abs(np.arange(W) - W // 2)
    outer = np.ones(W, bool)
    outer[block] = False

    def density(std):
        rows = [make_mask("gaussian1d", (1, W), 8, seed=s, std=std)[0].numpy() for s in range(40)]
        return np.mean(rows, axis=0)

    d = density(0.15)  # sigma = 0.15 * 128 = 19.2 columns
    assert d[outer & (k < 19)].mean() > 3 * d[outer & (k > 38)].mean()
    wide = density(0.5)
    assert (wide * k).sum() / wide.sum() > (d * k).sum() / d.sum()  # wider std, farther columns
    m2 = make_mask("gaussian2d", (64, 64), 8, seed=0).numpy()
    r = np.hypot(*np.meshgrid(np.arange(64) - 32, np.arange(64) - 32, indexing="ij"))
    assert m2[(r > 5) & (r < 10)].mean() > 2 * m2[r > 20].mean()


def test_poisson_equals_sigpy():
    sigpy_mri = pytest.importorskip("sigpy.mri")
    for shape, a, cf, seed in [((64, 48), 4, 0.08, 3), ((40, 77), 6, 0.1, 0)]:
        calib = (round(shape[0] * cf), round(shape[1] * cf))
        expected = sigpy_mri.poisson(shape, a, calib=calib, seed=seed, dtype=np.float32)
        assert np.array_equal(make_mask("poisson", shape, a, cf, seed=seed).numpy(), expected)


# ---------------------------------------------------------------------------- CartesianSampling


def test_default_center_fraction_is_fastmri_protocol():
    assert CartesianSampling("equispaced_fraction", 4).center_fraction == 0.08
    assert CartesianSampling("random", 8).center_fraction == 0.04
    assert CartesianSampling("gaussian1d", 5).center_fraction == pytest.approx(0.32 / 5)
    assert CartesianSampling("radial", 4).center_fraction is None


@pytest.mark.parametrize("sampling", [
    CartesianSampling("equispaced_fraction", 4, seed="file1000001.h5"),
    CartesianSampling("random", 8, 0.04, seed=(1, 2, 3)),
    CartesianSampling("equispaced", 4, 0.08, seed=5),
    CartesianSampling("gaussian1d", 6, 0.05, seed=1, std=0.2),
    CartesianSampling("gaussian2d", 3.5, seed=2),
    CartesianSampling("poisson", 4, seed=3),
    CartesianSampling("radial", 6, angles="golden"),
])
def test_json_round_trip(sampling):
    text = json.dumps(sampling.to_dict())
    back = CartesianSampling.from_dict(json.loads(text))
    assert back == sampling
    assert torch.equal(back.make((32, 40)), sampling.make((32, 40)))
    assert hash(back) == hash(sampling)


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda: make_mask("cartesian", (8, 8), 4), InputError,
     r"unknown sampling pattern 'cartesian'; known: equispaced, equispaced_fraction, random"),
    (lambda: make_mask("random", (8, 8), 0.5), GeometryError, r"acceleration must be .* >= 1"),
    (lambda: make_mask("random", (8, 8), float("nan")), GeometryError, "acceleration must be"),
    (lambda: make_mask("random", (8, 64), 4, 0.0), GeometryError, r"center_fraction must be in \(0, 1"),
    (lambda: make_mask("random", (8, 64), 4, 1.5), GeometryError, r"center_fraction must be in \(0, 1"),
    (lambda: make_mask("random", (64,), 4), GeometryError, r"shape must be 2 positive ints .* \(64,\)"),
    (lambda: make_mask("random", (0, 64), 4), GeometryError, "shape must be 2 positive ints"),
    (lambda: make_mask("random", (8.0, 64), 4), GeometryError, "shape must be 2 positive ints"),
    (lambda: make_mask("random", (8, 100), 8, 0.5), GeometryError,
     r"centre block of 50 columns .* not smaller than the 12.5 columns wanted"),
    (lambda: make_mask("equispaced_fraction", (8, 100), 4, 0.25), GeometryError,
     "centre block of 25 columns"),
    (lambda: make_mask("gaussian1d", (8, 100), 8, 0.5), GeometryError, "centre block of 50"),
    (lambda: make_mask("gaussian2d", (100, 100), 8, 0.5), GeometryError, "centre block of 50 x 50"),
    (lambda: make_mask("equispaced", (8, 64), 2.5), GeometryError, "integer acceleration"),
    (lambda: make_mask("poisson", (32, 32), 1), GeometryError, "poisson needs acceleration > 1"),
    (lambda: make_mask("poisson", (32, 32), 50, seed=3), GeometryError,
     "poisson cannot reach acceleration 50"),
    (lambda: make_mask("random", (8, 64), 4, seed=-1), InputError, r"a seed must be .* -1"),
    (lambda: make_mask("random", (8, 64), 4, seed=""), InputError, "non-empty string"),
    (lambda: make_mask("random", (8, 64), 4, foo=1), InputError, r"unknown mask options \['foo'\]"),
    (lambda: make_mask("random", (8, 64), 4, std=0.1), InputError, "std applies only to gaussian"),
    (lambda: make_mask("gaussian1d", (8, 64), 4, std=-0.1), GeometryError, "std must be a positive"),
    (lambda: make_mask("radial", (8, 64), 4, 0.08), InputError, "radial has no centre block"),
    (lambda: make_mask("radial", (8, 64), 4, angles="random"), InputError, "radial angles must be"),
    (lambda: CartesianSampling.from_dict({"pattern": "random", "accel": 4}), InputError,
     r"unknown keys \['accel'\], missing keys \['acceleration'\]"),
    (lambda: sampled_fraction(torch.full((4, 4), 0.5)), InputError, "0/1 values"),
    (lambda: describe_mask(torch.ones(4, 4), {"pattern": "random"}), InputError,
     "needs a CartesianSampling"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
