"""``medrecon evaluate RECON REFERENCE``: image quality of a reconstruction against a reference study.

Protocols (named in the output so that every number says how it was measured):

- ``window`` (default): both volumes normalised as the starter priors are (CT: HU window
  [-1000, 2000] -> [0, 1]; MR: magnitude / the reference volume's 99.5th percentile, the same
  scale applied to the reconstruction), PSNR per volume and SSIM per slice averaged, data range 1;
- ``fastmri``: the fastMRI protocol on magnitudes in native units — NMSE and PSNR per volume, SSIM
  per slice, all with the reference volume's maximum as data range (:func:`~medrecon.metrics.fastmri_metrics`).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from medrecon.errors import InputError

PROTOCOLS = ("window", "fastmri")


def evaluate_studies(recon, reference, protocol: str = "window") -> dict:
    """Metrics of two :class:`~medrecon.study.Study` objects with the same shape and geometry."""
    from medrecon.metrics import fastmri_metrics, nmse, psnr, ssim  # noqa: PLC0415
    from medrecon.priors.training_data import Normalisation  # noqa: PLC0415

    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; known: {PROTOCOLS}")
    if recon.shape != reference.shape:
        raise InputError(f"the reconstruction {recon.shape} and the reference {reference.shape} differ in shape")
    if not np.allclose(recon.affine, reference.affine, atol=1e-3):
        raise InputError("the reconstruction and the reference have different geometry (affines differ)")
    if recon.modality != reference.modality:
        raise InputError(f"modalities differ: {recon.modality} vs {reference.modality}")
    x = recon.voxels.abs() if recon.voxels.is_complex() else recon.voxels
    ref = reference.voxels.abs() if reference.voxels.is_complex() else reference.voxels
    x, ref = x.to(torch.float64), ref.to(torch.float64)
    if protocol == "fastmri":
        return {"protocol": "fastmri (per-volume NMSE/PSNR, per-slice SSIM, data range = reference max)", **fastmri_metrics(x, ref)}
    norm = Normalisation.for_modality(reference.modality)
    if norm.kind == "hu-window":
        xn, refn = norm.apply(x), norm.apply(ref)
    else:
        scale = float(np.percentile(ref.numpy(), norm.percentile))
        if scale <= 0:
            raise InputError("the reference volume is empty (its 99.5th percentile is 0)")
        xn, refn = (x / scale).clamp(0, 1), (ref / scale).clamp(0, 1)
    return {
        "protocol": f"window ({norm.to_dict()}; PSNR/NMSE per volume, SSIM per slice averaged, data range 1)",
        "psnr": float(psnr(xn, refn, data_range=1.0, per="volume")),
        "ssim": float(ssim(xn, refn, data_range=1.0, per="volume")),
        "nmse": float(nmse(xn, refn, per="volume")),
        "slices": int(x.shape[0]),
    }


def run_evaluate(args) -> int:
    from medrecon.study import load_study, study_format  # noqa: PLC0415

    def load(path):
        if study_format(path) == "dicom":
            return load_study(path)
        if args.modality is None:
            raise InputError(f"{path}: give --modality ct or mr (the file does not record it)")
        return load_study(path, modality=args.modality.upper())

    result = evaluate_studies(load(args.recon), load(args.reference), args.protocol)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
