"""medrecon reproduce: the lidc / brats / fastmri protocols end to end on tiny layout-exact fixtures.

The fixtures are written by the builders of tests/support_files.py (TCIA's LIDC-IDRI tree, BraTS
case folders, fastMRI HDF5; shared with reproduce/test_datasets.py and io/test_kspace.py), at 24-64
pixels instead of 320; the prior is an analytic Gaussian denoiser injected into the runner (no
trained prior exists at these sizes) and the samplers run 2 steps. Expected baseline scores are
computed here with numpy and scikit-image, not with the code under test.
"""

from __future__ import annotations

import csv
import json
import math
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from pydicom.uid import generate_uid
from skimage.metrics import peak_signal_noise_ratio

from medrecon.commands import build_parser, main
from medrecon.commands.reproduce import run as run_reproduce
from medrecon.errors import InputError
from medrecon.priors.denoiser import GaussianDenoiser
from medrecon.priors.hub import Prior
from medrecon.reproduce.datasets import fastmri_mask, fastmri_volumes, lidc_volumes
from medrecon.reproduce.protocols import FastmriProtocol, evenly_spaced
from medrecon.reproduce.run import CSV_FIELDS
from tests.support import gaussian_prior as analytic_prior
from tests.support_files import (
    BRATS_AFFINE,
    brats_array,
    coil_maps,
    ct_pixels,
    expected_brats,
    header_xml,
    mr_image,
    np_fft2c,
    np_rss_target,
    write_ct_series,
    write_raw,
)

SAMPLERS = ("dds", "dps", "score_sde")
FILES = ("file1000001.h5", "file1000002.h5")
KS = 64  # fastMRI fixture k-space side
TARGET = 48  # its reconstruction_rss side


def gaussian_prior(modality: str, size: int, mean: float = 0.4, std: float = 0.3) -> Prior:
    """The analytic prior, broad enough for the fixtures' images."""
    return analytic_prior(modality, size, mean, std)


def parse(*argv) -> object:
    return build_parser().parse_args(["reproduce", *map(str, argv)])


def read_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_outputs(out: Path, volumes: int, settings: int, methods: int) -> tuple[list[dict], dict]:
    assert sorted(p.name for p in out.iterdir()) == ["figure.png", "results.csv", "summary.json", "summary.md"]
    rows = read_rows(out)
    assert list(rows[0]) == list(CSV_FIELDS)
    assert len(rows) == volumes * settings * methods
    assert len({(r["volume"], r["setting"], r["method"]) for r in rows}) == len(rows)
    for r in rows:
        for key in ("psnr", "ssim", "seconds_per_slice"):
            assert math.isfinite(float(r[key])), (key, r)
        assert -1 <= float(r["ssim"]) <= 1
        assert (r["nfe"] != "") == (r["kind"] == "sampler")
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["table"]) == settings * methods and summary["n_volumes"] == volumes
    from PIL import Image

    with Image.open(out / "figure.png") as im:  # one column per method plus the reference, 192 high, aspect kept
        column = im.size[0] // (methods + 1)
        assert im.size[0] == column * (methods + 1) and column >= 96
    return rows, summary


def skimage_psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """Mean over slices of scikit-image's PSNR with data range 1 on images clipped to [0, 1]."""
    return float(np.mean([peak_signal_noise_ratio(np.clip(r, 0, 1), np.clip(a, 0, 1), data_range=1.0)
                          for a, r in zip(x, ref)]))


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while this module runs: on a 2-core machine whose cores are busy, two
    spinning torch threads made the tiny CT matrix products about 100x slower. (numpy's OpenBLAS
    SVD inside ESPIRiT is also about 100x slower after a torch FFT, 5 s instead of 0.04 s, unless
    OMP_NUM_THREADS or OPENBLAS_NUM_THREADS is 1 at start-up; this cannot fix that, hence one
    slice per fastMRI file.) Results do not depend on it; the previous setting is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def lidc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lidc") / "LIDC-IDRI"
    for patient, n in (("LIDC-IDRI-0001", 4), ("LIDC-IDRI-0002", 3)):
        study = generate_uid()
        write_ct_series(root / patient / study / generate_uid(), patient, study, ct_pixels(n, seed=n),
                        [2.5 * k for k in range(n)])
    return root


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats")
    arrays = {}
    for case, seed in (("BraTS2021_00000", 11), ("BraTS2021_00001", 12)):
        (root / case).mkdir()
        arrays[case] = brats_array(seed)
        nib.save(nib.Nifti1Image(arrays[case], BRATS_AFFINE), root / case / f"{case}_t2.nii.gz")
    return root, arrays


@pytest.fixture(scope="module")
def fastmri_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("multicoil_val")
    maps = coil_maps(4, KS, KS)
    base = mr_image(KS)
    for f, name in enumerate(FILES):
        images = np.roll(base, 6 + 3 * f, axis=0)[None] * (1 + 0.3 * f)  # one slice: ESPIRiT is slow here
        kspace = np_fft2c(images[:, None] * maps[None]).astype(np.complex64)
        target = np_rss_target(kspace, (TARGET, TARGET))
        write_raw(root / name, kspace, datasets={"reconstruction_rss": target},
                  attrs={"max": np.float64(target.max()), "acquisition": "CORPD_FBK"},
                  header=header_xml((KS, KS, 1), (TARGET, TARGET, 1), KS // 2, KS - 1))
    return root


# --------------------------------------------------------------------------------------------------
# end to end


def test_lidc_end_to_end(lidc_root, tmp_path):
    out = tmp_path / "lidc-out"
    args = parse("lidc", "--data", lidc_root, "--prior", "unused", "-o", out, "--views", "6,10", "--size", 32,
                 "--slices", 2, "--steps", 2, "--quiet")
    assert run_reproduce(args, prior=gaussian_prior("CT", 32), stream=open(tmp_path / "log", "w")) == 0
    rows, summary = check_outputs(out, volumes=2, settings=2, methods=2 + len(SAMPLERS))
    assert {r["method"] for r in rows} == {"fbp", "tv_pdhg", *SAMPLERS}
    assert all(r["slices"] == "2" and r["nmse"] != "" for r in rows)
    assert {r["nfe"] for r in rows if r["method"] == "score_sde"} == {"5"}  # 2 N + 1

    # FBP of the 10-view song geometry, scored independently (scikit-image, numpy clipping)
    from medrecon.baselines.ct import fbp
    from medrecon.operators import CTProjector, ParallelBeamGeometry

    volume = lidc_volumes(lidc_root, size=32)[0]
    x = volume.images[[1, 3]]  # 2 of 4 slices: the centres of two equal bins
    geometry = ParallelBeamGeometry.sparse_view(32, 10, "song")
    assert np.allclose(geometry.angles, np.round(np.linspace(0, 31, 10)) * np.pi / 32)
    op = CTProjector(geometry)
    expected = skimage_psnr(fbp(op, op(x))[:, 0].numpy(), x[:, 0].numpy())
    row = next(r for r in rows if r["volume"] == "LIDC-IDRI-0001" and r["setting"] == "10 views" and r["method"] == "fbp")
    assert float(row["psnr"]) == pytest.approx(expected, abs=1e-3)
    acq = next(v for v in summary["volumes"] if v["name"] == "LIDC-IDRI-0001")["acquisitions"]["10 views"]
    assert np.allclose(acq["geometry"]["angles"], geometry.angles) and acq["convention"] == "song"

    # the summary pools slices of both volumes; published numbers sit in their own columns
    entry = next(t for t in summary["table"] if t["setting"] == "10 views" and t["method"] == "fbp")
    assert entry["psnr"]["n"] == 4 and entry["unit"] == "slice"
    pooled = [float(r["psnr"]) for r in rows if r["setting"] == "10 views" and r["method"] == "fbp"]
    assert entry["psnr"]["mean"] == pytest.approx(np.mean(pooled))  # equal slices per volume
    md = (out / "summary.md").read_text()
    assert "Published: PSNR" in md and "Ours: PSNR" in md and "35.24" in md and "FISTA-TV" in md
    assert "mean ± std over slices" in md and "data range 1" in md and "`song`" in md
    assert "(log" not in md and "reproduce lidc: volume 2/2" in (tmp_path / "log").read_text()


class NaNDenoiser(GaussianDenoiser):
    def denoise(self, x, sigma):
        return torch.full_like(x, float("nan"))


def test_a_diverged_sampler_gives_a_nan_row_and_the_run_goes_on(lidc_root, tmp_path):
    out = tmp_path / "nan-out"
    prior = gaussian_prior("CT", 32)
    prior = Prior(NaNDenoiser(0.4, 0.3), prior.network, prior.card, prior.path)
    args = parse("lidc", "--data", lidc_root, "-o", out, "--views", 6, "--size", 32, "--slices", 1, "--limit", 1,
                 "--samplers", "dds", "--steps", 2, "--quiet")
    log = tmp_path / "log"
    assert run_reproduce(args, prior=prior, stream=open(log, "w")) == 0
    rows = {r["method"]: r for r in read_rows(out)}
    assert math.isfinite(float(rows["fbp"]["psnr"])) and math.isnan(float(rows["dds"]["psnr"]))
    assert "NON-FINITE OUTPUT" in rows["dds"]["details"] and "non-finite" in log.read_text()
    table = json.loads((out / "summary.json").read_text())["table"]
    assert next(t for t in table if t["method"] == "dds")["psnr"]["mean"] is None  # NaN -> null in JSON


def test_brats_end_to_end_and_zero_filled_score(brats_root, tmp_path):
    root, arrays = brats_root
    out = tmp_path / "brats-out"
    args = parse("brats", "--data", root, "-o", out, "--accel", "4,8", "--slices", 2, "--steps", 2, "--quiet")
    assert run_reproduce(args, prior=gaussian_prior("MR", 32), stream=open(tmp_path / "log", "w")) == 0
    rows, summary = check_outputs(out, volumes=2, settings=2, methods=3 + len(SAMPLERS))
    assert {r["method"] for r in rows} == {"zero_filled", "total_variation", "l1_wavelet", *SAMPLERS}

    # zero-filled of the recorded columns, computed with numpy FFTs on the numpy normalisation
    case = "BraTS2021_00000"
    volume = next(v for v in summary["volumes"] if v["name"] == case)
    acq = volume["acquisitions"]["4x"]
    assert acq["grid"] == [32, 32] and acq["box"] == [11, 12]
    assert abs(acq["sampled_fraction"] - 0.25) < 0.05
    images = expected_brats(arrays[case])[volume["slice_indices"]]  # (2, 11, 12)
    assert volume["slice_indices"] == evenly_spaced(5, 2) == [1, 3]
    grid = np.zeros((2, 32, 32))
    grid[:, 10:21, 10:22] = images  # centred: (32 - 11) // 2, (32 - 12) // 2
    k = np_fft2c(grid)
    keep = np.zeros(32, bool)
    keep[acq["sampled_columns"]] = True
    k[..., ~keep] = 0
    zf = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)))
    expected = skimage_psnr(zf[:, 10:21, 10:22], images)
    row = next(r for r in rows if r["volume"] == case and r["setting"] == "4x" and r["method"] == "zero_filled")
    assert float(row["psnr"]) == pytest.approx(expected, abs=1e-3)
    md = (out / "summary.md").read_text()
    assert "39.91" in md and "Cascade DenseNet" in md and "32x32 grid" in md


def test_fastmri_end_to_end_mask_and_target(fastmri_root, tmp_path):
    out = tmp_path / "fastmri-out"
    args = parse("fastmri", "--data", fastmri_root, "--prior", "unused", "-o", out, "--samplers", "dds",
                 "--steps", 2, "--quiet")
    assert run_reproduce(args, prior=gaussian_prior("MR", KS), stream=open(tmp_path / "log", "w")) == 0
    rows, summary = check_outputs(out, volumes=2, settings=2, methods=3 + 1)
    assert all(r["nmse"] != "" and float(r["nmse"]) > 0 for r in rows)
    assert all(r["slices"] == "1" for r in rows)
    # the mask of every file and acceleration is fastmri_mask(file name, ...)
    for volume, name in zip(summary["volumes"], FILES):
        for accel in (4, 8):
            acq = volume["acquisitions"][f"{accel}x"]
            mask = fastmri_mask(name, (KS, KS), accel, padding=(0, KS))
            assert acq["sampled_columns"] == torch.nonzero(mask[0]).flatten().tolist()
            assert acq["target"] == "reconstruction_rss"
    item = fastmri_volumes(fastmri_root)[1]
    case = FastmriProtocol().build(item, 8)
    assert torch.equal(case.problem.op.mask, fastmri_mask(FILES[1], (KS, KS), 8, padding=item.padding))
    # data range = the volume max; the zero-filled row's PSNR from the recorded scale and numpy
    row = next(r for r in rows if r["volume"] == "file1000002" and r["setting"] == "8x" and r["method"] == "zero_filled")
    assert float(row["data_range"]) == pytest.approx(item.max_value, rel=1e-6)
    from medrecon.baselines.mri import zero_filled

    recon = zero_filled(case.problem.op, case.problem.y).abs()[:, 0].numpy() * case.problem.scale
    top = (KS - TARGET) // 2
    recon = recon[:, top:top + TARGET, top:top + TARGET]
    target = item.target[:, 0].numpy()
    mse = np.mean((recon.astype(np.float64) - target) ** 2)
    assert float(row["psnr"]) == pytest.approx(10 * np.log10(item.max_value**2 / mse), abs=1e-3)
    md = (out / "summary.md").read_text()
    assert "Target: RSS" in md and "34.88" in md and "mean ± std over volumes" in md


def test_fastmri_scores_use_the_volume_max_on_a_subset_of_slices():
    from medrecon.metrics import fastmri_metrics
    from medrecon.reproduce.protocols import Case

    gen = torch.Generator().manual_seed(3)
    target = torch.rand(3, 1, 12, 12, generator=gen) + 0.5
    image = (target[:, :, :, :] / 2 + 0.05 * torch.randn(3, 1, 12, 12, generator=gen)).to(torch.complex64)
    padded = torch.zeros(3, 1, 16, 16, dtype=torch.complex64)
    padded[..., 2:14, 2:14] = image  # the crop of (16 - 12) // 2 = 2
    problem = types.SimpleNamespace(scale=2.0)
    protocol = FastmriProtocol()
    whole = Case("v", "4x", 4, problem, target, [0, 1, 2], 3, 1.0, {}, {"max_value": 99.0})
    scores = protocol.score(whole, padded)  # the whole volume: fastmri_metrics, range = target max
    expected = fastmri_metrics((image.abs() * 2).double(), target.double())
    assert scores.psnr == pytest.approx(expected["psnr"]) and scores.ssim == pytest.approx(expected["ssim"])
    assert scores.nmse == pytest.approx(expected["nmse"]) and scores.data_range == pytest.approx(float(target.max()))
    part = Case("v", "4x", 4, problem, target[:2], [0, 1], 3, 1.0, {}, {"max_value": 3.0})
    scores = protocol.score(part, padded[:2])  # a subset: the file's max of the whole volume
    mse = float(((image[:2].abs() * 2).double() - target[:2].double()).square().mean())
    assert scores.data_range == 3.0 and scores.psnr == pytest.approx(10 * math.log10(9.0 / mse))


# --------------------------------------------------------------------------------------------------
# errors and the output folder


def test_existing_outdir_is_refused_and_left_untouched(lidc_root, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["reproduce", "lidc", "--data", str(lidc_root), "--prior", "ct-starter", "-o", str(out)])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no staging folder left
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_missing_and_wrongly_laid_out_data(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reproduce", "lidc", "--data", str(tmp_path / "nowhere"), "--prior", "ct-starter", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and "nowhere" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()
    code = main(["reproduce", "brats", "--data", str(tmp_path / "empty"), "--prior", "mr-starter", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "<case>/<case>_<modality>" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_prior_of_another_size_reconstructs_on_its_grid_and_the_wrong_modality_is_refused(lidc_root, tmp_path):
    out = tmp_path / "out"
    args = parse("lidc", "--data", lidc_root, "-o", out, "--views", 6, "--size", 32, "--slices", 1, "--limit", 1,
                 "--samplers", "dds", "--steps", 2, "--quiet")
    with pytest.raises(InputError, match="MR prior"):
        run_reproduce(args, prior=gaussian_prior("MR", 32))
    assert not out.exists()
    # a 16x16 prior: the sinograms of the 32x32 slices, reconstructed on the prior's 16x16 grid, scored at 32x32
    assert run_reproduce(args, prior=gaussian_prior("CT", 16), stream=open(tmp_path / "log", "w")) == 0
    rows = {r["method"]: r for r in read_rows(out)}
    assert math.isfinite(float(rows["dds"]["psnr"])) and float(rows["tv_pdhg"]["psnr"]) > float(rows["fbp"]["psnr"]) - 3


def test_bad_flags(lidc_root, tmp_path):
    prior = gaussian_prior("CT", 32)
    for argv, match in (
        (("brats", "--data", lidc_root, "-o", tmp_path / "a", "--views", "10"), "--views applies to CT"),
        (("lidc", "--data", lidc_root, "-o", tmp_path / "a", "--views", "10,x"), "comma-separated"),
        (("fastmri", "--data", lidc_root, "-o", tmp_path / "a", "--accel", "6"), "accelerations"),
        (("lidc", "--data", lidc_root, "-o", tmp_path / "a", "--samplers", "dds,nope"), "unknown sampler"),
        (("lidc", "-o", tmp_path / "a"), "needs --data"),
    ):
        with pytest.raises(InputError, match=match):
            run_reproduce(parse(*argv), prior=prior)
    assert not (tmp_path / "a").exists()




# --------------------------------------------------------------------------------------------------
# resuming and sharding (a full LIDC or fastMRI run is GPU-hours)


def _table_without_times(out: Path) -> list[dict]:
    rows = read_rows(out)
    for row in rows:
        row.pop("seconds_per_slice")
    return rows


LIDC_ARGS = ("--views", "6", "--size", 32, "--slices", 2, "--steps", 2, "--samplers", "dds", "--quiet")


def test_a_killed_run_resumes_with_the_volumes_not_yet_scored_and_gives_the_same_table(lidc_root, tmp_path, monkeypatch):
    from medrecon.reproduce import run as run_module
    from medrecon.reproduce.progress import progress_folder

    whole = tmp_path / "whole"
    prior = gaussian_prior("CT", 32)
    assert run_reproduce(parse("lidc", "--data", lidc_root, "-o", whole, *LIDC_ARGS), prior=prior,
                         stream=open(tmp_path / "log0", "w")) == 0
    out = tmp_path / "resumed"
    original, scored = run_module._VolumeRun.volume, []

    def killed_at_the_second_volume(self, i, item):
        if i == 1:
            raise KeyboardInterrupt  # what a kill looks like to the Python code in between
        scored.append(i)
        return original(self, i, item)

    monkeypatch.setattr(run_module._VolumeRun, "volume", killed_at_the_second_volume)
    with pytest.raises(KeyboardInterrupt):
        run_reproduce(parse("lidc", "--data", lidc_root, "-o", out, *LIDC_ARGS), prior=prior, stream=open(tmp_path / "log1", "w"))
    assert not out.exists() and sorted(p.name for p in progress_folder(out).iterdir()) == ["figure.npz", "run.json",
                                                                                            "volume-00000.json"]
    # another run's arguments are refused, not mixed in (nothing is written)
    with pytest.raises(InputError, match="other arguments"):
        run_reproduce(parse("lidc", "--data", lidc_root, "-o", out, *LIDC_ARGS[:-1], "--seed", 5, "--quiet"), prior=prior)
    monkeypatch.setattr(run_module._VolumeRun, "volume", lambda self, i, item: scored.append(i) or original(self, i, item))
    log = tmp_path / "log2"
    assert run_reproduce(parse("lidc", "--data", lidc_root, "-o", out, *LIDC_ARGS), prior=prior, stream=open(log, "w")) == 0
    assert scored == [0, 1] and "resuming: 1 of 2 volume(s) already scored" in log.read_text()
    assert _table_without_times(out) == _table_without_times(whole)
    assert not progress_folder(out).exists()  # removed once OUTDIR is written
    # --overwrite starts again over another run's progress
    monkeypatch.setattr(run_module._VolumeRun, "volume", killed_at_the_second_volume)
    with pytest.raises(KeyboardInterrupt):
        run_reproduce(parse("lidc", "--data", lidc_root, "-o", tmp_path / "again", *LIDC_ARGS), prior=prior,
                      stream=open(tmp_path / "log3", "w"))
    monkeypatch.setattr(run_module._VolumeRun, "volume", original)
    assert run_reproduce(parse("lidc", "--data", lidc_root, "-o", tmp_path / "again", *LIDC_ARGS[:-1], "--seed", 5, "--quiet",
                               "--overwrite"), prior=prior, stream=open(tmp_path / "log4", "w")) == 0


_SHARDED_REPRODUCE = """
import sys
from medrecon.commands import build_parser
from medrecon.commands.reproduce import run
from tests.support import gaussian_prior

args = build_parser().parse_args(["reproduce", *sys.argv[1:]])
sys.exit(run(args, prior=gaussian_prior("CT", 32, 0.4, 0.3), stream=open(args.out + ".log", "a")))
"""


@pytest.mark.slow  # two torchrun processes start torch and build the CT matrix: about 15 s on 2 cores
def test_two_gloo_processes_give_the_one_process_table(lidc_root, tmp_path):
    import os
    import subprocess
    import sys

    from tests.support import ROOT

    single = tmp_path / "single"
    assert run_reproduce(parse("lidc", "--data", lidc_root, "-o", single, *LIDC_ARGS), prior=gaussian_prior("CT", 32),
                         stream=open(tmp_path / "log", "w")) == 0
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED_REPRODUCE)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    shared = tmp_path / "shared"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
                           "lidc", "--data", str(lidc_root), "-o", str(shared), *map(str, LIDC_ARGS)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _table_without_times(shared) == _table_without_times(single)
    summary = json.loads((shared / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["n_volumes"] == 2
    log = Path(str(shared) + ".log").read_text()  # each process scored its own volume
    assert "volume 1/2 LIDC-IDRI-0001" in log and "volume 2/2 LIDC-IDRI-0002" in log
