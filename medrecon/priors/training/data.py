"""Training slices for a prior: axial slices of TRAINING studies, resampled, normalised, augmented.

- Only the training split of :mod:`medrecon.data.sources` is used: a validation source id (given
  directly, recorded in a study's ``source["starter"]``, or as the start of a file name such as
  ``ct-lung1-sample.nii.gz``) raises :class:`~medrecon.errors.InputError`.
- Each slice is scaled so that its shorter side is ``size`` (area-average / bilinear with
  antialiasing) and centre-cropped to ``size x size``
  (:func:`medrecon.priors.normalisation.resample_slices`).
- Normalisation to ``[0, 1]`` (:class:`~medrecon.priors.normalisation.Normalisation`, stated on
  the prior's card): CT ``clip((HU + 1000) / 3000, 0, 1)``; MR ``clip(magnitude / p99.5(volume), 0, 1)``
  with the percentile taken over the whole volume; the volume is normalised at its native
  resolution, then resampled.
- Augmentation (:meth:`TrainingSlices.batch`) draws everything from an explicit
  ``torch.Generator``: a random left-right flip, a small rotation (uniform in
  ``+-rotate_degrees``, ``affine_grid``/``grid_sample``, zero padding = air / background) and an
  optional random ``crop_size`` crop, then, where ``intensity`` is set, a random contrast
  (:func:`medrecon.contrast.random_remap`: gamma, random monotone curves, histogram matching to the
  slices of the ``match_sources`` — real scans of other contrasts in the same dataset — and tissue
  inversion). No global RNG state is touched.
- ``orientations="all"``: volumes with isotropic voxels (spacings within 10%) also give their
  coronal and sagittal slices (superior at the top), so a prior sees every orientation of them.
"""


from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medrecon.contrast import random_remap
from medrecon.data import load_starter, training_sources
from medrecon.data.sources import SOURCES, get_source, validation_sources
from medrecon.errors import InputError
from medrecon.io.studies import load_study
from medrecon.priors.normalisation import Normalisation, resample_slices


def _validation_ids() -> tuple[str, ...]:
    return tuple(s.id for s in validation_sources())


def _matching_source_id(name: str) -> str | None:
    """The starter source id a file or study name starts with (longest match), if any."""
    hits = [s.id for s in SOURCES if name == s.id or name.startswith(s.id + "-") or name.startswith(s.id + ".")]
    return max(hits, key=len) if hits else None


def _check_training_source(source_id: str, modality: str) -> dict:
    src = get_source(source_id)
    if src.split != "train":
        raise InputError(
            f"{source_id} is in the {src.split!r} split; priors are trained on the training split only "
            f"(medrecon.data.training_sources)"
        )
    if src.modality != modality:
        raise InputError(f"{source_id} is {src.modality}, the prior is {modality}")
    return {"id": src.id, "split": src.split, "patient": src.patient}


class TrainingSlices(Dataset):
    """Normalised training slices ``(N, 1, size, size)`` in ``[0, 1]`` plus their provenance.

    ``dataset[i]`` is slice ``i`` without augmentation; :meth:`batch` gathers and augments a batch
    with an explicit generator (what the training loop, :mod:`medrecon.priors.training.loop`, uses).
    """

    def __init__(
        self,
        images: torch.Tensor,
        *,
        modality: str,
        normalisation: Normalisation,
        sources: Sequence[dict] = (),
        crop_size: int | None = None,
        flip: bool = True,
        rotate_degrees: float = 10.0,
        intensity: dict | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1 or images.shape[0] < 1:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"training images must be (N >= 1, 1, H, W), got {got}")
        self.images = images.to(torch.float32).contiguous()
        self.modality = str(modality).upper()
        self.normalisation = normalisation
        self.sources = [dict(s) for s in sources]
        size = min(self.images.shape[-2:])
        if crop_size is not None and not 1 <= int(crop_size) <= size:
            raise InputError(f"crop_size must lie in 1..{size}, got {crop_size}")
        self.crop_size = None if crop_size is None else int(crop_size)
        self.flip = bool(flip)
        self.rotate_degrees = float(rotate_degrees)
        self.intensity = _check_intensity(intensity)
        self._references = self._reference_slices()

    # ---------------------------------------------------------------------------------------- build
    @classmethod
    def from_studies(cls, studies: Iterable, *, size: int = 128, modality: str | None = None, orientations: str = "axial",
                     **options) -> TrainingSlices:
        """From :class:`~medrecon.study.Study` objects of training patients (validation ones refused);
        ``orientations`` ``"axial"`` (default) or ``"all"`` (see the module docstring)."""
        if orientations not in ("axial", "all"):
            raise InputError(f"orientations must be 'axial' or 'all', got {orientations!r}")
        studies = list(studies)
        if not studies:
            raise InputError("no training studies given")
        modality = str(modality or studies[0].modality).upper()
        norm = Normalisation.for_modality(modality)
        val_ids = _validation_ids()
        images, records = [], []
        for study in studies:
            if study.modality != modality:
                raise InputError(f"study {study.name} is {study.modality}, the prior is {modality}")
            starter = (study.source or {}).get("starter") or {}
            sid = starter.get("id") or _matching_source_id(Path(str(study.name)).name)
            if starter.get("split") not in (None, "train") or sid in val_ids:
                raise InputError(
                    f"study {study.name} belongs to the validation split ({sid}); "
                    "priors are trained on the training split only"
                )
            record = _check_training_source(sid, modality) if sid else {"id": study.name, "split": "user"}
            path = (study.source or {}).get("path")
            if path:
                record["path"] = Path(str(path)).name  # the file's name only: records and cards carry no machine paths
            volume = norm.apply(study.voxels)
            planes = _planes(volume, study) if orientations == "all" else {"axial": volume}
            x = torch.cat([resample_slices(v, size) for v in planes.values()])
            record["slices"] = int(x.shape[0])
            record["orientations"] = list(planes)
            images.append(x)
            records.append(record)
        return cls(torch.cat(images), modality=modality, normalisation=norm, sources=records, **options)

    @classmethod
    def from_files(cls, paths: Iterable, *, modality: str, size: int = 128, **options) -> TrainingSlices:
        """From NIfTI/NRRD/DICOM files (``medrecon.io.studies.load_study``). A file whose name starts with
        a validation source id (e.g. ``ct-lung1-sample.nii.gz``) is refused."""
        modality = str(modality).upper()
        val_ids = _validation_ids()
        studies = []
        for p in paths:
            name = Path(p).name
            sid = _matching_source_id(name)
            if sid in val_ids:
                raise InputError(f"{p} is from the validation source {sid}; priors are trained on the training split only")
            study = load_study(p, modality=modality)
            if sid:
                study.name = sid
            studies.append(study)
        return cls.from_studies(studies, size=size, modality=modality, **options)

    @classmethod
    def from_starter(
        cls,
        modality: str,
        *,
        ids: Sequence[str] | None = None,
        dest=None,
        size: int = 128,
        **options,
    ) -> TrainingSlices:
        """From the starter corpus's training split (``medrecon.data.training_sources(modality)``) or
        the given ``ids`` (validation ids refused)."""
        modality = str(modality).upper()
        if ids is None:
            ids = [s.id for s in training_sources(modality)]
        for sid in ids:
            _check_training_source(sid, modality)
        studies = [load_starter(sid, dest) for sid in ids]
        return cls.from_studies(studies, size=size, modality=modality, **options)

    # ------------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def output_size(self) -> int:
        return self.crop_size or self.size

    def describe(self) -> dict:
        return {
            "modality": self.modality,
            "slices": len(self),
            "size": self.size,
            "crop_size": self.crop_size,
            "normalisation": self.normalisation.to_dict(),
            "augmentation": {"flip": self.flip, "rotate_degrees": self.rotate_degrees, "intensity": self.intensity},
            "sources": self.sources,
        }

    def to(self, device) -> TrainingSlices:
        """Keep the slices on ``device`` (augmentation then runs there; the draws stay on the CPU)."""
        self.images = self.images.to(device)
        return self

    def fingerprint(self) -> str:
        """sha256 of the slices (a checkpoint resumes only on the same data)."""
        digest = hashlib.sha256(self.images.detach().cpu().contiguous().numpy().tobytes())
        if self.intensity is not None:  # a run resumes only with the same contrast augmentation
            digest.update(repr(sorted(self.intensity.items())).encode())
        return digest.hexdigest()

    def batch(self, indices, generator: torch.Generator | None = None, *, crop_size: int | None | str = "dataset") -> torch.Tensor:
        """Slices ``indices`` as ``(B, 1, c, c)``, augmented with draws from ``generator`` (a CPU
        generator; ``None`` gives the plain, centre-cropped slices). ``crop_size`` overrides the
        dataset's. Every draw is made on the CPU, whatever device the slices are on, so a batch
        depends only on the generator."""
        c = self.crop_size if crop_size == "dataset" else (None if crop_size is None else int(crop_size))
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[idx.to(self.images.device)]
        b, _, h, w = x.shape
        if c is not None and not 1 <= c <= min(h, w):
            raise InputError(f"crop_size must lie in 1..{min(h, w)}, got {c}")
        dev = x.device
        if generator is not None:
            flips = torch.rand(b, generator=generator) < 0.5
            angles = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(self.rotate_degrees)
            if self.flip:
                x = torch.where(flips.to(dev)[:, None, None, None], x.flip(-1), x)
            if self.rotate_degrees > 0:
                cos, sin = torch.cos(angles), torch.sin(angles)
                zero = torch.zeros_like(cos)
                theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
                grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if c is None or (c == h and c == w):
            return self._contrast(x, generator).contiguous()
        if generator is None:
            top = torch.full((b,), (h - c) // 2, dtype=torch.long)
            left = torch.full((b,), (w - c) // 2, dtype=torch.long)
        else:
            top = torch.randint(0, h - c + 1, (b,), generator=generator)
            left = torch.randint(0, w - c + 1, (b,), generator=generator)
        ar = torch.arange(c)
        rows = (top[:, None] + ar)[:, :, None].to(dev)
        cols = (left[:, None] + ar)[:, None, :].to(dev)
        return self._contrast(x[torch.arange(b, device=dev)[:, None, None], 0, rows, cols][:, None], generator).contiguous()

    def _reference_slices(self) -> torch.Tensor | None:
        """The slices of ``intensity["match_sources"]`` (histogram-matching references), or None."""
        names = (self.intensity or {}).get("match_sources") or []
        if not names:
            return None
        picked, start = [], 0
        for record in self.sources:
            count = int(record.get("slices", 0))
            if record.get("id") in names:
                picked.append(self.images[start : start + count])
            start += count
        known = {r.get("id") for r in self.sources}
        missing = sorted(set(names) - known)
        if missing or not picked:
            raise InputError(f"intensity augmentation: match_sources {missing or names} are not among this dataset's "
                             f"sources {sorted(k for k in known if k)}")
        references = torch.cat(picked)
        keep = references.flatten(1).amax(1) > 0.05  # slices with tissue in them (not the empty ends of a volume)
        return references[keep] if bool(keep.any()) else references

    def _contrast(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.intensity is None or generator is None:
            return x
        options = {k: v for k, v in self.intensity.items() if k != "match_sources"}
        return random_remap(x, generator, references=self._references, **options)


INTENSITY_KEYS = ("p_gamma", "gamma_range", "p_invert", "p_curve", "p_match", "match_sources")
DEFAULT_INTENSITY = {"p_gamma": 0.5, "gamma_range": [0.5, 2.0], "p_invert": 0.25, "p_curve": 0.0, "p_match": 0.0,
                     "match_sources": []}


def _check_intensity(intensity: dict | None) -> dict | None:
    """The contrast augmentation's settings (:data:`INTENSITY_KEYS`), checked: probabilities in
    [0, 1], ``0 < gamma low <= high``, ``match_sources`` (source ids) given when ``p_match > 0``."""
    if intensity is None:
        return None
    unknown = set(intensity) - set(INTENSITY_KEYS)
    if unknown:
        raise InputError(f"intensity augmentation: unknown settings {sorted(unknown)}; known: {list(INTENSITY_KEYS)}")
    out = {**DEFAULT_INTENSITY, **intensity}
    lo, hi = (float(v) for v in out["gamma_range"])
    probabilities = [float(out[k]) for k in ("p_gamma", "p_invert", "p_curve", "p_match")]
    if not (all(0 <= p <= 1 for p in probabilities) and 0 < lo <= hi):
        raise InputError(f"intensity augmentation needs probabilities in [0, 1] and 0 < gamma low <= high, got {out}")
    sources = [str(v) for v in (out["match_sources"] or [])]
    if float(out["p_match"]) > 0 and not sources:
        raise InputError("intensity augmentation: p_match > 0 needs match_sources (training source ids of other contrasts)")
    checked = {"p_gamma": float(out["p_gamma"]), "gamma_range": [lo, hi], "p_invert": float(out["p_invert"])}
    if float(out["p_curve"]) > 0 or float(out["p_match"]) > 0:  # settings of older runs keep their old form
        checked.update(p_curve=float(out["p_curve"]), p_match=float(out["p_match"]), match_sources=sources)
    return checked


def _planes(volume: torch.Tensor, study) -> dict:
    """``{"axial": (S, H, W), ...}``: the axial slices, plus the coronal ``(H, S, W)`` and sagittal
    ``(W, S, H)`` ones where the voxels are isotropic (spacings within 10%), superior at the top."""
    spacing = study.spacing
    if max(spacing) > 1.1 * min(spacing):
        return {"axial": volume}
    stack = volume.flip(0) if study.affine[2, 2] > 0 else volume  # rows run superior -> inferior
    return {"axial": volume, "coronal": stack.permute(1, 0, 2), "sagittal": stack.permute(2, 0, 1)}


__all__ = ["TrainingSlices", "INTENSITY_KEYS", "DEFAULT_INTENSITY"]
