"""``medrecon data pack``: a compact copy of the starter corpus, small enough to travel with a run.

A lent GPU machine has no network, and what travels to it is capped (64 MiB with the project and its
wheels), while the converted starter corpus is about 50 MB. A pack is a starter folder of the same
layout (``manifest.json`` + one NIfTI per source; ``--starter PACK`` works everywhere ``--starter``
does) whose volumes are made smaller, each change stated in its manifest entry (``pack``):

- **in-plane size**: axial slices whose shorter side exceeds ``size`` are resampled (antialiased
  bilinear) so that it is ``size``, the affine updated; training and benchmarks resample slices to
  the prior's size anyway, so at ``size`` = the prior's size CT slices change only by rounding (MR
  volumes resampled this way would change their 99.5th-percentile normalisation slightly, but every
  starter MR volume is at most 256 in-plane and stays as it is at the default size);
- **storage**: CT as uint8 over the starter priors' HU window [-1000, 2000] (steps of 11.8 HU, i.e.
  1/255 of the normalised range, values outside the window clipped as normalisation clips them); MR
  losslessly as uint8 or int16 where the values are integers that fit, else uint16 scaled to the
  volume's maximum (steps of max / 65535).

Validation sources are packed only when asked for (``--only``), as training never reads them.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from medrecon.data import load_starter
from medrecon.data.fetch import MANIFEST_NAME, read_manifest, resolve_dest, sha256_file
from medrecon.data.sources import get_source, training_sources
from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output

CT_PACK_WINDOW = (-1000.0, 2000.0)


def _downsample(study, size: int):
    """``(voxels (S, H, W), affine)`` with the shorter in-plane side at most ``size``."""
    s, h, w = study.shape
    if min(h, w) <= size:
        return study.voxels.numpy(), study.affine.copy(), None
    scale = size / min(h, w)
    nh, nw = round(h * scale), round(w * scale)
    x = F.interpolate(study.voxels[:, None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    affine = study.affine.copy()
    for col, (old, new) in enumerate(((w, nw), (h, nh))):  # affine columns: (w, h, s)
        ratio = old / new
        affine[:3, 3] += affine[:3, col] * (0.5 * ratio - 0.5)  # new voxel centres in old index units
        affine[:3, col] *= ratio
    return x[:, 0].numpy(), affine, [h, w]


def _storage(values: np.ndarray, modality: str) -> tuple[np.ndarray, float, float, str]:
    """``(stored array, slope, intercept, description)`` with ``values = slope * stored + intercept``."""
    if modality == "CT":
        low, high = CT_PACK_WINDOW
        slope = (high - low) / 255.0
        stored = np.round((np.clip(values, low, high) - low) / slope).astype(np.uint8)
        return stored, slope, low, f"uint8 over the HU window [{low:g}, {high:g}] (steps of {slope:.1f} HU)"
    integral = np.array_equal(values, np.round(values))
    if integral and values.min() >= 0 and values.max() <= 255:
        return values.astype(np.uint8), 1.0, 0.0, "uint8, lossless"
    if integral and values.min() >= -32768 and values.max() <= 32767:
        return values.astype(np.int16), 1.0, 0.0, "int16, lossless"
    peak = float(np.abs(values).max()) or 1.0
    slope = peak / 65535.0
    return np.round(np.clip(values, 0, None) / slope).astype(np.uint16), slope, 0.0, f"uint16 scaled to the maximum {peak:.6g}"


def _save_gzip9(image, path: Path) -> None:
    """``.nii.gz`` at gzip level 9 with a zero timestamp (nibabel writes level 1): smaller, and the
    same bytes for the same volume."""
    plain = path.with_name(path.name[: -len(".gz")])
    image.to_filename(str(plain))
    with (open(plain, "rb") as src, open(path, "wb") as raw,
          gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as out):
        out.write(src.read())
    plain.unlink()


def pack(source_dir, out, *, size: int = 256, ids=None, overwrite: bool = False, log=print) -> Path:
    """Write the pack of the starter folder ``source_dir`` (default: ``medrecon data fetch``'s) to the
    new folder ``out`` (atomically): the training split, or ``ids``. Returns ``out``."""
    import nibabel as nib

    if int(size) < 8:
        raise InputError(f"--size must be at least 8, got {size}")
    source_dir = resolve_dest(source_dir)
    manifest = read_manifest(source_dir)
    chosen = [get_source(i) for i in ids] if ids else [s for s in training_sources()]
    packed = copy.deepcopy({k: v for k, v in manifest.items() if k != "sources"})
    packed["sources"] = {}
    packed["pack"] = {"size": int(size), "from": "medrecon data pack", "note": __doc__.split("\n\n")[0]}
    with atomic_output(Path(out), overwrite=overwrite, folder=True) as tmp:
        for source in chosen:
            study = load_starter(source.id, source_dir)  # checksum verified
            voxels, affine, old_plane = _downsample(study, int(size))
            stored, slope, inter, how = _storage(voxels, source.modality)
            image = nib.Nifti1Image(np.ascontiguousarray(np.transpose(stored, (2, 1, 0))), affine)
            image.header.set_slope_inter(slope, inter)
            image.header.set_xyzt_units("mm")
            image.set_qform(affine, code=1)
            image.set_sform(affine, code=1)
            entry = dict(manifest["sources"][source.id])
            name = f"{source.id}.nii.gz"
            _save_gzip9(image, tmp / name)
            entry.update({
                "nifti": name, "nifti_sha256": sha256_file(tmp / name), "dtype": str(stored.dtype),
                "shape": [int(v) for v in stored.shape[::-1]],
                "spacing": [round(float(np.linalg.norm(affine[:3, i])), 6) for i in range(3)],
                "affine": np.round(affine, 6).tolist(),
                "pack": {"from_nifti_sha256": entry.get("nifti_sha256"), "storage": how,
                         "in_plane": "unchanged" if old_plane is None
                         else f"{old_plane[0]}x{old_plane[1]} -> {stored.shape[1]}x{stored.shape[2]}"},
            })
            packed["sources"][source.id] = entry
            log(f"{source.id}: {entry['pack']['in_plane']}, {how}, {(tmp / name).stat().st_size / 2**20:.2f} MiB")
        (tmp / MANIFEST_NAME).write_text(json.dumps(packed, indent=2) + "\n")
    return Path(out)


__all__ = ["pack"]
