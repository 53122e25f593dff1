"""What NIfTI and NRRD have no field for, recorded where other tools see it too.

NIfTI and NRRD files record voxels and geometry but not the modality. A file medrecon writes must
load back without flags, so the writers record it twice:

- a **BIDS-style JSON sidecar** beside the image, with the same stem (``recon.nii.gz`` ->
  ``recon.json``): ``{"Modality": "CT" | "MR", "medrecon": {...}}`` (BIDS's own key for the
  modality; medrecon's extra entries under their own key), the convention neuroimaging tools know;
- a **short tag in the header**: NIfTI's 80-character ``descrip`` field holds
  ``medrecon modality=CT``; NRRD holds a key/value line ``medrecon_modality:=CT``.

Reading: the sidecar first, then the header tag; a file from elsewhere with neither still needs
the modality from the caller. A modality given by the caller that contradicts the file's is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from medrecon import __version__
from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output

MODALITIES = ("CT", "MR")
_TAG = re.compile(r"medrecon modality=(CT|MR)\b")
NRRD_KEY = "medrecon_modality"


def image_stem(path: str | Path) -> str:
    """The file name without its image suffix (``.nii.gz``, ``.nii``, ``.nrrd``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def sidecar_path(path: str | Path) -> Path:
    """``recon.nii.gz`` -> ``recon.json`` (the same folder)."""
    return Path(path).with_name(image_stem(path) + ".json")


#: Outputs that share a stem share its ``STEM.json``: a DICOM folder (no suffix) and these files.
STEM_SUFFIXES = ("", ".nii.gz", ".nii", ".nrrd", ".h5", ".hdf5")


def check_sidecar_free(image_path: str | Path, side: str | Path | None = None) -> None:
    """Refuse to write the JSON ``side`` (default: :func:`sidecar_path`) of ``image_path`` when it
    exists and belongs to another output of the same stem that exists (``recon.nii.gz`` and
    ``recon.nrrd`` would both own ``recon.json``) — even with overwrite: replacing it would strip
    the other image of its record. A same-stem file or folder without the record takes nothing
    from anyone. The message says how to avoid it."""
    image_path = Path(image_path)
    side = Path(side) if side is not None else sidecar_path(image_path)
    if not side.exists():
        return
    stem = side.name[: -len(".json")]
    for suffix in STEM_SUFFIXES:
        other = side.with_name(stem + suffix)
        if other.name != image_path.name and other.exists() and other != side:
            raise InputError(
                f"{image_path.name} and the existing {other.name} would share the record {side.name}; give this output "
                f"another name (e.g. {stem}-{image_path.name[len(stem):].lstrip('.').split('.')[0] or 'dicom'}"
                f"{image_path.name[len(stem):]}) or move {other.name} away"
            )


def sidecar_fields(study) -> dict:
    """The sidecar's content for ``study`` (also merged into ``medrecon reconstruct``'s record)."""
    return {
        "Modality": study.modality,
        "medrecon": {
            "name": study.name,
            "units": "HU" if study.modality == "CT" else "arbitrary (MR magnitude)",
            "shape_slices_rows_columns": list(study.shape),
            "written_by": f"medrecon {__version__}",
        },
    }


@contextlib.contextmanager
def staged_sidecar(study, image_path: str | Path, *, overwrite: bool, enabled: bool = True):
    """Around the writing of an image: refuse an existing sidecar (without ``overwrite``) before
    anything is written, stage the sidecar, and move it into place only when the block succeeds."""
    if not enabled:
        yield
        return
    side = sidecar_path(image_path)
    check_sidecar_free(image_path, side)
    if side.exists() and not overwrite:
        raise InputError(f"{side} exists; pass --overwrite (overwrite=True) to replace it")
    with atomic_output(side, overwrite=overwrite, suffix=".json") as tmp:
        tmp.write_text(json.dumps(sidecar_fields(study), indent=2) + "\n")
        yield


def header_tag(modality: str) -> str:
    """The NIfTI ``descrip`` text (at most 80 characters)."""
    return f"medrecon modality={modality}"


def modality_from_tag(text: str | bytes | None) -> str | None:
    """The modality a header tag records, or None."""
    if isinstance(text, bytes):
        text = text.decode("latin-1", "replace")
    match = _TAG.search(text or "")
    return match.group(1) if match else None


def recorded_modality(path: str | Path, tag: str | None) -> str | None:
    """The modality the sidecar of ``path`` records, else the header ``tag``'s, else None."""
    side = sidecar_path(path)
    if side.is_file():
        try:
            value = json.loads(side.read_text()).get("Modality")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value.upper() in MODALITIES:
            return value.upper()
    return tag if tag in MODALITIES else None


def resolve_modality(path: str | Path, given: str | None, recorded: str | None, fmt: str) -> str:
    """The study's modality: the caller's, checked against what the file records, or the file's."""
    if given is not None:
        given = str(given).upper()
        if recorded is not None and recorded != given:
            raise InputError(f"{path}: the file records modality {recorded}, not {given}")
        return given
    if recorded is None:
        raise InputError(f"{path}: {fmt} does not record the modality; say whether it is CT or MR")
    return recorded


__all__ = ["NRRD_KEY", "STEM_SUFFIXES", "check_sidecar_free", "header_tag", "image_stem", "modality_from_tag", "recorded_modality",
           "resolve_modality", "sidecar_fields", "sidecar_path", "staged_sidecar"]
