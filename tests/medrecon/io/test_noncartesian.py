"""Tests of the non-Cartesian raw-data readers and writers (medrecon.io.noncartesian, medrecon.io.mrd).

Two formats: medrecon's own HDF5 layout (checked value for value, and its layout read back with
h5py), and ISMRMRD / MRD raw data. The ISMRMRD convention (one acquisition per readout, ``traj``
in cycles per pixel with the edge of k-space at +-0.5, kx along the image rows H = encodedSpace x)
is checked independently of the reader: files written by the writer are read with the ``ismrmrd``
package itself, the raw samples are compared with a non-uniform DFT evaluated here with numpy
from the raw ``traj`` in those units, and the files that exercise the reader's refusals are
written with the ``ismrmrd`` package and a hand-written XML header, not with the writer.
"""

from __future__ import annotations

import json
import math
import sys

import h5py
import numpy as np
import pytest
import torch

from medrecon.errors import InputError, MissingResourceError
from medrecon.io.mrd import read_ismrmrd, write_ismrmrd
from medrecon.io.noncartesian import NonCartesianData, read_noncartesian_h5, sniff_noncartesian, write_noncartesian_h5
from medrecon.operators.trajectories import radial

H, W, SLICES, COILS, SPOKES = 12, 16, 2, 3, 5
READOUT = max(H, W)  # samples per spoke (radial() is given this read-out length)
K = SPOKES * READOUT
# float32 rounding of omega / (2 pi) with |omega / (2 pi)| <= 0.5, back in radians per pixel
TRAJ_ATOL = 2 * math.pi * 2.0 ** -25


# --------------------------------------------------------------------------------------------------
# data


def make_data(*, maps_per_slice: bool = True, extras: bool = True, attrs: dict | None = None,
              seed: int = 0) -> NonCartesianData:
    g = torch.Generator().manual_seed(seed)
    kspace = torch.randn(SLICES, COILS, K, dtype=torch.complex64, generator=g)
    maps = torch.randn(SLICES if maps_per_slice else 1, COILS, H, W, dtype=torch.complex64, generator=g)
    if attrs is None:
        attrs = {"trajectory": {"kind": "radial", "spokes": SPOKES}, "readout_length": READOUT,
                 "acquisition": {"name": "phantom", "acceleration": 2.5}, "scale": 1.5, "note": "µ-coil"}
    return NonCartesianData(
        kspace=kspace,
        coords=radial((H, W), SPOKES, readout=READOUT),
        image_shape=(H, W),
        coil_maps=maps if extras else None,
        density=torch.rand(K, generator=g) + 0.1 if extras else None,
        reference=torch.rand(SLICES, H, W, generator=g) if extras else None,
        attrs=attrs,
    )


def assert_one_line(exc: pytest.ExceptionInfo, path) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------------
# the data model


def test_data_checks_its_inputs():
    good = make_data()
    with pytest.raises(InputError, match="kspace must be a complex"):
        NonCartesianData(good.kspace.real, good.coords, (H, W))
    with pytest.raises(InputError, match="K = 80"):
        NonCartesianData(good.kspace, good.coords[:-1], (H, W))
    with pytest.raises(InputError, match=r"\[-pi, pi\)"):
        NonCartesianData(good.kspace, good.coords * 2, (H, W))
    with pytest.raises(InputError, match="image_shape"):
        NonCartesianData(good.kspace, good.coords, (H, 0))
    with pytest.raises(InputError, match="coil_maps"):
        NonCartesianData(good.kspace, good.coords, (H, W), coil_maps=good.coil_maps[:, :, :, :-1])
    with pytest.raises(InputError, match="density"):
        NonCartesianData(good.kspace, good.coords, (H, W), density=good.density[:-1])
    with pytest.raises(InputError, match="non-negative"):
        NonCartesianData(good.kspace, good.coords, (H, W), density=-good.density)
    with pytest.raises(InputError, match="reference"):
        NonCartesianData(good.kspace, good.coords, (H, W), reference=good.reference[:1])
    with pytest.raises(InputError, match="JSON"):
        NonCartesianData(good.kspace, good.coords, (H, W), attrs={"x": object()})
    assert good.coords.dtype == torch.float64 and good.kspace.dtype == torch.complex64
    assert (good.num_slices, good.num_coils, good.num_samples) == (SLICES, COILS, K)


# --------------------------------------------------------------------------------------------------
# medrecon's HDF5 layout


@pytest.mark.parametrize("maps_per_slice", [True, False])
def test_h5_round_trip_is_exact(tmp_path, maps_per_slice):
    data = make_data(maps_per_slice=maps_per_slice)
    path = write_noncartesian_h5(tmp_path / "raw.h5", data)
    back = read_noncartesian_h5(path)
    for name in ("kspace", "coords", "coil_maps", "density", "reference"):
        assert getattr(back, name).dtype == getattr(data, name).dtype, name
        assert torch.equal(getattr(back, name), getattr(data, name)), name
    assert back.image_shape == (H, W)
    assert back.attrs == data.attrs


def test_h5_round_trip_without_optional_arrays(tmp_path):
    data = make_data(extras=False, attrs={})
    back = read_noncartesian_h5(write_noncartesian_h5(tmp_path / "raw.h5", data))
    assert back.coil_maps is None and back.density is None and back.reference is None
    assert torch.equal(back.kspace, data.kspace) and back.attrs == {}


def test_h5_layout_is_the_documented_one(tmp_path):
    data = make_data()
    path = write_noncartesian_h5(tmp_path / "raw.h5", data)
    with h5py.File(path, "r") as hf:
        assert hf.attrs["format"] == "medrecon-noncartesian"
        assert int(hf.attrs["version"]) == 1
        assert hf.attrs["image_shape"].tolist() == [H, W]
        assert json.loads(hf.attrs["attrs"]) == data.attrs
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == (SLICES, COILS, K)
        assert hf["trajectory"].dtype == np.float64 and hf["trajectory"].shape == (K, 2)
        assert hf["trajectory"].attrs["units"] == "radians per pixel"
        assert hf["coil_maps"].dtype == np.complex64 and hf["coil_maps"].shape == (SLICES, COILS, H, W)
        assert hf["density"].dtype == np.float32 and hf["density"].shape == (K,)
        assert hf["reference"].dtype == np.float32 and hf["reference"].shape == (SLICES, H, W)
        np.testing.assert_array_equal(hf["trajectory"][()], data.coords.numpy())
    assert files_in(tmp_path) == ["raw.h5"]


def test_h5_slices_selection(tmp_path):
    data = make_data()
    path = write_noncartesian_h5(tmp_path / "raw.h5", data)
    for sel in (slice(1, 2), slice(-1, None), slice(0, 2, 2)):
        part = read_noncartesian_h5(path, slices=sel)
        assert torch.equal(part.kspace, data.kspace[sel])
        assert torch.equal(part.coil_maps, data.coil_maps[sel])
        assert torch.equal(part.reference, data.reference[sel])
        assert torch.equal(part.coords, data.coords) and torch.equal(part.density, data.density)
    shared = write_noncartesian_h5(tmp_path / "shared.h5", make_data(maps_per_slice=False))
    assert read_noncartesian_h5(shared, slices=slice(1, 2)).coil_maps.shape == (1, COILS, H, W)
    with pytest.raises(InputError, match="out of range"):
        read_noncartesian_h5(path, slices=slice(0, 3))
    with pytest.raises(InputError, match="selects no slice"):
        read_noncartesian_h5(path, slices=slice(1, 1))
    with pytest.raises(InputError, match="positive step"):
        read_noncartesian_h5(path, slices=slice(None, None, -1))
    with pytest.raises(InputError, match="must be a slice"):
        read_noncartesian_h5(path, slices=1)


def test_h5_refuses_to_overwrite(tmp_path):
    path = write_noncartesian_h5(tmp_path / "raw.h5", make_data(seed=0))
    before = path.read_bytes()
    with pytest.raises(InputError, match="exists"):
        write_noncartesian_h5(path, make_data(seed=1))
    assert path.read_bytes() == before and files_in(tmp_path) == ["raw.h5"]
    write_noncartesian_h5(path, make_data(seed=1), overwrite=True)
    assert torch.equal(read_noncartesian_h5(path).kspace, make_data(seed=1).kspace)
    with pytest.raises(InputError, match="NonCartesianData"):
        write_noncartesian_h5(tmp_path / "other.h5", {"kspace": 1})
    assert files_in(tmp_path) == ["raw.h5"]


def test_h5_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        calls.append(name)
        if name == "density":
            raise RuntimeError("disk full")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_noncartesian_h5(tmp_path / "raw.h5", make_data())
    assert "kspace" in calls and files_in(tmp_path) == []


def _mutations():
    """(name, change to a good file (h5py, mode r+), message the reader must give)."""
    def delete(key):
        return lambda hf: hf.__delitem__(key)

    def replace(key, value):
        def change(hf):
            del hf[key]
            hf[key] = value
        return change

    def set_attr(key, value):
        return lambda hf: hf.attrs.__setitem__(key, value)

    def outside(hf):
        traj = hf["trajectory"][()]
        traj[3, 1] = 3.5
        hf["trajectory"][...] = traj

    rng = np.random.default_rng(0)
    return [
        ("no kspace", delete("kspace"), "no 'kspace' dataset"),
        ("no trajectory", delete("trajectory"), "no 'trajectory' dataset"),
        ("2-D kspace", replace("kspace", np.zeros((SLICES, K), np.complex64)), "'kspace' must be complex"),
        ("real kspace", replace("kspace", np.zeros((SLICES, COILS, K), np.float32)), "'kspace' must be complex"),
        ("short trajectory", replace("trajectory", np.zeros((K - 1, 2))), "K = 80"),
        ("3-column trajectory", replace("trajectory", np.zeros((K, 3))), r"\(K, 2\)"),
        ("outside [-pi, pi)", outside, r"\[-pi, pi\)"),
        ("trajectory units", lambda hf: hf["trajectory"].attrs.__setitem__("units", "1/m"), "radians per pixel"),
        ("coil maps shape", replace("coil_maps", np.zeros((SLICES, COILS, W, H), np.complex64)), "'coil_maps' must be"),
        ("coil maps slices", replace("coil_maps", np.zeros((3, COILS, H, W), np.complex64)), "'coil_maps' must be"),
        ("real coil maps", replace("coil_maps", np.zeros((1, COILS, H, W), np.float32)), "'coil_maps' must be"),
        ("density shape", replace("density", np.ones(K + 1, np.float32)), "'density' must be"),
        ("negative density", replace("density", -np.ones(K, np.float32)), "non-negative"),
        ("reference shape", replace("reference", rng.random((SLICES, W, H)).astype(np.float32)), "'reference' must be"),
        ("no format", lambda hf: hf.attrs.__delitem__("format"), "not a medrecon non-Cartesian file"),
        ("other format", set_attr("format", "fastmri"), "not a medrecon non-Cartesian file"),
        ("version", set_attr("version", 2), "version"),
        ("image shape", set_attr("image_shape", np.array([H, W, 1])), "image_shape"),
        ("attrs not JSON", set_attr("attrs", "{oops"), "JSON"),
        ("attrs not an object", set_attr("attrs", "[1, 2]"), "JSON text of an object"),
    ]


@pytest.mark.parametrize("name, change, message", _mutations(), ids=[m[0] for m in _mutations()])
def test_h5_reader_refuses_bad_files(tmp_path, name, change, message):
    path = write_noncartesian_h5(tmp_path / "raw.h5", make_data())
    with h5py.File(path, "r+") as hf:
        change(hf)
    with pytest.raises(InputError, match=message) as exc:
        read_noncartesian_h5(path)
    assert_one_line(exc, path)


def test_h5_reader_refuses_unreadable_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5\n")
    with pytest.raises(InputError, match="not an HDF5 file") as exc:
        read_noncartesian_h5(text)
    assert_one_line(exc, text)
    with pytest.raises(InputError, match="no such file"):
        read_noncartesian_h5(tmp_path / "missing.h5")
    with pytest.raises(InputError, match="not a file"):
        read_noncartesian_h5(tmp_path)
    good = write_noncartesian_h5(tmp_path / "raw.h5", make_data())
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError) as exc:
        read_noncartesian_h5(cut)
    assert_one_line(exc, cut)


# --------------------------------------------------------------------------------------------------
# ISMRMRD: files written by hand with the ismrmrd package

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
 <encoding>
  <encodedSpace><matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>240</x><y>320</y><z>5</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>240</x><y>320</y><z>5</z></fieldOfView_mm></reconSpace>
  <encodingLimits/>
  <trajectory>radial</trajectory>
 </encoding>
</ismrmrdHeader>
"""


def spoke_traj(angle: float, n: int = READOUT) -> np.ndarray:
    """One radial spoke in cycles per pixel, ``(n, 2)`` float32 in [-0.5, 0.5)."""
    r = (np.arange(n) - n / 2) / n
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1).astype(np.float32)


def raw_file(path, readouts, *, xml=None):
    """An MRD file written with the ismrmrd package: ``readouts`` is a list of dicts with
    ``data`` (coils, n) complex64, ``traj`` (n, d) float32 or None, and header fields (``slice``,
    ``step``, ``flags``, ``contrast``, ``discard_pre``, ``discard_post``)."""
    ismrmrd = pytest.importorskip("ismrmrd")
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header((xml or HEADER.format(x=H, y=W)).encode("utf-8"))
    for item in readouts:
        acq = ismrmrd.Acquisition.from_array(item["data"], item.get("traj"))
        acq.idx.slice = item.get("slice", 0)
        acq.idx.kspace_encode_step_1 = item.get("step", 0)
        acq.idx.contrast = item.get("contrast", 0)
        acq.discard_pre = item.get("discard_pre", 0)
        acq.discard_post = item.get("discard_post", 0)
        for flag in item.get("flags", ()):
            acq.set_flag(flag)
        dataset.append_acquisition(acq)
    dataset.close()
    return path


def radial_readouts(*, slices=SLICES, spokes=SPOKES, coils=COILS, seed=0, **fields):
    rng = np.random.default_rng(seed)
    items = []
    for s in range(slices):
        for r in range(spokes):
            data = (rng.standard_normal((coils, READOUT)) + 1j * rng.standard_normal((coils, READOUT)))
            items.append(dict(data=data.astype(np.complex64), traj=spoke_traj(math.pi * r / spokes),
                              slice=s, step=r, **fields))
    return items


def test_ismrmrd_reader_on_a_hand_written_file(tmp_path):
    pytest.importorskip("ismrmrd")
    items = radial_readouts()
    noise = dict(data=np.ones((COILS, 32), np.complex64), traj=None, flags=(19,))
    path = raw_file(tmp_path / "raw.mrd", [noise] + items[::-1])  # noise first, readouts reversed
    data = read_ismrmrd(path)
    assert data.image_shape == (H, W) and data.kspace.shape == (SLICES, COILS, K)
    assert data.coil_maps is None and data.density is None and data.reference is None
    assert data.attrs == {"ismrmrd_trajectory": "radial", "readout_length": READOUT}
    for item in items:  # readouts are ordered by kspace_encode_step_1 within each slice
        cols = slice(item["step"] * READOUT, (item["step"] + 1) * READOUT)
        np.testing.assert_array_equal(data.kspace[item["slice"], :, cols].numpy(), item["data"])
        np.testing.assert_allclose(data.coords[cols].numpy(), 2 * np.pi * item["traj"].astype(np.float64),
                                   rtol=0, atol=1e-12)


def test_ismrmrd_reader_drops_discarded_samples_and_wraps_the_edge(tmp_path):
    pytest.importorskip("ismrmrd")
    rng = np.random.default_rng(1)
    n = READOUT + 3
    data = (rng.standard_normal((COILS, n)) + 1j * rng.standard_normal((COILS, n))).astype(np.complex64)
    traj = np.zeros((n, 2), np.float32)
    traj[1:1 + READOUT] = spoke_traj(0.3)
    traj[1, 1] = 0.5  # the edge of k-space, the same frequency as -0.5
    path = raw_file(tmp_path / "raw.mrd", [dict(data=data, traj=traj, discard_pre=1, discard_post=2)])
    back = read_ismrmrd(path)
    np.testing.assert_array_equal(back.kspace[0].numpy(), data[:, 1:1 + READOUT])
    assert back.coords[0, 1].item() == -math.pi
    np.testing.assert_allclose(back.coords[1:].numpy(), 2 * np.pi * traj[2:1 + READOUT].astype(np.float64), atol=1e-12)


def _bad_ismrmrd_files():
    """(name, readouts or a function of the folder writing the file, message)."""
    good = radial_readouts()

    def with_item(index, **changes):
        items = [dict(item) for item in good]
        items[index].update(changes)
        return items

    def every_slice(spoke, **changes):
        items = [dict(item) for item in good]
        for s in range(SLICES):
            items[s * SPOKES + spoke].update(changes)
        return items

    header = HEADER.format(x=H, y=W)
    no_encoding = header.split("<encoding>")[0] + "</ismrmrdHeader>"
    no_space = header.replace("<encodedSpace>", "<!--").replace("</encodedSpace>", "-->")
    three_d = header.replace("<z>1</z></matrixSize>", "<z>8</z></matrixSize>", 1)
    bad_size = HEADER.format(x="twelve", y=W)
    return [
        ("no acquisitions", [], "no acquisitions"),
        ("only noise", [dict(data=np.ones((COILS, 8), np.complex64), flags=(19,))], "no imaging acquisitions"),
        ("no trajectories", [dict(item, traj=None) for item in good], "no trajectory"),
        ("3-D trajectories", with_item(0, traj=np.zeros((READOUT, 3), np.float32)), "2-D"),
        ("sample counts", with_item(3, data=good[3]["data"][:, :-2], traj=good[3]["traj"][:-2]),
         "inconsistent samples per readout"),
        ("coil counts", with_item(2, data=good[2]["data"][:2]), "inconsistent active channels"),
        ("outside the range", every_slice(1, traj=good[1]["traj"] * 1.5), r"\[-0.5, 0.5\]"),
        ("NaN coordinates", every_slice(1, traj=np.full((READOUT, 2), np.nan, np.float32)), "NaN"),
        ("readouts per slice", good[:-1], "different numbers of readouts"),
        ("trajectory per slice", with_item(SPOKES, traj=spoke_traj(1.0)), "differs between slices"),
        ("two contrasts", with_item(0, contrast=1), "contrast"),
        ("header without encoding", ("xml", no_encoding), "no <encoding>"),
        ("header without encodedSpace", ("xml", no_space), "does not parse"),
        ("3-D encoding", ("xml", three_d), "3-D"),
        ("matrix size not a number", ("xml", bad_size), "matrixSize must hold positive"),
        ("header not XML", ("xml", "this is not XML"), "does not parse"),
    ]


@pytest.mark.parametrize("name, readouts, message", _bad_ismrmrd_files(), ids=[c[0] for c in _bad_ismrmrd_files()])
def test_ismrmrd_reader_refuses_bad_files(tmp_path, name, readouts, message):
    pytest.importorskip("ismrmrd")
    path = tmp_path / "raw.mrd"
    if isinstance(readouts, tuple):
        raw_file(path, radial_readouts(), xml=readouts[1])
    else:
        raw_file(path, readouts)
    with pytest.raises(InputError, match=message) as exc:
        read_ismrmrd(path)
    assert_one_line(exc, path)


def test_ismrmrd_reader_refuses_files_that_are_not_ismrmrd(tmp_path):
    pytest.importorskip("ismrmrd")
    text = tmp_path / "notes.mrd"
    text.write_text("not HDF5\n")
    with pytest.raises(InputError, match="not an HDF5 file") as exc:
        read_ismrmrd(text)
    assert_one_line(exc, text)
    medrecon_file = write_noncartesian_h5(tmp_path / "raw.h5", make_data())
    with pytest.raises(InputError, match="not ISMRMRD data") as exc:
        read_ismrmrd(medrecon_file)
    assert_one_line(exc, medrecon_file)
    with pytest.raises(InputError, match="no such file"):
        read_ismrmrd(tmp_path / "missing.mrd")


# --------------------------------------------------------------------------------------------------
# ISMRMRD: the writer


def test_ismrmrd_round_trip(tmp_path):
    pytest.importorskip("ismrmrd")
    data = make_data()
    path = write_ismrmrd(tmp_path / "raw.mrd", data)
    back = read_ismrmrd(path)
    assert torch.equal(back.kspace, data.kspace)
    assert back.coords.dtype == torch.float64
    np.testing.assert_allclose(back.coords.numpy(), data.coords.numpy(), rtol=0, atol=TRAJ_ATOL)
    assert back.image_shape == (H, W)
    assert back.attrs == data.attrs  # readout_length included
    assert back.coil_maps is None and back.density is None and back.reference is None
    part = read_ismrmrd(path, slices=slice(1, None))
    assert torch.equal(part.kspace, data.kspace[1:]) and torch.equal(part.coords, back.coords)
    with pytest.raises(InputError, match="out of range"):
        read_ismrmrd(path, slices=slice(0, 5))


def test_ismrmrd_writer_follows_the_mrd_convention(tmp_path):
    """Read the writer's file with the ismrmrd package and check samples against a non-uniform DFT
    evaluated here from the raw ``traj`` taken as cycles per pixel, kx along H = encodedSpace x."""
    ismrmrd = pytest.importorskip("ismrmrd")
    rng = np.random.default_rng(3)
    image = (rng.standard_normal((SLICES, COILS, H, W)) + 1j * rng.standard_normal((SLICES, COILS, H, W)))
    coords = radial((H, W), SPOKES, readout=READOUT).numpy()
    n_h, n_w = np.meshgrid(np.arange(H) - H // 2, np.arange(W) - W // 2, indexing="ij")
    phase = np.exp(-1j * (coords[:, 0, None, None] * n_h + coords[:, 1, None, None] * n_w)) / math.sqrt(H * W)
    kspace = np.einsum("scij,kij->sck", image, phase).astype(np.complex64)
    data = NonCartesianData(torch.from_numpy(kspace), torch.from_numpy(coords), (H, W),
                            attrs={"trajectory": {"kind": "radial"}, "readout_length": READOUT})
    path = write_ismrmrd(tmp_path / "raw.mrd", data)

    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
    acquisitions = [dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())]
    dataset.close()
    encoding = header.encoding[0]
    assert (encoding.encodedSpace.matrixSize.x, encoding.encodedSpace.matrixSize.y) == (H, W)
    assert (encoding.reconSpace.matrixSize.x, encoding.reconSpace.matrixSize.y) == (H, W)
    assert encoding.trajectory.value == "radial"
    assert encoding.encodingLimits.kspace_encoding_step_1.maximum == SPOKES - 1
    assert len(acquisitions) == SLICES * SPOKES
    for i, acq in enumerate(acquisitions):
        s, r = divmod(i, SPOKES)
        assert (acq.idx.slice, acq.idx.kspace_encode_step_1) == (s, r)
        assert (acq.active_channels, acq.number_of_samples, acq.trajectory_dimensions) == (COILS, READOUT, 2)
        traj = acq.traj.astype(np.float64)
        assert traj.min() >= -0.5 and traj.max() < 0.5
        np.testing.assert_allclose(traj, coords[r * READOUT:(r + 1) * READOUT] / (2 * np.pi), rtol=0, atol=2.0 ** -25)
        # the samples are the image's DFT at 2 pi traj: traj is in cycles per pixel
        dft = np.exp(-2j * np.pi * (traj[:, 0, None, None] * n_h + traj[:, 1, None, None] * n_w)) / math.sqrt(H * W)
        expected = np.einsum("cij,kij->ck", image[s], dft)
        np.testing.assert_allclose(acq.data, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
        assert acq.is_flag_set(7) == (r == 0) and acq.is_flag_set(8) == (r == SPOKES - 1)


def test_ismrmrd_writer_readout_length(tmp_path):
    pytest.importorskip("ismrmrd")
    data = make_data(attrs={"trajectory": {"kind": "spiral"}})
    back = read_ismrmrd(write_ismrmrd(tmp_path / "one.mrd", data))  # one readout of K per slice
    assert back.attrs == {"trajectory": {"kind": "spiral"}, "readout_length": K}
    assert torch.equal(back.kspace, data.kspace)
    bad = make_data(attrs={"readout_length": 7})
    with pytest.raises(InputError, match="readout_length"):
        write_ismrmrd(tmp_path / "bad.mrd", bad)
    assert files_in(tmp_path) == ["one.mrd"]


def test_ismrmrd_writer_keeps_coordinates_inside_the_range(tmp_path):
    pytest.importorskip("ismrmrd")
    coords = torch.tensor([[-math.pi, 0.0], [math.nextafter(math.pi, 0.0), 1.0], [0.0, -1e-3]], dtype=torch.float64)
    data = NonCartesianData(torch.ones(1, 1, 3, dtype=torch.complex64), coords, (4, 4))
    back = read_ismrmrd(write_ismrmrd(tmp_path / "edge.mrd", data))
    assert back.coords[0, 0].item() == -math.pi
    assert math.pi - TRAJ_ATOL <= back.coords[1, 0].item() < math.pi
    np.testing.assert_allclose(back.coords.numpy(), coords.numpy(), rtol=0, atol=TRAJ_ATOL)


def test_ismrmrd_writer_refuses_to_overwrite(tmp_path):
    pytest.importorskip("ismrmrd")
    path = write_ismrmrd(tmp_path / "raw.mrd", make_data(seed=0))
    before = path.read_bytes()
    with pytest.raises(InputError, match="exists"):
        write_ismrmrd(path, make_data(seed=1))
    assert path.read_bytes() == before and files_in(tmp_path) == ["raw.mrd"]
    write_ismrmrd(path, make_data(seed=1), overwrite=True)
    assert torch.equal(read_ismrmrd(path).kspace, make_data(seed=1).kspace)
    assert files_in(tmp_path) == ["raw.mrd"]


def test_missing_ismrmrd_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ismrmrd", None)
    monkeypatch.setitem(sys.modules, "ismrmrd.xsd", None)
    with pytest.raises(MissingResourceError, match=r"needs the ismrmrd package \(pip install 'medrecon\[ismrmrd\]'\)"):
        write_ismrmrd(tmp_path / "raw.mrd", make_data())
    assert files_in(tmp_path) == []
    path = write_noncartesian_h5(tmp_path / "raw.h5", make_data())
    with pytest.raises(MissingResourceError, match="reading ISMRMRD files needs the ismrmrd package"):
        read_ismrmrd(path)


# --------------------------------------------------------------------------------------------------
# sniffing


def test_sniff(tmp_path):
    assert sniff_noncartesian(write_noncartesian_h5(tmp_path / "a.h5", make_data())) == "medrecon"
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert sniff_noncartesian(text) is None
    assert sniff_noncartesian(tmp_path / "missing.h5") is None
    assert sniff_noncartesian(tmp_path) is None
    with h5py.File(tmp_path / "fastmri.h5", "w") as hf:
        hf["kspace"] = np.zeros((1, 4, 4), np.complex64)
    assert sniff_noncartesian(tmp_path / "fastmri.h5") is None
    cut = tmp_path / "cut.h5"
    cut.write_bytes((tmp_path / "a.h5").read_bytes()[:1000])
    assert sniff_noncartesian(cut) is None


def test_sniff_ismrmrd(tmp_path):
    pytest.importorskip("ismrmrd")
    assert sniff_noncartesian(write_ismrmrd(tmp_path / "b.mrd", make_data())) == "ismrmrd"
    assert sniff_noncartesian(raw_file(tmp_path / "c.mrd", radial_readouts())) == "ismrmrd"
