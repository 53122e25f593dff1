"""Non-Cartesian raw MR data (k-space samples at arbitrary 2-D coordinates) and medrecon's own HDF5
layout for it.

The data (:class:`NonCartesianData`) follow the conventions of :mod:`medrecon.operators.nufft` and
:mod:`medrecon.operators.trajectories`: ``kspace`` ``(S, coils, K)`` complex64, S slices sharing one
trajectory ``coords`` ``(K, 2)`` float64 in **radians per pixel** in ``[-pi, pi)`` (column 0 along
the image rows, axis H; column 1 along the columns, axis W), the sample at ``omega`` measuring
``sum_n x[n] exp(-i omega . n) / sqrt(H W)`` with ``n`` the centred pixel index.

medrecon's own HDF5 layout (:func:`write_noncartesian_h5`, :func:`read_noncartesian_h5`)
----------------------------------------------------------------------------------------------
Datasets at the root of the file:

- ``kspace``: ``(S, coils, K)`` complex64;
- ``trajectory``: ``(K, 2)`` float64, radians per pixel in ``[-pi, pi)``, columns (H, W); its
  attribute ``units`` is ``"radians per pixel"``;
- ``coil_maps`` (optional): ``(S or 1, coils, H, W)`` complex64 (one set shared by all slices when 1);
- ``density`` (optional): ``(K,)`` float32 density-compensation weights (non-negative);
- ``reference`` (optional): ``(S, H, W)`` float32 magnitude reference image.

Root attributes: ``format = "medrecon-noncartesian"``, ``version = 1``, ``image_shape = [H, W]``
(int64) and ``attrs``, the JSON text of :attr:`NonCartesianData.attrs`. Values round-trip exactly.

Module layout
-------------
This module holds the data type, medrecon's own layout and :func:`sniff_noncartesian`, which tells
the two layouts apart (so it knows ISMRMRD's group name, :data:`ISMRMRD_GROUP`). ISMRMRD / MRD raw
data (:func:`~medrecon.io.mrd.read_ismrmrd`, :func:`~medrecon.io.mrd.write_ismrmrd`, the
``ismrmrd`` package) are :mod:`medrecon.io.mrd`, which sits above this module: it builds
:class:`NonCartesianData` and reuses the file helpers here. Every reader refuses bad input with a
one-line :class:`~medrecon.errors.InputError` naming the file; writers write to a temporary file and
rename it (:func:`medrecon.io.atomic.atomic_output`), refusing to replace a file unless
``overwrite=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.io.atomic import atomic_output
from medrecon.io.checks import check_slice_selection, is_int
from medrecon.io.validation import PIXEL_SPACING_MM, check_finite, check_image_side, check_range, number
from medrecon.operators.trajectories import check_coordinates

FORMAT = "medrecon-noncartesian"
VERSION = 1
UNITS = "radians per pixel"
ISMRMRD_GROUP = "dataset"  # the HDF5 group of an ISMRMRD (MRD) file: what sniffing looks for


# --------------------------------------------------------------------------------------------------
# the data


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


@dataclass(frozen=True, eq=False)
class NonCartesianData:
    """Non-Cartesian multi-slice, multi-coil k-space with its trajectory (module docstring).

    Attributes:
        kspace: complex ``(S, coils, K)``, kept as complex64: S slices of K samples per coil.
        coords: ``(K, 2)`` float64 trajectory shared by all slices, radians per pixel in
            ``[-pi, pi)``; column 0 along the image rows (H), column 1 along the columns (W).
        image_shape: ``(H, W)`` of the image the samples encode.
        coil_maps: complex64 ``(S or 1, coils, H, W)`` sensitivities, or None.
        density: float32 ``(K,)`` non-negative density-compensation weights, or None.
        reference: float32 ``(S, H, W)`` magnitude reference image, or None.
        attrs: JSON-serialisable extras with string keys, e.g. ``trajectory`` (a
            :class:`~medrecon.operators.trajectories.Trajectory` record), ``acquisition``, ``scale``,
            ``readout_length`` (samples per readout, used by :func:`write_ismrmrd`).

    Construction checks every shape and dtype and raises :class:`ShapeError` /
    :class:`~medrecon.errors.GeometryError` / :class:`InputError`; tensors stay on their device.
    """

    kspace: torch.Tensor = field(repr=False)
    coords: torch.Tensor = field(repr=False)
    image_shape: tuple[int, int]
    coil_maps: torch.Tensor | None = field(default=None, repr=False)
    density: torch.Tensor | None = field(default=None, repr=False)
    reference: torch.Tensor | None = field(default=None, repr=False)
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        put("kspace", _check_kspace(self.kspace))
        s, c, k = self.kspace.shape
        coords = self.coords
        if not isinstance(coords, torch.Tensor) or coords.ndim != 2:
            raise ShapeError(f"NonCartesianData: coords must be a (K, 2) tensor, got {_shape(coords)}")
        put("coords", check_coordinates(coords, "NonCartesianData").to(torch.float64))
        if self.coords.shape[0] != k:
            raise ShapeError(f"NonCartesianData: coords has {self.coords.shape[0]} samples but kspace "
                             f"(S, coils, K) = {(s, c, k)} has K = {k}")
        put("image_shape", _check_image_shape(self.image_shape, "NonCartesianData"))
        h, w = self.image_shape
        if self.coil_maps is not None:
            put("coil_maps", _check_coil_maps(self.coil_maps, s, c, h, w))
        if self.density is not None:
            put("density", _check_density(self.density, k))
        if self.reference is not None:
            put("reference", _check_reference(self.reference, s, h, w))
        put("attrs", _check_attrs(self.attrs))

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def num_samples(self) -> int:
        """K, the samples per slice and coil."""
        return int(self.kspace.shape[2])

    def __repr__(self) -> str:
        extras = [name for name in ("coil_maps", "density", "reference") if getattr(self, name) is not None]
        return (f"NonCartesianData(kspace {tuple(self.kspace.shape)}, image {self.image_shape}, "
                f"with {', '.join(extras) or 'no extras'}, attrs {sorted(self.attrs)})")


def _check_kspace(kspace: Any) -> torch.Tensor:
    if not isinstance(kspace, torch.Tensor) or kspace.ndim != 3 or not kspace.is_complex():
        dtype = f" dtype {kspace.dtype}" if isinstance(kspace, torch.Tensor) else ""
        raise ShapeError(f"NonCartesianData: kspace must be a complex (S, coils, K) tensor, got "
                         f"{_shape(kspace)}{dtype}")
    if 0 in kspace.shape:
        raise ShapeError(f"NonCartesianData: kspace has an empty axis, shape {tuple(kspace.shape)}")
    return kspace.to(torch.complex64)


def _check_image_shape(shape: Any, who: str) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2
            or not all(is_int(n) and n > 0 for n in shape)):
        raise ShapeError(f"{who}: image_shape must be two positive ints (H, W), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_coil_maps(maps: Any, s: int, c: int, h: int, w: int) -> torch.Tensor:
    if (not isinstance(maps, torch.Tensor) or maps.ndim != 4 or not maps.is_complex()
            or maps.shape[0] not in (1, s) or tuple(maps.shape[1:]) != (c, h, w)):
        raise ShapeError(f"NonCartesianData: coil_maps must be complex ({s} or 1, {c}, {h}, {w}) "
                         f"(slices, coils, H, W), got {_shape(maps)}")
    return maps.to(torch.complex64)


def _check_density(density: Any, k: int) -> torch.Tensor:
    if (not isinstance(density, torch.Tensor) or tuple(density.shape) != (k,)
            or density.is_complex() or not density.is_floating_point()):
        raise ShapeError(f"NonCartesianData: density must be real floating point ({k},), got {_shape(density)}")
    if not bool(torch.isfinite(density).all()) or bool((density < 0).any()):
        raise InputError("NonCartesianData: density weights must be finite and non-negative")
    return density.to(torch.float32)


def _check_reference(reference: Any, s: int, h: int, w: int) -> torch.Tensor:
    if (not isinstance(reference, torch.Tensor) or tuple(reference.shape) != (s, h, w)
            or reference.is_complex() or not reference.is_floating_point()):
        raise ShapeError(f"NonCartesianData: reference must be a real ({s}, {h}, {w}) (slices, H, W) "
                         f"magnitude image, got {_shape(reference)}")
    return reference.to(torch.float32)


def _check_attrs(attrs: Any) -> dict:
    if not isinstance(attrs, dict) or not all(isinstance(key, str) for key in attrs):
        raise InputError(f"NonCartesianData: attrs must be a dict with string keys, got {type(attrs).__name__}")
    try:
        json.dumps(attrs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"NonCartesianData: attrs must be JSON-serialisable: {exc}") from None
    return dict(attrs)


# --------------------------------------------------------------------------------------------------
# file helpers (shared with medrecon.io.mrd)


def open_h5(path: Path) -> h5py.File:
    """``path`` opened read-only, or a one-line InputError saying why it cannot be."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    try:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path} is not an HDF5 file")
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the HDF5 file: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array on the CPU (conjugation resolved)."""
    return x.detach().cpu().resolve_conj().numpy()


# --------------------------------------------------------------------------------------------------
# medrecon's HDF5 layout


def write_noncartesian_h5(path: str | os.PathLike, data: NonCartesianData, *, overwrite: bool = False) -> Path:
    """Write ``data`` in medrecon's non-Cartesian HDF5 layout (module docstring); returns the path.

    ``kspace`` ``(S, coils, K)`` complex64, ``trajectory`` ``(K, 2)`` float64 radians per pixel,
    the optional ``coil_maps`` / ``density`` / ``reference`` when present, and the root attributes.
    The file is written under a temporary name and renamed when complete; an existing ``path`` is an
    InputError unless ``overwrite``.
    """
    if not isinstance(data, NonCartesianData):
        raise InputError(f"write_noncartesian_h5 needs a NonCartesianData, got {type(data).__name__}")
    with atomic_output(path, overwrite=overwrite) as tmp, h5py.File(tmp, "x") as hf:
        hf.create_dataset("kspace", data=to_numpy(data.kspace).astype(np.complex64))
        traj = hf.create_dataset("trajectory", data=to_numpy(data.coords).astype(np.float64))
        traj.attrs["units"] = UNITS
        traj.attrs["columns"] = "H (image rows), W (image columns)"
        if data.coil_maps is not None:
            hf.create_dataset("coil_maps", data=to_numpy(data.coil_maps).astype(np.complex64))
        if data.density is not None:
            hf.create_dataset("density", data=to_numpy(data.density).astype(np.float32))
        if data.reference is not None:
            hf.create_dataset("reference", data=to_numpy(data.reference).astype(np.float32))
        hf.attrs["format"] = FORMAT
        hf.attrs["version"] = np.int64(VERSION)
        hf.attrs["image_shape"] = np.asarray(data.image_shape, dtype=np.int64)
        hf.attrs["attrs"] = json.dumps(data.attrs, allow_nan=False)
    return Path(path)


def read_noncartesian_h5(path: str | os.PathLike, *, slices: slice | None = None) -> NonCartesianData:
    """Read a file of medrecon's non-Cartesian HDF5 layout: all slices, or the range ``slices``.

    ``slices`` is a Python slice over the slice axis (positive step, start/stop in ``[-S, S]``);
    only those slices of ``kspace``, ``reference`` and per-slice ``coil_maps`` are read. Returns
    :class:`NonCartesianData` with ``kspace`` ``(s, coils, K)`` complex64, ``coords`` ``(K, 2)``
    float64 radians per pixel, and the optional arrays (None when absent). Anything missing or
    inconsistent is a one-line InputError naming the file.
    """
    path = Path(path)
    with open_h5(path) as hf:
        _check_format(hf, path)
        image_shape = _read_image_shape(hf, path)
        attrs = _read_attrs(hf, path)
        kspace_ds = _dataset(hf, "kspace", path, "(S, coils, K) complex64 k-space")
        if kspace_ds.ndim != 3 or kspace_ds.dtype.kind != "c" or 0 in kspace_ds.shape:
            raise InputError(f"{path}: 'kspace' must be complex (S, coils, K), got {kspace_ds.dtype} "
                             f"{kspace_ds.shape}")
        n_slices, n_coils, n_samples = (int(n) for n in kspace_ds.shape)
        sel = check_slice_selection(slices, n_slices, path)
        coords = _read_trajectory(hf, path, n_samples)
        kspace = np.asarray(kspace_ds[sel], dtype=np.complex64)
        coil_maps = _read_coil_maps(hf, path, sel, n_slices, n_coils, image_shape)
        density = _read_real(hf, "density", path, (n_samples,), None)
        reference = _read_real(hf, "reference", path, (n_slices, *image_shape), sel)
    try:
        data = NonCartesianData(
            kspace=torch.from_numpy(np.ascontiguousarray(kspace)),
            coords=coords,
            image_shape=image_shape,
            coil_maps=coil_maps,
            density=density,
            reference=reference,
            attrs=attrs,
        )
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return check_read_data(data, path)


def check_read_data(data: NonCartesianData, path) -> NonCartesianData:
    """What both non-Cartesian readers check of the data they return: an image within
    :data:`~medrecon.io.validation.MAX_IMAGE_SIDE`, finite k-space (not all zero), coil maps and
    reference, and a usable ``attrs["pixel_mm"]`` (:func:`pixel_mm`); one-line InputErrors naming
    the file."""
    h, w = data.image_shape
    check_image_side(h, path, "the image shape (H)")
    check_image_side(w, path, "the image shape (W)")
    check_finite(data.kspace, path, "'kspace'")
    if not bool(data.kspace.abs().amax() > 0):
        raise InputError(f"{path}: 'kspace' is all zero in the slices read: nothing was measured")
    for name in ("coil_maps", "reference"):
        if getattr(data, name) is not None:
            check_finite(getattr(data, name), path, f"'{name}'")
    pixel_mm(data.attrs, path)
    return data


def pixel_mm(attrs: dict | None, path) -> float:
    """The pixel size ``attrs["pixel_mm"]`` (1 mm when absent): a number within
    :data:`~medrecon.io.validation.PIXEL_SPACING_MM`, or a one-line InputError naming the file."""
    value = (attrs or {}).get("pixel_mm", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{path}: attrs pixel_mm must be a number of mm, got {json.dumps(value)[:60]}")
    return check_range(number(value, path, "attrs pixel_mm"), PIXEL_SPACING_MM, path, "attrs pixel_mm")


def _check_format(hf: h5py.File, path: Path) -> None:
    fmt = hf.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", errors="replace")
    if fmt != FORMAT:
        raise InputError(f"{path} is not a medrecon non-Cartesian file: its root attribute 'format' is "
                         f"{fmt!r}, expected {FORMAT!r}")
    version = hf.attrs.get("version")
    if not is_int(version) or int(version) != VERSION:
        raise InputError(f"{path}: unsupported layout version {version!r} (this reader knows version {VERSION})")


def _read_image_shape(hf: h5py.File, path: Path) -> tuple[int, int]:
    raw = np.asarray(hf.attrs.get("image_shape", []))
    if raw.shape != (2,) or raw.dtype.kind not in "iu" or (raw < 1).any():
        raise InputError(f"{path}: root attribute 'image_shape' must be two positive ints [H, W], got "
                         f"{raw.tolist()}")
    return check_image_side(int(raw[0]), path, "image_shape H"), check_image_side(int(raw[1]), path, "image_shape W")


def _read_attrs(hf: h5py.File, path: Path) -> dict:
    raw = hf.attrs.get("attrs", "{}")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        attrs = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: root attribute 'attrs' is not valid JSON: {exc}") from None
    if not isinstance(attrs, dict):
        raise InputError(f"{path}: root attribute 'attrs' must be the JSON text of an object")
    return attrs


def _dataset(hf: h5py.File, name: str, path: Path, what: str) -> h5py.Dataset:
    if name not in hf or not isinstance(hf[name], h5py.Dataset):
        found = ", ".join(sorted(hf.keys())) or "none"
        raise InputError(f"{path} has no '{name}' dataset ({what}); found: {found}")
    return hf[name]


def _read_trajectory(hf: h5py.File, path: Path, n_samples: int) -> torch.Tensor:
    ds = _dataset(hf, "trajectory", path, "(K, 2) float64 radians per pixel")
    if ds.shape != (n_samples, 2) or ds.dtype.kind != "f":
        raise InputError(f"{path}: 'trajectory' must be real (K, 2) with the k-space's K = {n_samples}, "
                         f"got {ds.dtype} {ds.shape}")
    units = ds.attrs.get("units", UNITS)
    if isinstance(units, bytes):
        units = units.decode("utf-8", errors="replace")
    if units != UNITS:
        raise InputError(f"{path}: 'trajectory' is in {units!r}; this layout stores {UNITS!r}")
    coords = torch.from_numpy(np.asarray(ds[()], dtype=np.float64))
    return check_coordinates(coords, f"{path}: 'trajectory'")


def _read_coil_maps(hf: h5py.File, path: Path, sel: slice, n_slices: int, n_coils: int,
                    image_shape: tuple[int, int]) -> torch.Tensor | None:
    if "coil_maps" not in hf:
        return None
    ds = hf["coil_maps"]
    h, w = image_shape
    if (not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or ds.dtype.kind != "c"
            or ds.shape[0] not in (1, n_slices) or ds.shape[1:] != (n_coils, h, w)):
        got = f"{ds.dtype} {ds.shape}" if isinstance(ds, h5py.Dataset) else "a group"
        raise InputError(f"{path}: 'coil_maps' must be complex ({n_slices} or 1, {n_coils}, {h}, {w}) "
                         f"(slices, coils, H, W), got {got}")
    maps = ds[()] if ds.shape[0] == 1 else ds[sel]
    return torch.from_numpy(np.ascontiguousarray(maps, dtype=np.complex64))


def _read_real(hf: h5py.File, name: str, path: Path, shape: tuple[int, ...], sel: slice | None) -> torch.Tensor | None:
    if name not in hf:
        return None
    ds = hf[name]
    if not isinstance(ds, h5py.Dataset) or ds.shape != shape or ds.dtype.kind != "f":
        got = f"{ds.dtype} {ds.shape}" if isinstance(ds, h5py.Dataset) else "a group"
        raise InputError(f"{path}: '{name}' must be real floating point {shape}, got {got}")
    values = ds[()] if sel is None else ds[sel]
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


# --------------------------------------------------------------------------------------------------
# format detection


def sniff_noncartesian(path: str | os.PathLike) -> str | None:
    """``"medrecon"`` for medrecon's non-Cartesian HDF5 layout, ``"ismrmrd"`` for an ISMRMRD (MRD)
    file (an HDF5 file whose ``dataset`` group holds ``xml`` or ``data``), None for anything else,
    including a missing, unreadable or non-HDF5 file. Never raises for a bad file."""
    try:
        path = Path(path)
        if not path.is_file() or not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as hf:
            fmt = hf.attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode("utf-8", errors="replace")
            if fmt == FORMAT:
                return "medrecon"
            group = hf.get(ISMRMRD_GROUP)
            if isinstance(group, h5py.Group) and ("xml" in group or "data" in group):
                return "ismrmrd"
    except Exception:  # sniffing answers "not this format" for any unreadable file
        return None
    return None


__all__ = [
    "NonCartesianData",
    "check_read_data",
    "pixel_mm",
    "write_noncartesian_h5",
    "read_noncartesian_h5",
    "sniff_noncartesian",
    "FORMAT",
    "VERSION",
]
