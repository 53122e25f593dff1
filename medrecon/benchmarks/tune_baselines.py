"""Choose the classical baselines' weights on training data (``medrecon bench tune-baselines``).

The baselines are the references every diffusion result is compared with, so their weights are
tuned fairly, on slices of the training patients only (:mod:`medrecon.data.sources`: ct-lung2 and mr-brain1 here;
never a validation patient), for each benchmark setting, and the result is written into
docs/baselines.md. The defaults in :data:`medrecon.baselines.TUNED_WEIGHTS` are copied from that
table.

Settings: CT parallel beam, 256x256, 23 and 60 views, clean and with 1% sinogram noise;
MR 256x256, 8 simulated coils, smooth phase, ``equispaced_fraction`` masks at 4x and 8x, clean
and with complex noise 0.02; and the non-Cartesian benchmark trajectories (radial 48 spokes, a
16-interleave spiral), clean. Images are in [0, 1], normalised as the priors are
(:class:`~medrecon.priors.normalisation.Normalisation`: CT HU window [-1000, 2000]; MR magnitude
over the volume's 99.5th percentile, clipped), PSNR with data range 1 on images clipped to
[0, 1] (MR: magnitudes), averaged over the slices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from medrecon.baselines import BASE_MATRIX
from medrecon.baselines import ct as ct_baselines
from medrecon.baselines import mri as mri_baselines
from medrecon.benchmarks.common import markdown_table, wall_time
from medrecon.errors import InputError
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import NONCARTESIAN_TRAJECTORIES, noncartesian_trajectory
from medrecon.io.nrrd import read_nrrd
from medrecon.operators import CTProjector, MultiCoilMRI, NonCartesianMRI, ParallelBeamGeometry, simulated_maps
from medrecon.operators.masks import CartesianSampling
from medrecon.priors.normalisation import MR_PERCENTILE, Normalisation
from medrecon.simulation import CT_NOISE_REL, MR_NOISE_SIGMA, complex_image, simulate_kspace, simulate_sinogram

CT_GRIDS = {
    "tv_pdhg": ("lam_rel", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),
    "sirt": ("n_iter", [25, 50, 100, 200, 400, 800, 1600]),
    "cgls": ("n_iter", [3, 5, 10, 20, 40, 80, 160]),
}
MR_GRIDS = {
    "l1_wavelet": ("lam_rel", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]),
    "total_variation": ("lam_rel", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]),
    "cg_sense": ("n_iter", [3, 5, 10, 20, 40, 80, 160, 320]),
}
CT_SETTINGS = [(views, noisy) for views in (23, 60) for noisy in (False, True)]
MR_SETTINGS = [(accel, noisy) for accel in (4, 8) for noisy in (False, True)]
#: Non-Cartesian MR: the benchmark trajectories (medrecon.benchmarks.recon.NONCARTESIAN_TRAJECTORIES),
#: noiseless; TV and l1-wavelet cost a NUFFT pair per iteration, hence the shorter grids.
MR_NONCARTESIAN_GRIDS = {
    "l1_wavelet": ("lam_rel", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]),
    "total_variation": ("lam_rel", [1e-5, 3e-5, 1e-4, 1e-3, 1e-2]),
    "cg_sense": ("n_iter", [10, 20, 40, 80, 160, 320]),
}


def _resize(slices: np.ndarray, size: int) -> np.ndarray:
    """Slices larger than ``size x size`` resampled down to it (anti-aliased); others unchanged
    (:func:`_pad` then centres them at their own pixel size)."""
    from skimage.transform import resize

    height, width = slices.shape[-2:]
    if height <= size and width <= size:
        return slices
    return np.stack([resize(s, (size, size), anti_aliasing=True, preserve_range=True) for s in slices])


def _pad(slices: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised ``(n, 1, h, w)`` slices centred in a ``size x size`` matrix of zeros (air; a
    256x256 MR study in a 320x320 matrix keeps its pixel size)."""
    height, width = slices.shape[-2:]
    top, left = (size - height) // 2, (size - width) // 2
    return torch.nn.functional.pad(slices, (left, size - width - left, top, size - height - top))


def _pick(volume: np.ndarray, n_slices: int) -> np.ndarray:
    """``n_slices`` axial slices evenly spaced over the middle 60% of a (x, y, z) volume, as (y, x) images."""
    depth = volume.shape[2]
    index = np.unique(np.round(np.linspace(0.2, 0.8, n_slices) * (depth - 1)).astype(int))
    return np.stack([volume[:, :, k].T for k in index]).astype(np.float64)


def ct_training_slices(volume_hu: np.ndarray, n_slices: int, size: int = BASE_MATRIX) -> torch.Tensor:
    slices = torch.from_numpy(_resize(_pick(volume_hu, n_slices), size))
    return _pad(Normalisation.for_modality("CT").apply(slices)[:, None], size)


def mr_training_slices(volume: np.ndarray, n_slices: int, size: int = BASE_MATRIX) -> torch.Tensor:
    scale = np.percentile(volume, MR_PERCENTILE)
    slices = _resize(_pick(volume, n_slices), size)
    return _pad(torch.from_numpy(np.clip(slices / scale, 0, 1)).float()[:, None], size)


def _generators(n: int, offset: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def _psnr(recon: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean per-slice PSNR of the magnitude (:func:`~medrecon.evaluation.scoring.score`'s ``slice`` protocol)."""
    return score(recon, truth, "slice").psnr


def _search(setting: str, module, reference: str, grids: dict, op, y, truth, log) -> list[dict]:
    """The weight-free reference method, then every method of ``grids`` at every grid value."""
    rows = [{"setting": setting, "method": reference, "param": None, "value": None,
             "psnr": _psnr(getattr(module, reference)(op, y), truth)}]
    log(f"{setting} {reference} {rows[0]['psnr']:.2f}")
    for method, (param, values) in grids.items():
        for value in values:
            seconds, recon = wall_time(lambda: getattr(module, method)(op, y, **{param: value}))
            rows.append({"setting": setting, "method": method, "param": param, "value": value, "psnr": _psnr(recon, truth)})
            log(f"{setting} {method} {param}={value} {rows[-1]['psnr']:.2f} ({seconds:.1f} s)")
    return rows


def _matrix_suffix(truth: torch.Tensor) -> str:
    """``""`` for the 256 settings, ``"@N"`` for N x N images (medrecon.baselines.TUNED_WEIGHTS)."""
    size = int(truth.shape[-1])
    return "" if size == BASE_MATRIX else f"@{size}"


def tune_ct(truth: torch.Tensor, log=print) -> list[dict]:
    rows = []
    for views, noisy in CT_SETTINGS:
        op = CTProjector(ParallelBeamGeometry.sparse_view(truth.shape[-1], views))
        y = simulate_sinogram(op, truth, _generators(truth.shape[0], 100), noise_rel=CT_NOISE_REL if noisy else 0.0)
        setting = f"ct-parallel-{views}v-{'noisy' if noisy else 'clean'}{_matrix_suffix(truth)}"
        rows += _search(setting, ct_baselines, "fbp", CT_GRIDS, op, y, truth, log)
    return rows


def tune_mr(truth: torch.Tensor, log=print) -> list[dict]:
    size = truth.shape[-1]
    image = complex_image(truth, _generators(truth.shape[0], 200))
    maps = simulated_maps(8, (size, size))[None]
    rows = []
    for accel, noisy in MR_SETTINGS:
        mask = CartesianSampling("equispaced_fraction", accel, seed="mr-brain1").make((size, size))
        op = MultiCoilMRI(maps, mask)
        y = simulate_kspace(op, image, _generators(truth.shape[0], 300), noise_sigma=MR_NOISE_SIGMA if noisy else 0.0)
        setting = f"mr-8coil-{accel}x-{'noisy' if noisy else 'clean'}{_matrix_suffix(truth)}"
        rows += _search(setting, mri_baselines, "zero_filled", MR_GRIDS, op, y, truth, log)
    return rows


def tune_mr_noncartesian(truth: torch.Tensor, log=print) -> list[dict]:
    """The radial and spiral benchmark trajectories, 8 simulated coils, smooth phase, noiseless."""
    shape = tuple(truth.shape[-2:])
    image = complex_image(truth, _generators(truth.shape[0], 200))
    maps = simulated_maps(8, shape)[None]
    rows = []
    for name in NONCARTESIAN_TRAJECTORIES:
        op = NonCartesianMRI(noncartesian_trajectory(name).make(shape), shape, maps)
        y = simulate_kspace(op, image, _generators(truth.shape[0], 300))
        setting = f"mr-8coil-{name}-clean{_matrix_suffix(truth)}"
        rows += _search(setting, mri_baselines, "gridding", MR_NONCARTESIAN_GRIDS, op, y, truth, log)
    return rows


def to_markdown(rows: list[dict], header: str) -> str:
    cells = []
    grouped = {}
    for row in rows:
        grouped.setdefault((row["setting"], row["method"]), []).append(row)
    for (setting, method), group in grouped.items():
        top = max(group, key=lambda r: r["psnr"])
        chosen = "-" if top["param"] is None else f"{top['param']}={top['value']:g}"
        grid = ", ".join(f"{r['value']:g}: {r['psnr']:.2f}" for r in group if r["param"] is not None) or "-"
        cells.append([setting, method, chosen, f"{top['psnr']:.2f}", grid])
    return header + "\n\n" + markdown_table(["setting", "method", "chosen", "PSNR (dB)", "grid (value: PSNR)"], cells)


def _volume_array(path: str) -> np.ndarray:
    """The ``(x, y, z)`` voxel array of an NRRD or NIfTI volume (the starter corpus's files)."""
    if str(path).lower().endswith((".nii", ".nii.gz")):
        import nibabel

        return np.asarray(nibabel.load(str(path)).get_fdata(), dtype=np.float64)

    return read_nrrd(path).data


@torch.no_grad()
def run_tune_baselines(ct_volume: str | None, mr_volume: str | None, n_slices: int, out_json: str | None, *,
         noncartesian_only: bool = False, matrix: int = BASE_MATRIX) -> int:
    if ct_volume is None and mr_volume is None:
        raise InputError("give --ct-volume and/or --mr-volume (NRRD or NIfTI volumes of training patients)")
    rows: list[dict] = []
    if ct_volume and not noncartesian_only:
        rows += tune_ct(ct_training_slices(_volume_array(ct_volume), n_slices, matrix))
    if mr_volume:
        slices = mr_training_slices(_volume_array(mr_volume), n_slices, matrix)
        rows += ([] if noncartesian_only else tune_mr(slices)) + tune_mr_noncartesian(slices)
    names = ", ".join(Path(p).name for p in (ct_volume, mr_volume) if p)
    print(to_markdown(rows, f"Weights tuned on {n_slices} slices each of {names} (training patients), "
                            f"{matrix}x{matrix}."))
    if out_json:
        Path(out_json).write_text(json.dumps(rows, indent=1))
    return 0

