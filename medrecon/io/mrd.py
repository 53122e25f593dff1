"""ISMRMRD / MRD raw data (non-Cartesian, 2-D, multi-slice) read and written through the ``ismrmrd``
package, as :class:`~medrecon.io.noncartesian.NonCartesianData`.

The data follow the conventions of :mod:`medrecon.io.noncartesian` (``kspace`` ``(S, coils, K)``
complex64, one trajectory ``coords`` ``(K, 2)`` in radians per pixel, columns (H, W)); this module
maps them to and from MRD files.

The file
--------
The file is an HDF5 file with a group ``dataset`` holding ``xml`` (the XML header) and ``data``
(one record per readout: acquisition header, trajectory, samples), as the ``ismrmrd`` package
writes it (the MRD documentation, ``doc/mrd_files.md`` and ``doc/mrd_raw_data.md`` of the ISMRMRD
repository). One acquisition holds one readout (a radial spoke, a spiral interleave) of all coils:
``data`` ``(active_channels, number_of_samples)`` complex64 and ``traj``
``(number_of_samples, trajectory_dimensions = 2)`` float32 ``(kx, ky)``.

**Axes.** ``x`` of the header's ``encodedSpace`` / ``reconSpace`` ``matrixSize`` is the image's H
axis (rows) and ``y`` its W axis (columns), as in :mod:`medrecon.io.kspace` (fastMRI: x the
read-out axis H); ``kx = traj[:, 0]`` goes with ``coords[:, 0]`` (H) and ``ky = traj[:, 1]`` with
``coords[:, 1]`` (W).

**Trajectory units.** The MRD specification gives the layout of ``traj`` but no unit (mrpro's
reader says as much and rescales). The convention of Gadgetron, the reference consumer of MRD raw
data, is implemented here: each coordinate is k-space position in cycles per field of view divided
by the encoded matrix size along that axis, i.e. **cycles per pixel**, so the edge of k-space is at
``+-0.5`` (Gadgetron's ``radial_utilities.h``: "radial trajectory in the normalized range
[-1/2;1/2]"; its spiral trajectories are divided by ``2 krmax``, the k-space diameter, in
``toolboxes/mri/spiral/vds.cpp``). Hence

    omega (radians per pixel) = 2 pi * traj,        traj = omega / (2 pi) in [-0.5, 0.5).

The writer stores the float32 nearest to ``omega / (2 pi)``, except that a value rounding up to
``+0.5`` is stored as the largest float32 below it, so a written file stays inside ``[-0.5, 0.5)``.
The reader accepts ``[-0.5, 0.5]`` (Gadgetron's closed range) and maps ``+0.5`` to ``-0.5``, the
same frequency (the model is 2 pi periodic in omega); anything outside is an
:class:`~medrecon.errors.InputError`.

**Header.** Written: ``experimentalConditions/H1resonanceFrequency_Hz`` 0 (unknown), encoded and
recon spaces ``(x, y, z) = (H, W, 1)`` with a nominal field of view of 1 mm per pixel,
``encodingLimits`` ``kspace_encoding_step_1`` (readouts) and ``slice``, ``trajectory``
``radial``/``spiral`` from ``attrs["trajectory"]["kind"]`` (``other`` otherwise), and
``userParameters/userParameterString`` ``medrecon_attrs``, the JSON text of ``attrs``. Read: the
image shape from ``encodedSpace`` (the grid the trajectory is normalised to); ``attrs`` from
``medrecon_attrs`` where present (for a foreign file: ``ismrmrd_trajectory``, and ``recon_shape``
where ``reconSpace`` differs), plus ``readout_length``.

**Acquisitions.** The writer splits each slice's K samples into readouts of
``attrs["readout_length"]`` samples (K when absent), acquisition ``r`` of slice ``s`` carrying
``idx.slice = s``, ``idx.kspace_encode_step_1 = r``, the first/last-in-slice flags and the sample
nearest ``k = 0`` as ``center_sample``. The reader skips readouts flagged as noise, navigator,
phase-correction, dummy-scan, feedback, surface-coil-correction or calibration-only data, drops
``discard_pre`` / ``discard_post`` samples, orders each slice's readouts by
``kspace_encode_step_1`` (file order among equal ones) and requires one encoding space, one value
of every other loop counter (average, contrast, phase, repetition, set, ``kspace_encode_step_2``),
the same coil count and readout length everywhere, the same number of readouts and the same
trajectory in every slice.

Coil maps, density weights and reference images are not MRD raw data: :func:`write_ismrmrd` does
not store them and :func:`read_ismrmrd` returns None for them. (Gadgetron passes spiral density
weights as a third trajectory dimension internally, but MRD files use ``trajectory_dimensions = 3``
for 3-D ``(kx, ky, kz)``, so that is not a standard place.)

Module layout: this module sits above :mod:`medrecon.io.noncartesian` (the data type, its checks,
the HDF5 file helpers, and :func:`~medrecon.io.noncartesian.sniff_noncartesian`, which tells an MRD
file from medrecon's own layout). The ``ismrmrd`` package is imported on first use (an optional
extra, ``pip install 'medrecon[ismrmrd]'``; :class:`~medrecon.errors.MissingResourceError` without
it). Every reader refuses bad input with a one-line :class:`~medrecon.errors.InputError` naming the
file; writers write to a temporary file and rename it (:func:`medrecon.io.atomic.atomic_output`),
refusing to replace a file unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from medrecon.errors import InputError, MissingResourceError
from medrecon.io.atomic import atomic_output
from medrecon.io.checks import check_slice_selection, is_int
from medrecon.io.noncartesian import ISMRMRD_GROUP, NonCartesianData, check_read_data, one_line, open_h5, to_numpy
from medrecon.io.validation import check_image_side

ATTRS_PARAMETER = "medrecon_attrs"  # the user parameter holding the JSON text of attrs
TRAJECTORY_TYPES = ("radial", "spiral")  # attrs["trajectory"]["kind"] values MRD names

# MRD acquisition flags (bit numbers, 1-based) of readouts that are not imaging data
_SKIPPED_FLAGS = {
    19: "noise measurement",
    20: "parallel-imaging calibration only",
    23: "navigator",
    24: "phase correction",
    26: "HP feedback",
    27: "dummy scan",
    28: "RT feedback",
    29: "surface-coil correction scan",
}
_FIRST_IN_SLICE, _LAST_IN_SLICE, _LAST_IN_MEASUREMENT = 7, 8, 25
_SINGLE_COUNTERS = ("kspace_encode_step_2", "average", "contrast", "phase", "repetition", "set")


def _import_ismrmrd(verb: str):
    try:
        import ismrmrd
        import ismrmrd.xsd
    except ImportError:
        raise MissingResourceError(
            f"{verb} ISMRMRD files needs the ismrmrd package (pip install 'medrecon[ismrmrd]')"
        ) from None
    return ismrmrd


def _readout_length(data: NonCartesianData) -> int:
    length = data.attrs.get("readout_length", data.num_samples)
    if not is_int(length) or length < 1 or data.num_samples % length:
        raise InputError(f"write_ismrmrd: attrs['readout_length'] must be a positive int dividing the "
                         f"{data.num_samples} samples per slice, got {length!r}")
    if length > np.iinfo(np.uint16).max:
        raise InputError(f"write_ismrmrd: readouts of {length} samples exceed the MRD limit of 65535; "
                         "set attrs['readout_length']")
    return int(length)


def _trajectory_type(attrs: dict) -> str:
    record = attrs.get("trajectory")
    kind = record.get("kind") if isinstance(record, dict) else None
    return kind if kind in TRAJECTORY_TYPES else "other"


def _cycles_per_pixel(coords: torch.Tensor) -> np.ndarray:
    """``(K, 2)`` float32 ``omega / (2 pi)`` kept inside ``[-0.5, 0.5)``."""
    k = (to_numpy(coords).astype(np.float64) / (2 * math.pi)).astype(np.float32)
    below_half = np.nextafter(np.float32(0.5), np.float32(0.0))
    return np.where(k >= np.float32(0.5), below_half, k).astype(np.float32)


def _ismrmrd_header(xsd, data: NonCartesianData, readouts: int) -> str:
    h, w = data.image_shape

    def space():
        return xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=h, y=w, z=1),
                                     fieldOfView_mm=xsd.fieldOfViewMm(x=float(h), y=float(w), z=1.0))

    encoding = xsd.encodingType(
        encodedSpace=space(),
        reconSpace=space(),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=readouts - 1, center=0),
            slice=xsd.limitType(minimum=0, maximum=data.num_slices - 1, center=0),
        ),
        trajectory=xsd.trajectoryType(_trajectory_type(data.attrs)),
    )
    attrs = xsd.userParameterStringType(name=ATTRS_PARAMETER, value=json.dumps(data.attrs, allow_nan=False))
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=0),
        encoding=[encoding],
        userParameters=xsd.userParametersType(userParameterString=[attrs]),
    )
    return xsd.ToXML(header, encoding="utf-8")


def _acquisition(ismrmrd, samples: np.ndarray, traj: np.ndarray, slice_index: int, readout: int,
                 counter: int, flags: tuple[int, ...]):
    """One MRD acquisition: ``samples`` ``(coils, L)`` complex64, ``traj`` ``(L, 2)`` float32."""
    coils = samples.shape[0]
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(samples), np.ascontiguousarray(traj))
    acq.version = 1
    acq.scan_counter = counter
    acq.center_sample = int(np.argmin((traj.astype(np.float64) ** 2).sum(axis=1)))
    acq.idx.slice = slice_index
    acq.idx.kspace_encode_step_1 = readout
    acq.read_dir[:] = (1.0, 0.0, 0.0)
    acq.phase_dir[:] = (0.0, 1.0, 0.0)
    acq.slice_dir[:] = (0.0, 0.0, 1.0)
    for channel in range(coils):
        acq.setChannelActive(channel)
    for flag in flags:
        acq.set_flag(flag)
    return acq


def write_ismrmrd(path: str | os.PathLike, data: NonCartesianData, *, overwrite: bool = False) -> Path:
    """Write ``data`` as ISMRMRD (MRD) raw data, one acquisition per readout; returns the path.

    Each slice's K samples are split into readouts of ``data.attrs["readout_length"]`` samples (K
    when absent; it must divide K and be at most 65535), each stored with its ``(L, 2)`` float32
    trajectory in cycles per pixel (``omega / (2 pi)``, kx along H, ky along W) and all coils. The
    header and conventions are in the module docstring; ``coil_maps``, ``density`` and
    ``reference`` are not part of MRD raw data and are not written. Needs the ``ismrmrd`` package
    (MissingResourceError otherwise). Written under a temporary name and renamed when complete; an
    existing ``path`` is an InputError unless ``overwrite``.
    """
    if not isinstance(data, NonCartesianData):
        raise InputError(f"write_ismrmrd needs a NonCartesianData, got {type(data).__name__}")
    ismrmrd = _import_ismrmrd("writing")
    length = _readout_length(data)
    readouts = data.num_samples // length
    for count, what, limit in ((data.num_coils, "channels", 1024), (readouts, "readouts per slice", 65536),
                               (data.num_slices, "slices", 65536)):
        if count > limit:
            raise InputError(f"write_ismrmrd: MRD stores at most {limit} {what}, got {count}")
    xml = _ismrmrd_header(ismrmrd.xsd, data, readouts)
    kspace = to_numpy(data.kspace).astype(np.complex64)
    traj = _cycles_per_pixel(data.coords).reshape(readouts, length, 2)
    with atomic_output(path, overwrite=overwrite) as tmp:
        dataset = ismrmrd.Dataset(str(tmp), ISMRMRD_GROUP, create_if_needed=True)
        try:
            dataset.write_xml_header(xml.encode("utf-8"))
            counter = 0
            for s in range(data.num_slices):
                samples = kspace[s].reshape(data.num_coils, readouts, length)
                for r in range(readouts):
                    flags = ((_FIRST_IN_SLICE,) if r == 0 else ()) + ((_LAST_IN_SLICE,) if r == readouts - 1 else ())
                    if s == data.num_slices - 1 and r == readouts - 1:
                        flags += (_LAST_IN_MEASUREMENT,)
                    dataset.append_acquisition(_acquisition(ismrmrd, samples[:, r], traj[r], s, r, counter, flags))
                    counter += 1
        finally:
            dataset.close()
    return Path(path)


def read_ismrmrd(path: str | os.PathLike, *, slices: slice | None = None) -> NonCartesianData:
    """Read 2-D non-Cartesian ISMRMRD (MRD) raw data: all slices, or the range ``slices``.

    ``slices`` selects among the file's slices (the distinct ``idx.slice`` values, in increasing
    order) like :func:`read_noncartesian_h5`; only their readouts' samples are read. Returns
    :class:`NonCartesianData` with ``kspace`` ``(s, coils, K)`` complex64 (K = readouts per slice x
    samples per readout), ``coords`` ``(K, 2)`` float64 radians per pixel (``2 pi traj``),
    ``image_shape`` ``(x, y)`` of the header's encodedSpace, None for coil maps / density /
    reference, and ``attrs`` with ``readout_length`` (module docstring). Needs the ``ismrmrd``
    package (MissingResourceError otherwise); bad files raise a one-line InputError naming the file.
    """
    ismrmrd = _import_ismrmrd("reading")
    path = Path(path)
    with open_h5(path) as hf:
        group = hf.get(ISMRMRD_GROUP)
        if not isinstance(group, h5py.Group) or "xml" not in group:
            raise InputError(f"{path} is not ISMRMRD data: it has no '/{ISMRMRD_GROUP}/xml' header")
        heads = _read_heads(group, path)
    dataset = _open_ismrmrd(ismrmrd, path)
    try:
        header = _parse_header(ismrmrd.xsd, dataset, path)
        for side, axis in zip(header["shape"], ("x", "y"), strict=True):
            check_image_side(int(side), path, f"encodedSpace matrixSize {axis}")
        plan = _plan_readouts(heads, path)
        sel = check_slice_selection(slices, len(plan.slices), path)
        kspace, traj = _read_readouts(dataset, plan, plan.slices[sel], path)
    finally:
        dataset.close()
    coords = torch.from_numpy(_radians_per_pixel(traj))
    attrs = dict(header["attrs"])
    attrs["readout_length"] = plan.length
    try:
        data = NonCartesianData(kspace=torch.from_numpy(kspace), coords=coords, image_shape=header["shape"],
                                attrs=attrs)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return check_read_data(data, path)


def _open_ismrmrd(ismrmrd, path: Path):
    try:
        try:
            return ismrmrd.Dataset(str(path), ISMRMRD_GROUP, mode="r")
        except TypeError:  # packages before the mode argument: open read-write without creating
            return ismrmrd.Dataset(str(path), ISMRMRD_GROUP, create_if_needed=False)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the ISMRMRD file: {one_line(exc)}") from None


def _read_heads(group: h5py.Group, path: Path) -> np.ndarray:
    """The acquisition headers (a structured array, one per readout) of ``/dataset/data``."""
    ds = group.get("data")
    if ds is None:
        raise InputError(f"{path}: the ISMRMRD file holds no acquisitions ('/{ISMRMRD_GROUP}/data' is missing)")
    if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None or "head" not in ds.dtype.names or ds.ndim != 1:
        raise InputError(f"{path}: '/{ISMRMRD_GROUP}/data' is not an array of MRD acquisitions")
    if ds.shape[0] == 0:
        raise InputError(f"{path}: the ISMRMRD file holds no acquisitions")
    return ds.fields("head")[()]


def _parse_header(xsd, dataset, path: Path) -> dict:
    try:
        with warnings.catch_warnings():  # xsdata warns about values it cannot convert; checked below
            warnings.simplefilter("ignore")
            header = xsd.CreateFromDocument(dataset.read_xml_header())
    except Exception as exc:  # h5py and xsdata raise several kinds; all mean a bad header
        raise InputError(f"{path}: the ISMRMRD XML header does not parse: {one_line(exc)}") from None
    if not header.encoding:
        raise InputError(f"{path}: the ISMRMRD header has no <encoding> (needed: encodedSpace/matrixSize)")
    encoding = header.encoding[0]
    encoded = _matrix(encoding, "encodedSpace", path)
    recon = _matrix(encoding, "reconSpace", path)
    if encoded[2] != 1:
        raise InputError(f"{path}: the encoded space is 3-D (matrix z = {encoded[2]}); medrecon reads "
                         "2-D (multi-slice) non-Cartesian data")
    stored = _stored_attrs(header, path)
    if stored is not None:
        attrs = stored
    else:
        kind = getattr(encoding.trajectory, "value", encoding.trajectory)
        attrs = {"ismrmrd_trajectory": str(kind)}
        if recon[:2] != encoded[:2]:
            attrs["recon_shape"] = list(recon[:2])
    return {"shape": (encoded[0], encoded[1]), "attrs": attrs}


def _matrix(encoding, space: str, path: Path) -> tuple[int, int, int]:
    matrix = getattr(getattr(encoding, space, None), "matrixSize", None)
    values = tuple(getattr(matrix, axis, None) for axis in "xyz")
    if not all(is_int(v) and v > 0 for v in values):
        raise InputError(f"{path}: the ISMRMRD header's encoding/{space}/matrixSize must hold positive "
                         f"x, y, z, got {values}")
    return tuple(int(v) for v in values)


def _stored_attrs(header, path: Path) -> dict | None:
    params = getattr(header.userParameters, "userParameterString", None) or []
    for param in params:
        if param.name == ATTRS_PARAMETER:
            try:
                attrs = json.loads(param.value)
            except (TypeError, json.JSONDecodeError) as exc:
                raise InputError(f"{path}: user parameter {ATTRS_PARAMETER!r} is not valid JSON: {exc}") from None
            if not isinstance(attrs, dict):
                raise InputError(f"{path}: user parameter {ATTRS_PARAMETER!r} must be a JSON object")
            return attrs
    return None


@dataclass(frozen=True)
class _ReadoutPlan:
    """Which acquisitions make which slice: ``slices[i]`` lists slice i's acquisition indices in
    readout order; every readout keeps ``[discard_pre, discard_pre + length)`` of its samples."""

    slices: list[list[int]]
    length: int
    coils: int
    discard_pre: np.ndarray


def _plan_readouts(heads: np.ndarray, path: Path) -> _ReadoutPlan:
    flags = heads["flags"].astype(np.uint64)
    skipped = np.zeros(len(heads), dtype=bool)
    for bit in _SKIPPED_FLAGS:
        skipped |= (flags >> np.uint64(bit - 1)) & np.uint64(1) == 1
    keep = np.flatnonzero(~skipped)
    if keep.size == 0:
        raise InputError(f"{path}: the ISMRMRD file holds no imaging acquisitions (all {len(heads)} are "
                         "noise, navigator, calibration or other non-imaging readouts)")
    kept = heads[keep]
    dims = kept["trajectory_dimensions"]
    if (dims == 0).any():
        raise InputError(f"{path}: {int((dims == 0).sum())} of {keep.size} acquisitions have no trajectory "
                         "(trajectory_dimensions 0); non-Cartesian data need one per readout")
    if (dims != 2).any():
        raise InputError(f"{path}: acquisitions have trajectory_dimensions {sorted(set(dims.tolist()))}; "
                         "medrecon reads 2-D (kx, ky) trajectories")
    lengths = kept["number_of_samples"].astype(np.int64) - kept["discard_pre"] - kept["discard_post"]
    _require_single(lengths, "samples per readout (number_of_samples - discard_pre - discard_post)", path)
    if int(lengths[0]) < 1:
        raise InputError(f"{path}: the readouts keep no sample after discard_pre/discard_post")
    _require_single(kept["active_channels"], "active channels", path)
    if int(kept["active_channels"][0]) < 1:
        raise InputError(f"{path}: the acquisitions have no active channel")
    _require_single(kept["encoding_space_ref"], "encoding spaces (encoding_space_ref)", path)
    for counter in _SINGLE_COUNTERS:
        _require_single(kept["idx"][counter], f"values of the {counter} counter", path)
    slice_ids = kept["idx"]["slice"]
    groups = []
    for value in np.unique(slice_ids):
        members = np.flatnonzero(slice_ids == value)
        order = np.argsort(kept["idx"]["kspace_encode_step_1"][members], kind="stable")
        groups.append([int(keep[i]) for i in members[order]])
    counts = sorted({len(g) for g in groups})
    if len(counts) > 1:
        raise InputError(f"{path}: the slices hold different numbers of readouts ({counts}); medrecon's "
                         "non-Cartesian data share one trajectory across slices")
    return _ReadoutPlan(slices=groups, length=int(lengths[0]), coils=int(kept["active_channels"][0]),
                        discard_pre=heads["discard_pre"].astype(np.int64))


def _require_single(values: np.ndarray, what: str, path: Path) -> None:
    distinct = np.unique(values)
    if distinct.size > 1:
        shown = ", ".join(str(v) for v in distinct[:6].tolist()) + (", ..." if distinct.size > 6 else "")
        raise InputError(f"{path}: inconsistent {what} across acquisitions ({shown}); medrecon reads one "
                         "(slices, coils, K) volume with one value")


def _read_readouts(dataset, plan: _ReadoutPlan, chosen: list[list[int]], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``kspace`` ``(s, coils, K)`` complex64 and the shared ``traj`` ``(K, 2)`` float32."""
    length, n_readouts = plan.length, len(chosen[0])
    kspace = np.empty((len(chosen), plan.coils, n_readouts * length), dtype=np.complex64)
    traj = None
    for i, indices in enumerate(chosen):
        slice_traj = np.empty((n_readouts * length, 2), dtype=np.float32)
        for r, index in enumerate(indices):
            acq = _read_acquisition(dataset, index, path)
            keep = slice(int(plan.discard_pre[index]), int(plan.discard_pre[index]) + length)
            kspace[i, :, r * length:(r + 1) * length] = acq.data[:, keep]
            slice_traj[r * length:(r + 1) * length] = acq.traj[keep]
        _check_cycles(slice_traj, path)
        if traj is None:
            traj = slice_traj
        elif not np.array_equal(traj, slice_traj):
            raise InputError(f"{path}: the trajectory differs between slices; medrecon's non-Cartesian data "
                             "share one trajectory across slices")
    return kspace, traj


def _read_acquisition(dataset, index: int, path: Path):
    try:
        return dataset.read_acquisition(index)
    except (ValueError, TypeError, OSError, IndexError) as exc:
        raise InputError(f"{path}: acquisition {index} is malformed (its samples or trajectory do not match "
                         f"its header): {one_line(exc)}") from None


def _check_cycles(traj: np.ndarray, path: Path) -> None:
    """MRD ``traj`` must be finite cycles per pixel in ``[-0.5, 0.5]``."""
    if not np.isfinite(traj).all():
        raise InputError(f"{path}: the trajectory holds NaN or infinite values")
    low, high = float(traj.min()), float(traj.max())
    if low < -0.5 or high > 0.5:
        raise InputError(f"{path}: trajectory coordinates must lie in [-0.5, 0.5] (cycles per pixel, the edge "
                         f"of k-space at +-0.5), got [{low:.4g}, {high:.4g}]")


def _radians_per_pixel(traj: np.ndarray) -> np.ndarray:
    """Checked MRD ``traj`` (cycles per pixel) as float64 radians per pixel in ``[-pi, pi)``."""
    k = traj.astype(np.float64)
    k[k == 0.5] = -0.5  # the same frequency: the model is 2 pi periodic in omega
    return 2 * math.pi * k


__all__ = ["read_ismrmrd", "write_ismrmrd"]
