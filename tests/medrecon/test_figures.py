"""The reconstruction figure's parts: the display window (the study's DICOM window, the CT anatomy
rule on synthetic HU volumes built for each case, MR percentiles), the zoomed crop (where it lands,
and that the PNG holds its native pixels, each an m x m block) and the stated text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medrecon.figures import (
    CT_WINDOWS,
    ZoomBox,
    body_mask,
    choose_window,
    ct_anatomy_window,
    hu_fractions,
    percentile_window,
    write_figure,
    zoom_box,
)
from medrecon.study import Study

SIZE = 128


def ellipse(cy, cx, ry, rx, size=SIZE) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1


def volume(slices=4, noise=8.0, seed=0, **layers) -> np.ndarray:
    """Air (-1000 HU) with ``layers`` (HU value -> mask) painted in order, plus Gaussian noise."""
    hu = np.full((SIZE, SIZE), -1000.0)
    for value, mask in layers.values():
        hu[mask] = value
    rng = np.random.default_rng(seed)
    return np.stack([hu + rng.normal(0, noise, hu.shape) for _ in range(slices)]).astype(np.float32)


def head(size_fraction=1.0) -> np.ndarray:
    """Scalp, a skull ring (1000 HU), brain (35 HU) and a little CSF (8 HU); ``size_fraction``
    shrinks it inside a field of view that is then mostly air."""
    r = 56 * size_fraction
    return volume(scalp=(40.0, ellipse(64, 64, r, 0.85 * r)), skull=(1000.0, ellipse(64, 64, r - 3, 0.85 * r - 3)),
                  brain=(35.0, ellipse(64, 64, r - 9, 0.85 * r - 9)), csf=(8.0, ellipse(64, 64, 0.15 * r, 0.1 * r)))


def chest() -> np.ndarray:
    """A body with a fat rim, soft tissue, two air-filled lungs (-850 HU) and a spine (700 HU)."""
    return volume(fat=(-100.0, ellipse(64, 64, 45, 60)), tissue=(40.0, ellipse(64, 64, 40, 55)),
                  left=(-850.0, ellipse(60, 40, 28, 15)), right=(-850.0, ellipse(60, 88, 28, 15)),
                  spine=(700.0, ellipse(96, 64, 6, 6)))


def abdomen() -> np.ndarray:
    """A body with a fat rim (-100 HU), liver and muscle (55 HU), a little bowel gas (-950 HU)."""
    return volume(fat=(-100.0, ellipse(64, 64, 45, 60)), tissue=(55.0, ellipse(64, 64, 38, 52)),
                  gas=(-950.0, ellipse(70, 80, 5, 7)), spine=(700.0, ellipse(96, 64, 6, 6)))


# --------------------------------------------------------------------------------- CT anatomy
@pytest.mark.parametrize(("make", "expected"), [(head, "brain"), (chest, "lung"), (abdomen, "soft tissue")])
def test_the_ct_anatomy_rule_picks_the_window_the_anatomy_calls_for(make, expected):
    window = ct_anatomy_window(make())
    assert (window.level, window.width) == CT_WINDOWS[expected]
    assert window.chosen_by.startswith(f"{expected}, chosen from the HU histogram")
    assert window.text.startswith(f"window L{CT_WINDOWS[expected][0]:.0f} W{CT_WINDOWS[expected][1]:.0f} ({expected}")


def test_the_air_around_a_small_head_is_not_lung():
    # a head filling a quarter of the field: 80 % of the image is air, none of it inside the body
    hu = head(size_fraction=0.5)
    assert np.mean(hu < -400) > 0.75
    f = hu_fractions(hu)
    assert f["lung"] == 0 and f["brain"] > 0.5
    assert ct_anatomy_window(hu).chosen_by.startswith("brain")


def test_the_body_holds_the_air_it_encloses_and_not_the_air_around_it():
    hu = chest()[0]
    body = body_mask(hu, -500)
    lungs = ellipse(60, 40, 20, 10) | ellipse(60, 88, 20, 10)
    assert body[lungs].all()  # enclosed air counts
    assert not body[:8].any() and not body[:, :4].any()  # the air around the body does not
    assert body[ellipse(64, 64, 44, 59)].all()


def test_a_water_phantom_gets_soft_tissue_not_brain():
    # water (0 HU) lies below the brain band: a uniform phantom is not taken for a head
    assert ct_anatomy_window(volume(water=(0.0, ellipse(64, 64, 50, 50)))).chosen_by.startswith("soft tissue")


# ------------------------------------------------------------------------------- other windows
def test_the_studys_dicom_window_comes_first_and_is_stated():
    hu = torch.from_numpy(chest())
    study = Study(hu, np.eye(4), "CT", source={"format": "dicom"}, window=(50, 350))
    window = choose_window("CT", hu, study)
    assert (window.level, window.width) == (50, 350)
    assert window.text == "window L50 W350 (DICOM WindowCenter/WindowWidth)"
    assert window.as_dict()["chosen_by"] == "DICOM WindowCenter/WindowWidth"
    # without one, the anatomy decides
    assert choose_window("CT", hu, Study(hu, np.eye(4), "CT")).chosen_by.startswith("lung")
    # mapped linearly: level - width/2 is black, level + width/2 white
    np.testing.assert_allclose(window.apply(torch.tensor([-125.0, 50.0, 225.0, 900.0])), [0, 0.5, 1, 1])


def test_mr_gets_the_percentile_window_of_the_magnitude():
    magnitude = np.abs(np.random.default_rng(1).normal(0, 1, (3, 64, 64))) * 100
    window = choose_window("MR", torch.from_numpy(magnitude) * (1 + 0j), None, what="baseline")
    lo, hi = np.percentile(magnitude, [0.5, 99.5])
    assert window.level == pytest.approx((lo + hi) / 2, rel=1e-5) and window.width == pytest.approx(hi - lo, rel=1e-5)
    assert "0.5-99.5 % of the baseline magnitude" in window.text
    assert percentile_window(np.ones((2, 4, 4))).width > 0  # a constant image still maps


# ------------------------------------------------------------------------------------------ zoom
def body_with_outline() -> tuple[np.ndarray, np.ndarray]:
    """Three slices: a body (rows 8-119, columns 8-79; 0.5) with a bright 2-pixel rim (1.0) in
    black air; its outline is the sharpest edge in the image."""
    body = np.zeros((3, SIZE, SIZE), dtype=bool)
    body[:, 8:120, 8:80] = True
    images = np.where(body, 1.0, 0.0)
    images[:, 10:118, 10:78] = 0.5
    return images, body


def test_the_zoom_lands_on_the_detail_inside_the_body_not_on_its_outline():
    images, body = body_with_outline()
    rng = np.random.default_rng(0)
    images[2, 60:90, 30:60] = rng.uniform(0.35, 0.65, (30, 30))  # faint texture in slice 2, weaker than the outline
    box = zoom_box(images, body, size=48)
    assert (box.row, box.height, box.width) == (2, 48, 48)
    assert box.top <= 60 and box.top + 48 >= 90 and box.left <= 30 and box.left + 48 >= 60
    assert zoom_box(images, body, size=48) == box  # deterministic
    # without the erosion the outline's corner would win
    assert zoom_box(images, body, size=48, margin=0).top > 60


def test_the_zoom_ignores_detail_outside_the_body():
    images, body = body_with_outline()
    rng = np.random.default_rng(1)
    images[1, 60:90, 30:60] = rng.uniform(0, 1, (30, 30))  # inside the body
    images[0, 20:50, 90:125] = rng.uniform(0, 1, (30, 35))  # more of it outside (a table, a label)
    box = zoom_box(images, body, size=48)
    assert box.row == 1 and box.top <= 60 and box.left <= 30 and box.left + 48 >= 60
    assert zoom_box(images, np.ones_like(body), size=48).row == 0  # what the body mask prevents


def test_without_detail_the_zoom_is_the_centre_of_the_middle_row():
    assert zoom_box(np.zeros((3, 64, 64)), np.ones((3, 64, 64), bool), size=32) == ZoomBox(1, 16, 16, 32, 32)
    # an image smaller than the crop is shown whole
    assert zoom_box(np.zeros((1, 40, 20)), np.ones((1, 40, 20), bool)) == ZoomBox(0, 0, 0, 40, 20)


def test_the_png_holds_the_crop_at_native_resolution(tmp_path):
    rng = np.random.default_rng(3)
    columns = {name: rng.uniform(0, 1, (3, 160, 160)) for name in ("reference", "baseline", "reconstruction")}
    box = ZoomBox(1, 37, 51, 96, 96, "slice 9")
    placed = write_figure(tmp_path / "f.png", columns, {}, zoom=box, notes=["window L40 W400 (test)"])
    png = np.asarray(Image.open(tmp_path / "f.png"))
    assert set(placed) == set(columns)
    for name, (x, y, m) in placed.items():
        assert m == 2  # 96 native pixels in a 192-pixel tile
        native = np.uint8(np.round(255 * columns[name][1, 37:133, 51:147]))
        np.testing.assert_array_equal(png[y : y + 96 * m, x : x + 96 * m], np.kron(native, np.ones((m, m), np.uint8)))
    # a column's crop is its own: the baseline's block differs from the reference's
    (xr, yr, m), (xb, yb, _) = placed["reference"], placed["baseline"]
    assert not np.array_equal(png[yr : yr + 96 * m, xr : xr + 96 * m], png[yb : yb + 96 * m, xb : xb + 96 * m])


def test_without_zoom_or_notes_the_grid_is_as_before(tmp_path):
    columns = {"a": np.zeros((2, 32, 32)), "b": np.ones((2, 32, 32))}
    assert write_figure(tmp_path / "g.png", columns, {}) == {}
    assert Image.open(tmp_path / "g.png").size == (2 * 192, 2 * 192 + 28)
    write_figure(tmp_path / "h.png", columns, {}, notes=["one line"], zoom=ZoomBox(0, 0, 0, 32, 32))
    # a 32-pixel crop is enlarged 6x (192 // 32); the note adds a line above the grid
    assert Image.open(tmp_path / "h.png").size == (2 * 192, 2 * 192 + 28 + 18 + 14 + 192)
