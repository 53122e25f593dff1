"""``medrecon demo``: sparse-view CT and undersampled multi-coil MRI of two real scans, reconstructed
by the classical baselines, with metrics, a JSON record and a PNG figure.

The scans are the small real CT and MR slices that ship inside pydicom (``CT_small.dcm``, 128x128,
and ``MR_small.dcm``, 64x64), so the demo needs no download. Measurements are simulated with the
benchmark settings (docs/conventions.md): CT parallel beam with 23 uniform views and Gaussian noise
of 1% of the sinogram maximum; MR with 8 simulated coils, a smooth phase, a fastMRI
``equispaced_fraction`` mask at 4x and complex noise 0.02. Baseline weights are the ones tuned on
training patients (docs/baselines.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from medrecon import __version__
from medrecon.baselines import TUNED_WEIGHTS, ct, mri
from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.metrics import psnr, ssim
from medrecon.operators import CTProjector, MultiCoilMRI, ParallelBeamGeometry, simulated_maps
from medrecon.operators.masks import CartesianSampling, describe_mask
from medrecon.priors.normalisation import Normalisation
from medrecon.simulation import CT_NOISE_REL, MR_NOISE_SIGMA, complex_image, simulate_kspace, simulate_sinogram

CT_VIEWS = 23
MR_ACCELERATION = 4
MR_COILS = 8


def _load_pydicom_sample(name: str) -> tuple[np.ndarray, object]:
    import pydicom
    import pydicom.data

    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
    pixels = ds.pixel_array.astype(np.float64)
    pixels = pixels * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    return pixels, ds


def _scores(recon: torch.Tensor, truth: torch.Tensor) -> dict:
    magnitude = (recon.abs() if recon.is_complex() else recon).clamp(0, 1).float()
    return {
        "psnr_db": round(float(psnr(magnitude, truth, data_range=1.0)[0]), 2),
        "ssim": round(float(ssim(magnitude, truth, data_range=1.0)[0]), 4),
    }


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 3)


def ct_demo(seed: int) -> dict:
    """Sparse-view CT of the real CT slice: FBP, SIRT, TV."""
    hu, ds = _load_pydicom_sample("CT_small.dcm")
    ct_norm = Normalisation.for_modality("CT")
    truth = ct_norm.apply(torch.from_numpy(hu))[None, None]
    pixel_mm = float(ds.PixelSpacing[0])
    geometry = ParallelBeamGeometry.sparse_view(
        truth.shape[-1], CT_VIEWS, pixel_size=pixel_mm, detector_spacing=pixel_mm
    )
    op = CTProjector(geometry)
    y = simulate_sinogram(op, truth, torch.Generator().manual_seed(seed), noise_rel=CT_NOISE_REL)
    weights = TUNED_WEIGHTS["ct-parallel-23v-noisy"]
    methods = {
        "FBP (ramp)": lambda: ct.fbp(op, y),
        f"SIRT ({weights['sirt']} it)": lambda: ct.sirt(op, y, n_iter=weights["sirt"]),
        f"TV-PDHG (lam_rel {weights['tv_pdhg']:g})": lambda: ct.tv_pdhg(op, y, lam_rel=weights["tv_pdhg"]),
    }
    return _run_methods(
        truth,
        methods,
        {
            "input": "pydicom's CT_small.dcm (real CT slice, 128x128)",
            "normalisation": ct_norm.to_dict(),
            "geometry": geometry.to_dict(),
            "noise": f"Gaussian, std {CT_NOISE_REL:.0%} of the sinogram maximum, seed {seed}",
        },
    )


def mr_demo(seed: int) -> dict:
    """Undersampled 8-coil MRI of the real MR slice: zero-filled, CG-SENSE, L1-wavelet, TV."""
    pixels, _ = _load_pydicom_sample("MR_small.dcm")
    truth = torch.tensor(np.clip(pixels / np.percentile(pixels, 99.5), 0, 1), dtype=torch.float32)[None, None]
    shape = tuple(truth.shape[-2:])
    sampling = CartesianSampling("equispaced_fraction", MR_ACCELERATION, seed="MR_small.dcm")
    mask = sampling.make(shape)
    op = MultiCoilMRI(simulated_maps(MR_COILS, shape)[None], mask)
    image = complex_image(truth, torch.Generator().manual_seed(seed))
    y = simulate_kspace(op, image, torch.Generator().manual_seed(seed + 1), noise_sigma=MR_NOISE_SIGMA)
    weights = TUNED_WEIGHTS[f"mr-8coil-{MR_ACCELERATION}x-noisy"]
    methods = {
        "zero-filled": lambda: mri.zero_filled(op, y),
        f"CG-SENSE ({weights['cg_sense']} it)": lambda: mri.cg_sense(op, y, n_iter=weights["cg_sense"]),
        f"L1-wavelet (lam_rel {weights['l1_wavelet']:g})": lambda: mri.l1_wavelet(op, y, lam_rel=weights["l1_wavelet"]),
        f"TV (lam_rel {weights['total_variation']:g})": lambda: mri.total_variation(
            op, y, lam_rel=weights["total_variation"]
        ),
    }
    return _run_methods(
        truth,
        methods,
        {
            "input": "pydicom's MR_small.dcm (real MR slice, 64x64), magnitude / 99.5th percentile",
            "coils": f"{MR_COILS} simulated birdcage maps, smooth random phase (seed {seed})",
            "sampling": describe_mask(mask, sampling),
            "noise": f"complex Gaussian, std {MR_NOISE_SIGMA} per complex value, seed {seed + 1}",
        },
    )


def _run_methods(truth: torch.Tensor, methods: dict, setting: dict) -> dict:
    images = {"reference": truth[0, 0].numpy()}
    results = {}
    for name, fn in methods.items():
        recon, seconds = _timed(fn)
        results[name] = {**_scores(recon, truth), "seconds": seconds}
        images[name] = (recon.abs() if recon.is_complex() else recon)[0, 0].clamp(0, 1).float().numpy()
    return {"setting": setting, "results": results, "images": images}


def _figure(rows: list[dict], path: Path, tile: int = 160) -> None:
    n_cols = max(len(r["images"]) for r in rows)
    label_h = 28
    canvas = Image.new("L", (n_cols * tile, len(rows) * (tile + label_h)), color=0)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        for c, (name, image) in enumerate(row["images"].items()):
            pixels = Image.fromarray(np.uint8(np.round(255 * np.clip(image, 0, 1))))
            canvas.paste(pixels.resize((tile, tile), Image.NEAREST), (c * tile, r * (tile + label_h) + label_h))
            score = row["results"].get(name)
            text = name if score is None else f"{name}\n{score['psnr_db']:.1f} dB / {score['ssim']:.3f}"
            draw.multiline_text((c * tile + 3, r * (tile + label_h) + 1), text, fill=255, spacing=1)
    canvas.save(path)


@torch.no_grad()
def run_demo(out_dir: str | Path, *, overwrite: bool = False, seed: int = 0) -> dict:
    """Run both demos and write ``demo.json`` and ``demo.png`` into ``out_dir``.

    The folder is written in full under a temporary name and renamed at the end, so an interrupted
    run leaves nothing half-written; an existing folder is replaced only with ``overwrite``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    started = time.perf_counter()
    rows = {"CT, parallel beam, 23 views, 1% noise": ct_demo(seed), "MR, 8 coils, 4x, noise 0.02": mr_demo(seed)}
    record = {
        "medrecon": __version__,
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "demos": {name: {k: v for k, v in row.items() if k != "images"} for name, row in rows.items()},
    }
    with atomic_output(out, overwrite=overwrite, folder=True) as staging:
        (staging / "demo.json").write_text(json.dumps(record, indent=2))
        _figure(list(rows.values()), staging / "demo.png")
    for name, row in rows.items():
        print(f"\n{name}")
        for method, score in row["results"].items():
            print(f"  {method:32s} PSNR {score['psnr_db']:6.2f} dB  SSIM {score['ssim']:.3f}  {score['seconds']:6.2f} s")
    print(f"\nwrote {out / 'demo.json'} and {out / 'demo.png'} ({record['seconds']} s)")
    return record
