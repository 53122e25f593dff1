"""Rebuild the small sample studies in data/ from the starter corpus (see data/README.md).

    medrecon data fetch --dest STARTER
    python data/make_samples.py STARTER

STARTER holds the converted volumes ``<id>.nii.gz`` written by ``medrecon data fetch`` (the
pyradiomics NRRD originals, ``lung1_image.nrrd`` etc., are accepted too with ``--nrrd``).
Writes, next to this script:

- ``ct-lung1-sample.nii.gz`` and ``ct-lung1-sample-dicom/``: 8 axial slices of the validation CT
  patient ct-lung1, equally spaced around the middle of the volume, reduced in-plane from
  512x512 to 256x256 (area averaging), HU as int16; the DICOM series is written by medrecon;
- ``mr-brain2-sample.nii.gz``: 8 axial slices of the validation MR patient mr-brain2, 256x256;
- ``train/ct-lung2-train64.nii.gz`` and ``train/mr-brain1-train64.nii.gz``: 16 axial slices of a
  training patient each, reduced to 64x64, for tests that train a tiny prior (training data:
  never use them for validation).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medrecon.io.dicom import write_dicom_series
from medrecon.io.nifti import write_nifti
from medrecon.study import Study, load_study

HERE = Path(__file__).resolve().parent
SOURCES = {"ct-lung1": "lung1_image", "mr-brain2": "brain2_image", "ct-lung2": "lung2_image", "mr-brain1": "brain1_image"}


def pick(study: Study, n_slices: int, size: int) -> Study:
    """``n_slices`` equally spaced slices (a step of about 60% of the depth / n) centred in the
    volume, area-averaged in-plane to ``size``."""
    depth = study.shape[0]
    step = max(1, int(0.6 * (depth - 1) // (n_slices - 1)))
    start = int(round(0.5 * (depth - 1 - step * (n_slices - 1))))
    index = start + step * np.arange(n_slices)
    factor = study.shape[1] // size
    if study.shape[1] % size or study.shape[2] != study.shape[1]:
        raise SystemExit(f"{study.name}: expected square slices divisible by {size}, got {study.shape[1:]}")
    voxels = study.voxels[index].float()
    if factor > 1:
        voxels = torch.nn.functional.avg_pool2d(voxels[:, None], factor)[:, 0]
    voxels = torch.round(voxels)  # keep integer values (HU, and the integer MR intensities)
    affine = study.affine.copy()
    affine[:3, 0] *= factor
    affine[:3, 1] *= factor
    # the first in-plane sample of the reduced grid sits at the centre of the first block
    affine[:3, 3] += 0.5 * (factor - 1) / factor * (affine[:3, 0] + affine[:3, 1])
    affine[:3, 3] += index[0] * affine[:3, 2]
    affine[:3, 2] *= step
    source = {"format": "sample", "path": study.source.get("path"), "slices": index.tolist(), "reduction": factor}
    return replace(study, voxels=voxels, affine=affine, source=source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("starter", type=Path, help="folder with the starter volumes")
    parser.add_argument("--nrrd", action="store_true", help="the folder holds the pyradiomics .nrrd originals")
    args = parser.parse_args()

    def load(source_id: str) -> Study:
        modality = source_id[:2].upper()
        name = f"{SOURCES[source_id]}.nrrd" if args.nrrd else f"{source_id}.nii.gz"
        return load_study(args.starter / name, modality=modality)

    ct = pick(load("ct-lung1"), 8, 256)
    write_nifti(replace(ct, name="ct-lung1-sample"), HERE / "ct-lung1-sample.nii.gz", overwrite=True)
    write_dicom_series(
        replace(ct, name="ct-lung1-sample"), HERE / "ct-lung1-sample-dicom", overwrite=True,
        description="sample: 8 slices of ct-lung1 (pyradiomics test data), 256x256",
    )
    mr = pick(load("mr-brain2"), 8, 256)
    write_nifti(replace(mr, name="mr-brain2-sample"), HERE / "mr-brain2-sample.nii.gz", overwrite=True)
    (HERE / "train").mkdir(exist_ok=True)
    for source_id, size in (("ct-lung2", 64), ("mr-brain1", 64)):
        study = pick(load(source_id), 16, size)
        write_nifti(study, HERE / "train" / f"{source_id}-train64.nii.gz", overwrite=True)
    for path in sorted(HERE.rglob("*")):
        if path.is_file() and path.suffix != ".py":
            print(f"{path.relative_to(HERE)}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
