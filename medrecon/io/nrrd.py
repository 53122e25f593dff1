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
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecon.errors import InputError, one_line
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


_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}
_ENDIANS = {"little": "<", "big": ">"}



def _vectors(text: str, path: Path, field: str, count: int) -> list[np.ndarray | None]:
    """The ``(x,y,z)`` vectors (None for ``none``) of a header field, each of 3 finite numbers."""
    tokens = re.findall(r"\(([^)]*)\)|(none)\b|(\S+)", text)
    out = []
    for vector, none, other in tokens:
        if other:
            raise InputError(f"{path}: NRRD field '{field}' must hold (x,y,z) vectors or none, got {text[:80]!r}")
        if none:
            out.append(None)
            continue
        try:
            values = np.array([float(v) for v in vector.split(",")], dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}: NRRD field '{field}' holds a non-numeric vector ({vector[:60]})") from None
        if values.shape != (3,) or not np.all(np.isfinite(values)):
            raise InputError(f"{path}: NRRD field '{field}' needs vectors of 3 finite numbers, got ({vector[:60]})")
        out.append(values)
    if len(out) != count:
        raise InputError(f"{path}: NRRD field '{field}' holds {len(out)} vector(s), {count} needed")
    return out


def _whole_numbers(text: str, path: Path, field: str) -> list[int]:
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        raise InputError(f"{path}: NRRD field '{field}' must be whole numbers, got {text[:80]!r}") from None
    if not values:
        raise InputError(f"{path}: NRRD field '{field}' is empty")
    return values


def read_nrrd(path: str | Path) -> NrrdVolume:
    """Read a NRRD file (attached data). Raises a one-line :class:`InputError` naming the file and
    the field for anything malformed or unsupported: a missing or non-numeric ``sizes``,
    ``dimension`` or ``type``, an ``endian`` other than little/big, an unknown ``encoding``, a
    truncated, corrupt or mislabelled gzip payload, too little data, ``space directions`` that are
    not one ``(x,y,z)`` vector per axis, a non-numeric ``space origin``."""
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
    for field in ("byte skip", "line skip"):
        if header.get(field, "0").strip() != "0":
            raise InputError(f"{path}: NRRD field '{field}' is not supported")
    for field in ("type", "sizes"):
        if field not in header:
            raise InputError(f"{path}: missing NRRD field '{field}'")
    kind = _TYPES.get(header["type"].lower())
    if kind is None:
        raise InputError(f"{path}: NRRD type {header['type'][:40]!r} is not supported")
    sizes = _whole_numbers(header["sizes"], path, "sizes")
    if "dimension" in header:
        dimension = _whole_numbers(header["dimension"], path, "dimension")
        if len(dimension) != 1 or dimension[0] != len(sizes):
            raise InputError(f"{path}: NRRD dimension {header['dimension'][:20]!r} does not match sizes ({len(sizes)} values)")
    if any(n < 1 for n in sizes):
        raise InputError(f"{path}: NRRD sizes {sizes} must all be at least 1")
    endian_text = header.get("endian", "little").lower()
    if endian_text not in _ENDIANS and np.dtype(kind).itemsize > 1:
        raise InputError(f"{path}: NRRD endian {header.get('endian')[:20]!r} is not supported (little or big)")
    dtype = np.dtype(_ENDIANS.get(endian_text, "<") + kind)
    encoding = _ENCODINGS.get(header.get("encoding", "raw").lower())
    if encoding is None:
        raise InputError(f"{path}: NRRD encoding {header.get('encoding')[:20]!r} is not supported (raw and gzip are)")
    payload = raw[end + 2 :]
    if encoding == "gzip":
        if payload[:2] != b"\x1f\x8b":
            raise InputError(f"{path}: NRRD encoding is gzip but the data is not gzip-compressed")
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: NRRD gzip data is damaged ({one_line(exc)}): the file is truncated or corrupt") from None
    elif payload[:2] == b"\x1f\x8b" and len(payload) < int(np.prod(sizes, dtype=np.int64)) * dtype.itemsize:
        raise InputError(f"{path}: NRRD encoding is raw but the data is gzip-compressed (encoding: gzip?)")
    count = int(np.prod(sizes, dtype=np.int64))
    if len(payload) < count * dtype.itemsize:
        raise InputError(f"{path}: NRRD data is truncated ({len(payload)} bytes for {count} voxels of {dtype})")
    data = np.frombuffer(payload[: count * dtype.itemsize], dtype=dtype).reshape(sizes[::-1]).transpose()
    affine = np.eye(4)
    if "space directions" in header:
        directions = _vectors(header["space directions"], path, "space directions", len(sizes))
        if len(sizes) != 3 or any(d is None for d in directions):
            raise InputError(f"{path}: NRRD space directions {header['space directions'][:80]!r}: medrecon reads 3-D volumes "
                             "with a direction for each of their 3 axes")
        to_ras = _SPACE_TO_RAS.get(header.get("space", "").lower())
        if to_ras is None:
            raise InputError(f"{path}: NRRD space {header.get('space')!r} is not supported")
        origin = _vectors(header.get("space origin", "(0,0,0)"), path, "space origin", 1)[0]
        if origin is None:
            raise InputError(f"{path}: NRRD space origin must be a vector (x,y,z)")
        affine[:3, :3] = to_ras @ np.stack(directions, axis=1)
        affine[:3, 3] = to_ras @ origin
    return NrrdVolume(np.ascontiguousarray(data.astype(dtype.newbyteorder("="))), affine, header)


def read_nrrd_study(path: str | Path, *, modality: str | None = None, slice_axis: int | None = None):
    """Read a 3-D NRRD volume as a :class:`~medrecon.study.Study` (axial slices by default). The
    modality: the caller's, else the sidecar's or the ``medrecon_modality`` field's. The file must
    give its geometry (``space`` and ``space directions``); the study passes
    :func:`~medrecon.io.validation.checked_study`."""
    import torch  # noqa: PLC0415 - this module stays torch-free: read_nrrd serves medrecon.data's conversion

    from medrecon.io.validation import Fields, checked_study  # noqa: PLC0415 - torch, as above
    from medrecon.study import axis_closest_to, to_study_layout  # noqa: PLC0415 - torch, as above

    path = Path(path)
    volume = read_nrrd(path)
    tag = volume.header.get(NRRD_KEY.lower())
    modality = resolve_modality(path, modality, recorded_modality(path, tag.upper() if tag else None), "NRRD")
    if volume.data.ndim != 3:
        raise InputError(f"{path}: a {volume.data.ndim}-D NRRD image of sizes {list(volume.data.shape)}; medrecon reads "
                         "3-D volumes (give 2-D images a third axis of size 1)")
    if "space directions" not in volume.header:
        raise InputError(f"{path}: NRRD file without 'space directions': its voxel size and orientation are unknown")
    data = volume.data
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:
        finite = np.abs(data[np.isfinite(data)])
        if finite.size and float(finite.max()) > float(np.finfo(np.float32).max):
            raise InputError(f"{path}: NRRD voxel values reach {float(finite.max()):.3g}, beyond float32")
    usable = np.all(np.linalg.norm(volume.affine[:3, :3], axis=0) > 0)
    axis = slice_axis if slice_axis is not None else (axis_closest_to(volume.affine) if usable else 2)
    with np.errstate(over="ignore", invalid="ignore"):
        voxels, affine, order = to_study_layout(data.astype(np.float32), volume.affine, axis)
    source = {"format": "nrrd", "path": str(path), "axis_order": list(order), "file_affine": volume.affine.tolist()}
    name = path.name.removesuffix(".nrrd")
    fields = Fields(shape="sizes", spacing=tuple(f"space directions (axis {order[k]})" for k in range(3)),
                    intensity="the voxel values (type, endian)", geometry="space directions/space origin")
    return checked_study(torch.from_numpy(voxels), affine, modality, label=path, fields=fields, source=source, name=name)


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
