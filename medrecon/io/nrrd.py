"""NRRD volumes (the format of the starter corpus sources) read with numpy alone.

Importing this module loads no torch (:func:`read_nrrd` serves :mod:`medrecon.data`'s conversion, which
runs without torch); the functions that make or write a Study import it.

Supports what medical NRRD files use: ``raw`` and ``gzip`` encodings, scalar types from int8 to
float64, either endianness, attached data, ``space directions``/``space origin`` in
``left-posterior-superior`` or ``right-anterior-superior`` space. The affine is returned in RAS
(nibabel's convention) and maps array indices ``(i, j, k)`` in the file's axis order to mm.

Writing (:func:`write_nrrd`): attached gzip data, ``left-posterior-superior`` space, CT as int16 HU
and MR as float32, in the source's axis order when the source was NRRD; the modality goes into a
``medrecon_modality:=`` key/value line and a JSON sidecar (:mod:`medrecon.io.sidecar`).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.io.sidecar import NRRD_KEY, recorded_modality, resolve_modality, staged_sidecar

_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2", "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2", "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "longlong": "i8", "long long": "i8", "int64": "i8", "int64_t": "i8",
    "ulonglong": "u8", "unsigned long long": "u8", "uint64": "u8", "uint64_t": "u8",
    "float": "f4", "double": "f8",
}  # fmt: skip
_SPACE_TO_RAS = {
    "left-posterior-superior": np.diag([-1.0, -1.0, 1.0]),
    "lps": np.diag([-1.0, -1.0, 1.0]),
    "right-anterior-superior": np.eye(3),
    "ras": np.eye(3),
}


@dataclass(frozen=True)
class NrrdVolume:
    """Voxels in the file's axis order (fastest axis first, as NRRD lists ``sizes``), the 4x4 RAS
    affine (mm) and the header fields as read."""

    data: np.ndarray
    affine: np.ndarray
    header: dict


def _vector(text: str) -> np.ndarray:
    numbers = re.findall(r"\(([^)]*)\)", text)
    return np.array([[float(v) for v in n.split(",")] for n in numbers])


def read_nrrd(path: str | Path) -> NrrdVolume:
    """Read a NRRD file (attached data). Raises :class:`InputError` naming what is unsupported."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read NRRD file {path}: {exc.strerror}") from None
    if not raw.startswith(b"NRRD000"):
        raise InputError(f"{path} is not a NRRD file (no NRRD magic line)")
    end = raw.find(b"\n\n")
    if end < 0:
        raise InputError(f"{path}: NRRD header has no terminating blank line")
    header: dict[str, str] = {}
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        header[key.strip().lower()] = value.lstrip("=").strip()
    if "data file" in header or "datafile" in header:
        raise InputError(f"{path}: detached NRRD data files are not supported; convert to attached data")
    try:
        kind = _TYPES[header["type"].lower()]
        sizes = [int(s) for s in header["sizes"].split()]
    except KeyError as exc:
        raise InputError(f"{path}: missing or unsupported NRRD field {exc}") from None
    endian = "<" if header.get("endian", "little") == "little" else ">"
    payload = raw[end + 2 :]
    encoding = header.get("encoding", "raw").lower()
    if encoding in ("gzip", "gz"):
        payload = gzip.decompress(payload)
    elif encoding != "raw":
        raise InputError(f"{path}: NRRD encoding {encoding!r} is not supported (raw and gzip are)")
    dtype = np.dtype(endian + kind)
    count = int(np.prod(sizes))
    if len(payload) < count * dtype.itemsize:
        raise InputError(f"{path}: NRRD data is truncated ({len(payload)} bytes for {count} voxels of {dtype})")
    data = np.frombuffer(payload[: count * dtype.itemsize], dtype=dtype).reshape(sizes[::-1]).transpose()
    affine = np.eye(4)
    if "space directions" in header:
        directions = _vector(header["space directions"])  # one row per axis
        to_ras = _SPACE_TO_RAS.get(header.get("space", "").lower())
        if to_ras is None:
            raise InputError(f"{path}: NRRD space {header.get('space')!r} is not supported")
        origin = _vector(header.get("space origin", "(0,0,0)"))[0]
        affine[:3, :3] = to_ras @ directions.T
        affine[:3, 3] = to_ras @ origin
    return NrrdVolume(np.ascontiguousarray(data.astype(dtype.newbyteorder("="))), affine, header)


def read_nrrd_study(path: str | Path, *, modality: str | None = None, slice_axis: int | None = None):
    """Read a 3-D NRRD volume as a :class:`~medrecon.study.Study` (axial slices by default). The
    modality: the caller's, else the sidecar's or the ``medrecon_modality`` field's."""
    import torch  # noqa: PLC0415 - this module stays torch-free: read_nrrd serves medrecon.data's conversion

    from medrecon.study import Study, axis_closest_to, to_study_layout  # noqa: PLC0415 - torch, as above

    volume = read_nrrd(path)
    tag = volume.header.get(NRRD_KEY.lower())
    modality = resolve_modality(path, modality, recorded_modality(path, tag.upper() if tag else None), "NRRD")
    if volume.data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D NRRD volume, got shape {volume.data.shape}")
    axis = axis_closest_to(volume.affine) if slice_axis is None else slice_axis
    voxels, affine, order = to_study_layout(volume.data.astype(np.float32), volume.affine, axis)
    source = {"format": "nrrd", "path": str(path), "axis_order": list(order), "file_affine": volume.affine.tolist()}
    name = Path(path).name.removesuffix(".nrrd")
    return Study(torch.from_numpy(voxels), affine, modality, source=source, name=name)


def write_nrrd(study, path: str | Path, *, overwrite: bool = False, sidecar: bool = True) -> Path:
    """Write a study as a NRRD file (module docstring), atomically, with its JSON sidecar."""
    from medrecon.study import file_layout  # noqa: PLC0415 - torch, as in read_nrrd_study

    path = Path(path)
    if not path.name.lower().endswith(".nrrd"):
        raise InputError(f"{path}: a NRRD file name ends in .nrrd")
    if study.voxels.is_complex():
        raise InputError(f"{path}: NRRD output takes real voxels (write the magnitude)")
    data, affine = file_layout(study, "nrrd")
    if study.modality == "CT":
        data, type_name = np.clip(np.round(data), -32768, 32767).astype("<i2"), "short"
    else:
        data, type_name = data.astype("<f4"), "float"
    lps = np.diag([-1.0, -1.0, 1.0])
    directions = " ".join("(" + ",".join(f"{v:.10g}" for v in lps @ affine[:3, n]) + ")" for n in range(3))
    origin = "(" + ",".join(f"{v:.10g}" for v in lps @ affine[:3, 3]) + ")"
    header = "\n".join([
        "NRRD0004", "# written by medrecon", f"type: {type_name}", "dimension: 3", "space: left-posterior-superior",
        f"sizes: {' '.join(str(n) for n in data.shape)}", f"space directions: {directions}", "kinds: domain domain domain",
        "endian: little", "encoding: gzip", f"space origin: {origin}", f"{NRRD_KEY}:={study.modality}",
    ]) + "\n\n"
    payload = gzip.compress(np.ascontiguousarray(data.transpose()).tobytes(), compresslevel=6)  # fastest axis first
    with staged_sidecar(study, path, overwrite=overwrite, enabled=sidecar):
        with atomic_output(path, overwrite=overwrite, suffix=".nrrd") as tmp:
            tmp.write_bytes(header.encode("latin-1") + payload)
    return path
