"""The reconstruction figure as :func:`medrecon.outputs.reconstruction_figure` builds it: the window
(the study's DICOM window, else the anatomy's) applied to the image columns and stated in the figure
and the record, the error in the prior's units, the zoom at native resolution."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from medrecon.outputs import reconstruction_figure
from medrecon.study import Study

CT_PROBLEM = SimpleNamespace(modality="CT", offset=-1000.0, scale=3000.0)  # the priors' -1000 to 2000 HU window


def chest_volume(slices: int = 5, size: int = 128) -> torch.Tensor:
    """Soft tissue (40 HU) with two air-filled lungs (-850 HU) in air (-1000 HU), 15 HU noise."""
    y, x = np.mgrid[:size, :size]
    hu = np.full((size, size), -1000.0)
    hu[((y - 64) / 50) ** 2 + ((x - 64) / 60) ** 2 < 1] = 40
    for cx in (40, 88):
        hu[((y - 60) / 28) ** 2 + ((x - cx) / 15) ** 2 < 1] = -850
    rng = np.random.default_rng(0)
    return torch.tensor(np.stack([hu + rng.normal(0, 15, hu.shape) for _ in range(slices)]), dtype=torch.float32)


def figure_of(reference, study=None, std=None):
    native, baseline = reference + 30, reference - 60
    metrics = {"baseline": {"psnr": 30.0, "ssim": 0.9}, "reconstruction": {"psnr": 33.0, "ssim": 0.95}}
    return reconstruction_figure(CT_PROBLEM, native, baseline, reference, std, metrics, study=study)


def test_without_a_dicom_window_the_anatomy_picks_it_and_the_figure_and_record_say_so():
    reference = chest_volume()
    figure = figure_of(reference)
    assert figure.notes[0].startswith("window L-600 W1500 (lung, chosen from the HU histogram: ")
    record = json.loads(json.dumps(figure.summary()))  # the record's entry is plain JSON
    assert record["window"]["level"] == -600 and record["window"]["width"] == 1500
    assert record["window"]["chosen_by"].startswith("lung") and record["window"]["evidence"]["lung"] > 0.15
    assert record["slices"] == [0, 2, 4]
    # the image columns are in that window, the error in the prior's units (white = 750 HU)
    rows = figure.slices
    np.testing.assert_allclose(figure.columns["reference"], np.clip((reference[rows].numpy() + 1350) / 1500, 0, 1), atol=1e-6)
    np.testing.assert_allclose(figure.columns["|error| x4"], 30 * 4 / 3000, atol=1e-6)
    assert record["error_and_std"].startswith("|error| x4 in the prior's units: white = 750 HU")
    assert figure.notes[1] == record["error_and_std"]


def test_the_studys_dicom_window_is_used_and_stated():
    reference = chest_volume()
    study = Study(reference, np.eye(4), "CT", source={"format": "dicom"}, window=(40.0, 400.0))
    figure = figure_of(reference, study, std=torch.full_like(reference, 75.0))
    assert figure.notes[0] == "window L40 W400 (DICOM WindowCenter/WindowWidth): reference, baseline, reconstruction"
    assert figure.summary()["window"] == {"level": 40.0, "width": 400.0, "chosen_by": "DICOM WindowCenter/WindowWidth",
                                          "text": "window L40 W400 (DICOM WindowCenter/WindowWidth)"}
    rows = figure.slices
    np.testing.assert_allclose(figure.columns["baseline"], np.clip((reference[rows].numpy() - 60 + 160) / 400, 0, 1), atol=1e-6)
    np.testing.assert_allclose(figure.columns["std x4"], 0.1, atol=1e-6)  # 75 HU x 4 / 3000 HU
    assert "|error| x4 and std x4 in the prior's units" in figure.notes[1]


def test_the_zoom_is_recorded_and_drawn_from_native_pixels(tmp_path):
    reference = chest_volume()
    figure = figure_of(reference)
    zoom = figure.summary()["zoom"]
    assert zoom["size"] == [96, 96] and zoom["magnification"] == 2 and zoom["slice"] in figure.slices
    assert f"slice {zoom['slice']}, rows {zoom['top']}-{zoom['top'] + 95}" in zoom["text"]
    figure.write(tmp_path / "f.png")
    png = np.asarray(Image.open(tmp_path / "f.png"))
    # the zoom row's reference block is the windowed reference's native pixels, each 2x2
    window = figure.window
    native = reference[zoom["slice"], zoom["top"] : zoom["top"] + 96, zoom["left"] : zoom["left"] + 96]
    block = np.kron(np.uint8(np.round(255 * window.apply(native))), np.ones((2, 2), np.uint8))
    rows_top = np.flatnonzero([np.array_equal(png[y : y + 192, :192], block) for y in range(png.shape[0] - 191)])
    assert len(rows_top) == 1
