"""fastMRI raw k-space files (HDF5), single- and multi-coil: read them, and write the same layout.

The layout (Zbontar et al. 2018, "fastMRI: An open dataset and benchmarks for accelerated MRI",
arXiv:1811.08839; the public knee and brain files):

- ``kspace``: ``(slices, H, W)`` (single-coil) or ``(slices, coils, H, W)`` (multi-coil),
  complex64; H is the read-out direction (640 in the knee files, twice oversampled), W the
  phase-encode direction (368 in most knee files), the axis that Cartesian masks sample.
- ``reconstruction_rss`` ``(slices, 320, 320)`` float32 in multi-coil files, ``reconstruction_esc``
  in single-coil files (single-coil files may carry ``reconstruction_rss`` too); absent from the
  test and challenge files.
- ``mask`` ``(W,)``: the sampled columns, only in test/challenge files (their k-space is already
  undersampled).
- ``ismrmrd_header``: the ISMRMRD XML header (namespace ``http://www.ismrm.org/ISMRMRD``), of
  which fastMRI uses ``encoding/encodedSpace/matrixSize`` (x, y, z), ``encoding/reconSpace/
  matrixSize`` (x, y, z) and ``encoding/encodingLimits/kspace_encoding_step_1`` (center, maximum).
- root attributes: ``acquisition`` (e.g. ``CORPD_FBK``, ``CORPDFS_FBK``, ``AXT2``), ``max`` and
  ``norm`` (the maximum and the Euclidean norm of the reconstruction volume), ``patient_id``, and
  ``acceleration`` / ``num_low_frequency`` in test files.

Conventions (the same as fastMRI's data loader, ``fastmri/data/mri_data.py``, and transforms):

- **FFT.** fastMRI's k-space is the centred orthonormal DFT of the image: ``fastmri.ifft2c`` is
  ``fftshift(ifft2(ifftshift(k), norm="ortho"))`` over the last two axes, exactly
  :func:`medrecon.operators.mri.ifft2c`, so a file's k-space feeds medrecon's MRI operators as it is
  (k = 0 at index ``(H // 2, W // 2)``).
- **Zero padding of the phase-encode axis.** ``padding_left = encoded_y // 2 - center`` and
  ``padding_right = padding_left + maximum + 1``, with ``encoded_y`` the encodedSpace matrix size y
  and (center, maximum) those of ``kspace_encoding_step_1``: columns outside
  ``[padding_left, padding_right)`` were never acquired (fastMRI's VarNet zeroes its mask there).
- **Targets.** ``reconstruction_rss`` is ``center_crop(rss(ifft2c(kspace)), (320, 320))``, RSS over
  coils; :func:`rss_image` computes it from k-space. A crop of ``crop`` out of ``size`` starts at
  ``(size - crop) // 2`` (:func:`center_crop`). The fastMRI evaluation protocol (docs/reproduce.md) compares
  against ``reconstruction_rss``.

Reading (:func:`read_fastmri_h5`) loads only the requested slices (an HDF5 hyperslab read); the
header is parsed with :mod:`xml.etree.ElementTree`. Writing (:func:`write_fastmri_h5`) produces the
same layout, with a minimal ISMRMRD header, for simulated raw data; it writes to a temporary file
and renames it, and refuses to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import math
import numbers
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.io.atomic import atomic_output
from medrecon.io.checks import check_slice_selection, is_int
from medrecon.io.validation import check_finite, check_image_side
from medrecon.operators.mri import ifft2c

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = {"rss": "reconstruction_rss", "esc": "reconstruction_esc"}

_ENCODED = ("encoding", "encodedSpace", "matrixSize")
_RECON = ("encoding", "reconSpace", "matrixSize")
_LIMITS = ("encoding", "encodingLimits", "kspace_encoding_step_1")


# --------------------------------------------------------------------------------------------------
# the volume


@dataclass(frozen=True, eq=False)
class FastMRIVolume:
    """The slices read from one fastMRI file.

    Attributes:
        kspace: complex64 ``(slices, coils, H, W)``; single-coil files give ``coils = 1``.
        target: float32 ``(slices, h, w)`` reference image (``reconstruction_rss`` or
            ``reconstruction_esc``), or None when the file has none (test/challenge files).
        target_kind: ``"rss"``, ``"esc"`` or None, saying which dataset ``target`` is.
        mask: float32 0/1 ``(H, W)`` sampling mask from the file's ``mask`` dataset (test files:
            their k-space is already undersampled), or None.
        attrs: the file's root attributes as JSON-friendly Python values (str, int, float, lists).
        encoding_size, recon_size: ``(x, y, z)`` matrix sizes of the header's encodedSpace and
            reconSpace (x is the read-out axis H, y the phase-encode axis W).
        padding_left, padding_right: the acquired phase-encode columns are
            ``[padding_left, padding_right)`` (fastMRI's definition, see the module notes).
        name: the file name (fastMRI seeds its masks from it, ``masks.seed_from_name``).
        multicoil: True for a multi-coil file (4-D ``kspace``), False for a single-coil one.
        slice_indices: indices in the file of the slices held here.
        file_slices: the number of slices in the file.
    """

    kspace: torch.Tensor = field(repr=False)
    target: torch.Tensor | None = field(repr=False)
    target_kind: str | None
    mask: torch.Tensor | None = field(repr=False)
    attrs: dict
    encoding_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int
    name: str
    multicoil: bool
    slice_indices: tuple[int, ...] = ()
    file_slices: int = 0

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def kspace_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the k-space grid."""
        return int(self.kspace.shape[-2]), int(self.kspace.shape[-1])

    @property
    def crop_size(self) -> tuple[int, int]:
        """fastMRI's image crop: the target's ``(h, w)`` when there is a target, else the recon size."""
        if self.target is not None:
            return int(self.target.shape[-2]), int(self.target.shape[-1])
        return self.recon_size[0], self.recon_size[1]

    def metadata(self) -> dict:
        """Everything but the tensors, JSON-serialisable (for the outputs' provenance)."""
        return {
            "format": "fastmri-h5",
            "name": self.name,
            "multicoil": self.multicoil,
            "kspace_shape": list(self.kspace.shape),
            "target_kind": self.target_kind,
            "has_mask": self.mask is not None,
            "encoding_size": list(self.encoding_size),
            "recon_size": list(self.recon_size),
            "padding_left": self.padding_left,
            "padding_right": self.padding_right,
            "slice_indices": list(self.slice_indices),
            "file_slices": self.file_slices,
            "attrs": dict(self.attrs),
        }

    def __repr__(self) -> str:
        target = "none" if self.target is None else f"{self.target_kind} {tuple(self.target.shape)}"
        return (f"FastMRIVolume({self.name!r}, {'multi' if self.multicoil else 'single'}-coil, kspace "
                f"{tuple(self.kspace.shape)}, target {target}, mask {'yes' if self.mask is not None else 'no'}, "
                f"encoding {self.encoding_size}, recon {self.recon_size}, padding "
                f"[{self.padding_left}, {self.padding_right}), slices {_describe_indices(self.slice_indices)} "
                f"of {self.file_slices})")


def _describe_indices(indices: tuple[int, ...]) -> str:
    if len(indices) <= 4:
        return str(list(indices))
    return f"[{indices[0]}, {indices[1]}, ..., {indices[-1]}]"


# --------------------------------------------------------------------------------------------------
# image helpers


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The centred ``shape = (h, w)`` crop of the last two axes of ``x`` (a view).

    fastMRI's convention for any parity: the crop of ``crop`` out of ``size`` starts at
    ``(size - crop) // 2`` (so with an odd difference the extra row/column is dropped at the end).
    """
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"center_crop needs a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ShapeError(f"center_crop needs at least 2 dimensions, got shape {tuple(x.shape)}")
    if (not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2
            or not all(is_int(n) and n > 0 for n in shape)):
        raise ShapeError(f"center_crop: the crop shape must be two positive ints (h, w), got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    size_h, size_w = x.shape[-2], x.shape[-1]
    if h > size_h or w > size_w:
        raise ShapeError(f"center_crop: cannot crop {(h, w)} out of an image of {(size_h, size_w)}")
    top, left = (size_h - h) // 2, (size_w - w) // 2
    return x[..., top:top + h, left:left + w]


def rss_image(kspace: torch.Tensor | FastMRIVolume, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """fastMRI's target image: ``center_crop(rss(ifft2c(kspace)), shape)``, RSS over coils.

    Args:
        kspace: complex k-space ``(slices, coils, H, W)`` (a single-coil volume has coils = 1, and
            its RSS is the magnitude), or a :class:`FastMRIVolume`.
        shape: the crop ``(h, w)``. For a volume it defaults to :attr:`FastMRIVolume.crop_size`
            (the target's size, else the header's recon size); for a tensor, None means no crop.

    Returns:
        real ``(slices, h, w)`` images (float32 for complex64 k-space), the layout of
        ``reconstruction_rss``.
    """
    if isinstance(kspace, FastMRIVolume):
        if shape is None:
            shape = kspace.crop_size
        kspace = kspace.kspace
    if not isinstance(kspace, torch.Tensor):
        raise ShapeError(f"rss_image needs a torch.Tensor or a FastMRIVolume, got {type(kspace).__name__}")
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ShapeError(f"rss_image needs complex k-space (slices, coils, H, W), got shape "
                         f"{tuple(kspace.shape)} dtype {kspace.dtype}")
    image = torch.sqrt(torch.sum(ifft2c(kspace).abs() ** 2, dim=1))
    return image if shape is None else center_crop(image, shape)


# --------------------------------------------------------------------------------------------------
# reading


def read_fastmri_h5(path: str | os.PathLike, *, slices: slice | None = None) -> FastMRIVolume:
    """Read a fastMRI HDF5 file (single- or multi-coil), all slices or the range ``slices``.

    Only the selected slices of ``kspace`` and of the target are read from disk. ``slices`` is a
    Python slice over the file's slice axis with a positive step; its start and stop must lie in
    ``[-n, n]`` for a file of n slices (negative values count from the end) and it must select at
    least one slice. The target is ``reconstruction_esc`` for a single-coil file and
    ``reconstruction_rss`` for a multi-coil one, or the other one when that is the only one there.
    K-space is returned as complex64 (a complex128 file is converted), targets as float32.

    Raises:
        InputError: missing or non-HDF5 file, no ``kspace`` dataset, k-space that is not complex or
            not 3-D/4-D, a slice range outside the file, a missing or malformed ``ismrmrd_header``,
            a target or mask whose shape does not fit the k-space.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such fastMRI file: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file (a fastMRI volume is one .h5 file)")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path} is not an HDF5 file (fastMRI raw data is HDF5 with a 'kspace' dataset)")
    try:
        hf = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot open the HDF5 file: {exc}") from None
    with hf:
        if "kspace" not in hf or not isinstance(hf["kspace"], h5py.Dataset):
            found = ", ".join(sorted(hf.keys())) or "none"
            raise InputError(f"{path} has no 'kspace' dataset, so it is not fastMRI raw data; "
                             f"found: {found}")
        ds = hf["kspace"]
        if ds.ndim not in (3, 4):
            raise InputError(f"{path}: 'kspace' must be (slices, H, W) for single-coil or "
                             f"(slices, coils, H, W) for multi-coil data, got {ds.ndim}-D {ds.shape}")
        if ds.dtype.kind != "c":
            raise InputError(f"{path}: 'kspace' must be complex (complex64), got {ds.dtype}")
        multicoil = ds.ndim == 4
        n_slices = int(ds.shape[0])
        if 0 in ds.shape:
            axes = ("slices", "coils", "H", "W") if multicoil else ("slices", "H", "W")
            empty = ", ".join(a for a, n in zip(axes, ds.shape, strict=True) if n == 0)
            raise InputError(f"{path}: 'kspace' {ds.shape} has no {empty}")
        sel = _check_slices(slices, n_slices, path)
        height, width = int(ds.shape[-2]), int(ds.shape[-1])
        check_image_side(height, path, "'kspace' H (rows)")
        check_image_side(width, path, "'kspace' W (columns)")

        header = _read_header(hf, path)
        try:
            kspace = np.asarray(ds[sel], dtype=np.complex64)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: cannot read 'kspace': {str(exc).strip().splitlines()[0][:200]}") from None
        check_finite(kspace, path, "'kspace'")
        if not np.any(kspace):
            raise InputError(f"{path}: 'kspace' is all zero in the slices read: nothing was measured")
        if not multicoil:
            kspace = kspace[:, None]

        target, target_kind = _read_target(hf, path, multicoil, sel, n_slices)
        mask = _read_mask(hf, path, height, width)
        attrs = {str(k): _json_value(v) for k, v in hf.attrs.items()}

    return FastMRIVolume(
        kspace=torch.from_numpy(np.ascontiguousarray(kspace)),
        target=target,
        target_kind=target_kind,
        mask=mask,
        attrs=attrs,
        encoding_size=header["encoding_size"],
        recon_size=header["recon_size"],
        padding_left=header["padding_left"],
        padding_right=header["padding_right"],
        name=path.name,
        multicoil=multicoil,
        slice_indices=tuple(range(n_slices)[sel]),
        file_slices=n_slices,
    )


def _check_slices(slices: slice | None, n: int, path: Path) -> slice:
    if slices is None and n == 0:
        raise InputError(f"{path}: 'kspace' holds no slice")
    return check_slice_selection(slices, n, path)


def _header_root(hf: h5py.File, path: Path) -> ET.Element:
    if "ismrmrd_header" not in hf:
        raise InputError(f"{path} has no 'ismrmrd_header' dataset: fastMRI files carry the ISMRMRD "
                         "XML header, from which the encoding and recon sizes are read")
    if not isinstance(hf["ismrmrd_header"], h5py.Dataset):
        raise InputError(f"{path}: 'ismrmrd_header' must be a dataset holding the XML header, not a group")
    raw = hf["ismrmrd_header"][()]
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.size == 1 else raw.tobytes()
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes):
        raise InputError(f"{path}: 'ismrmrd_header' must hold XML bytes, got {type(raw).__name__}")
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        raise InputError(f"{path}: 'ismrmrd_header' is not valid XML: {exc}") from None


def _header_int(root: ET.Element, parts: tuple[str, ...], path: Path) -> int:
    prefix = f"{{{ISMRMRD_NAMESPACE}}}" if root.tag.startswith(f"{{{ISMRMRD_NAMESPACE}}}") else ""
    node = root
    for i, part in enumerate(parts):
        node = node.find(prefix + part)
        if node is None:
            raise InputError(f"{path}: malformed 'ismrmrd_header': element {'/'.join(parts[:i + 1])} "
                             f"is missing (needed: {'/'.join(parts)})")
    text = (node.text or "").strip()
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path}: malformed 'ismrmrd_header': {'/'.join(parts)} must be an integer, "
                         f"got {text!r}") from None


def _read_header(hf: h5py.File, path: Path) -> dict:
    root = _header_root(hf, path)
    encoding_size = tuple(_header_int(root, _ENCODED + (a,), path) for a in "xyz")
    recon_size = tuple(_header_int(root, _RECON + (a,), path) for a in "xyz")
    center = _header_int(root, _LIMITS + ("center",), path)
    maximum = _header_int(root, _LIMITS + ("maximum",), path)
    padding_left = encoding_size[1] // 2 - center
    return {
        "encoding_size": encoding_size,
        "recon_size": recon_size,
        "padding_left": padding_left,
        "padding_right": padding_left + maximum + 1,
    }


def _read_target(hf: h5py.File, path: Path, multicoil: bool, sel: slice,
                 n_slices: int) -> tuple[torch.Tensor | None, str | None]:
    order = ("rss", "esc") if multicoil else ("esc", "rss")
    kind = next((k for k in order if TARGET_KEYS[k] in hf), None)
    if kind is None:
        return None, None
    key = TARGET_KEYS[kind]
    ds = hf[key]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or ds.shape[0] != n_slices:
        shape = ds.shape if isinstance(ds, h5py.Dataset) else "a group"
        raise InputError(f"{path}: '{key}' must be (slices, h, w) with the k-space's {n_slices} slices, "
                         f"got {shape}")
    if ds.dtype.kind != "f":
        raise InputError(f"{path}: '{key}' must be real floating point (float32), got {ds.dtype}")
    target = np.ascontiguousarray(ds[sel], dtype=np.float32)
    check_finite(target, path, f"'{key}'")
    return torch.from_numpy(target), kind


def _read_mask(hf: h5py.File, path: Path, height: int, width: int) -> torch.Tensor | None:
    if "mask" not in hf:
        return None
    raw = np.asarray(hf["mask"][()])
    if raw.shape not in ((width,), (height, width)):
        raise InputError(f"{path}: 'mask' must be (W,) = ({width},) (one entry per k-space column) or "
                         f"(H, W) = ({height}, {width}), got {raw.shape}")
    if raw.dtype.kind not in "biuf" or not np.isin(raw, (0, 1)).all():
        raise InputError(f"{path}: 'mask' must hold only 0 and 1, got dtype {raw.dtype} with values "
                         f"{np.unique(raw)[:5]}")
    mask = np.broadcast_to(raw.astype(np.float32), (height, width))
    return torch.from_numpy(np.ascontiguousarray(mask))


def _json_value(value: Any) -> Any:
    """An HDF5 attribute as a JSON-friendly Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()] if value.ndim else _json_value(value.item())
    if isinstance(value, np.generic):
        return _json_value(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    return str(value)


# --------------------------------------------------------------------------------------------------
# writing


def _as_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().resolve_conj().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise InputError(f"write_fastmri_h5: {what} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _size3(value: Any, default: tuple[int, int, int], what: str) -> tuple[int, int, int]:
    if value is None:
        return default
    if (not isinstance(value, (tuple, list)) or len(value) not in (2, 3)
            or not all(is_int(v) and v > 0 for v in value)):
        raise InputError(f"write_fastmri_h5: {what} must be 2 or 3 positive ints (x, y[, z]), got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]) if len(value) == 3 else 1)


def ismrmrd_header_xml(encoding_size: tuple[int, int, int], recon_size: tuple[int, int, int],
                       center: int, maximum: int) -> bytes:
    """A minimal ISMRMRD header with what fastMRI reads, valid against the ISMRMRD schema.

    The schema requires a field of view and a resonance frequency, which simulated data does not
    have: the field of view is written as the matrix size (1 mm per sample, nominal) and the
    frequency as 0 (unknown). ``kspace_encoding_step_1`` gets minimum 0 and the given maximum and
    center.
    """
    def matrix(size):
        return "".join(f"<{a}>{v}</{a}>" for a, v in zip("xyz", size))

    def space(tag, size):
        return (f"<{tag}><matrixSize>{matrix(size)}</matrixSize>"
                f"<fieldOfView_mm>{matrix(size)}</fieldOfView_mm></{tag}>")

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{ISMRMRD_NAMESPACE}">'
        "<experimentalConditions><H1resonanceFrequency_Hz>0</H1resonanceFrequency_Hz></experimentalConditions>"
        "<encoding>"
        f"{space('encodedSpace', encoding_size)}{space('reconSpace', recon_size)}"
        "<encodingLimits><kspace_encoding_step_1>"
        f"<minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center>"
        "</kspace_encoding_step_1></encodingLimits>"
        "<trajectory>cartesian</trajectory>"
        "</encoding></ismrmrdHeader>\n"
    ).encode()


def _attr_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return np.bool_(value)
    if is_int(value):
        return np.int64(value)
    if isinstance(value, numbers.Real):
        return np.float64(value)
    if isinstance(value, (list, tuple, np.ndarray)) and np.asarray(value).dtype.kind in "biuf":
        return np.asarray(value)
    raise InputError(f"write_fastmri_h5: attribute {key!r} must be a str, a number or a list of "
                     f"numbers, got {type(value).__name__}")


def write_fastmri_h5(
    path: str | os.PathLike,
    kspace: torch.Tensor | np.ndarray,
    *,
    target: torch.Tensor | np.ndarray | None = None,
    target_kind: str = "rss",
    attrs: Mapping[str, Any] | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    encoding_size: tuple[int, ...] | None = None,
    recon_size: tuple[int, ...] | None = None,
    encoding_limits: tuple[int, int] | None = None,
    multicoil: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write k-space (and optionally a target and a mask) in the fastMRI layout; returns the path.

    Args:
        kspace: complex ``(slices, H, W)`` (single-coil) or ``(slices, coils, H, W)`` (multi-coil),
            stored as complex64.
        target: real ``(slices, h, w)``, stored as float32 in ``reconstruction_<target_kind>``.
        target_kind: ``"rss"`` or ``"esc"``.
        attrs: root attributes (str, numbers, lists of numbers), e.g. ``acquisition``,
            ``patient_id``, ``acceleration``. With a target, ``max`` and ``norm`` default to the
            target volume's maximum and Euclidean norm, as in the public files.
        mask: 0/1 ``(W,)``, or ``(H, W)`` whose rows are all equal; stored as the ``(W,)`` boolean
            ``mask`` of the test files.
        encoding_size, recon_size: ``(x, y[, z])`` of the header (z defaults to 1); default
            ``(H, W, 1)`` and the target's ``(h, w, 1)`` (``(H, W, 1)`` without a target).
        encoding_limits: ``(center, maximum)`` of ``kspace_encoding_step_1``; default
            ``(y // 2, y - 1)`` with y the encoded size y, i.e. no zero padding
            (``padding_left = 0``, ``padding_right = y``).
        multicoil: None follows the k-space's dimension; False stores 4-D k-space with one coil as
            a single-coil file; True stores 3-D k-space as a multi-coil file with one coil.
        overwrite: replace an existing file (otherwise that is an InputError).

    The file is written to a temporary name in the same folder and renamed when complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass overwrite=True to replace it")
    if path.exists() and not path.is_file():
        raise InputError(f"{path} exists and is not a file")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")

    k = _as_numpy(kspace, "kspace")
    if k.ndim not in (3, 4) or not np.iscomplexobj(k):
        raise InputError(f"write_fastmri_h5: kspace must be complex (slices, H, W) or "
                         f"(slices, coils, H, W), got shape {k.shape} dtype {k.dtype}")
    if multicoil is None:
        multicoil = k.ndim == 4
    if multicoil and k.ndim == 3:
        k = k[:, None]
    elif not multicoil and k.ndim == 4:
        if k.shape[1] != 1:
            raise InputError(f"write_fastmri_h5: multicoil=False needs one coil, got {k.shape[1]}")
        k = k[:, 0]
    if k.shape[0] == 0 or 0 in k.shape:
        raise InputError(f"write_fastmri_h5: kspace has an empty axis, shape {k.shape}")
    n_slices, height, width = k.shape[0], k.shape[-2], k.shape[-1]

    tgt = None
    if target is not None:
        if target_kind not in TARGET_KEYS:
            raise InputError(f"write_fastmri_h5: target_kind must be one of {sorted(TARGET_KEYS)}, "
                             f"got {target_kind!r}")
        tgt = _as_numpy(target, "target")
        if tgt.ndim != 3 or tgt.shape[0] != n_slices or np.iscomplexobj(tgt) or tgt.dtype.kind not in "biuf":
            raise InputError(f"write_fastmri_h5: target must be real (slices, h, w) with the k-space's "
                             f"{n_slices} slices, got shape {tgt.shape} dtype {tgt.dtype}")
        tgt = tgt.astype(np.float32)

    col = None
    if mask is not None:
        m = _as_numpy(mask, "mask")
        if m.shape not in ((width,), (height, width)) or not np.isin(m, (0, 1)).all():
            raise InputError(f"write_fastmri_h5: mask must be 0/1 of shape ({width},) or ({height}, "
                             f"{width}), got shape {m.shape}")
        if m.ndim == 2:
            if not (m == m[:1]).all():
                raise InputError("write_fastmri_h5: the fastMRI layout stores a column mask (W,); "
                                 "this (H, W) mask differs between rows")
            m = m[0]
        col = m.astype(bool)

    enc = _size3(encoding_size, (height, width, 1), "encoding_size")
    rec_default = (tgt.shape[1], tgt.shape[2], 1) if tgt is not None else (height, width, 1)
    rec = _size3(recon_size, rec_default, "recon_size")
    if encoding_limits is None:
        center, maximum = enc[1] // 2, enc[1] - 1
    else:
        if (not isinstance(encoding_limits, (tuple, list)) or len(encoding_limits) != 2
                or not all(is_int(v) and v >= 0 for v in encoding_limits)
                or encoding_limits[0] > encoding_limits[1]):
            raise InputError("write_fastmri_h5: encoding_limits must be (center, maximum), two ints "
                             f"with 0 <= center <= maximum, got {encoding_limits!r}")
        center, maximum = int(encoding_limits[0]), int(encoding_limits[1])

    root_attrs: dict[str, Any] = {}
    if tgt is not None:
        root_attrs["max"] = float(tgt.max())
        root_attrs["norm"] = float(np.linalg.norm(tgt.astype(np.float64)))
    for key, value in dict(attrs or {}).items():
        if not isinstance(key, str) or not key:
            raise InputError(f"write_fastmri_h5: attribute names must be non-empty strings, got {key!r}")
        root_attrs[key] = value
    root_attrs = {key: _attr_value(key, value) for key, value in root_attrs.items()}

    with atomic_output(path, overwrite=overwrite) as tmp, h5py.File(tmp, "x") as hf:
        hf.create_dataset("ismrmrd_header", data=np.bytes_(ismrmrd_header_xml(enc, rec, center, maximum)))
        hf.create_dataset("kspace", data=np.ascontiguousarray(k, dtype=np.complex64))
        if tgt is not None:
            hf.create_dataset(TARGET_KEYS[target_kind], data=tgt)
        if col is not None:
            hf.create_dataset("mask", data=col)
        for key, value in root_attrs.items():
            hf.attrs[key] = value
    return path


__all__ = [
    "FastMRIVolume",
    "read_fastmri_h5",
    "write_fastmri_h5",
    "center_crop",
    "rss_image",
    "ismrmrd_header_xml",
    "ISMRMRD_NAMESPACE",
    "TARGET_KEYS",
]
