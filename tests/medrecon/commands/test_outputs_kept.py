"""Nothing is lost on the way out (docs/studies.md, "What is validated"): an output that is, holds or
lies inside the input, a read-only output folder, a folder that vanishes during the run and a disk
that fills up while writing each end in exit 2 with one line naming the path and the reason, with
the input and any previous outputs byte for byte as they were and no partial file left behind.

The read-only folder is real where permission bits bind; as root (they do not) the operating
system's refusal is simulated at ``os.open``, where the output folder's probe creates its file. The
full disk is simulated by a writer that writes part of its file and fails with ENOSPC, as a real one
does."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from medrecon.commands import main
from medrecon.errors import OutputError
from medrecon.outputs import check_spares_input


def tree(folder: Path) -> dict:
    """Every file and folder under ``folder``, hidden ones too, with its content's digest."""
    return {str(p.relative_to(folder)): "folder" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def refusal(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def study(tmp_path, small_mr_study) -> Path:
    """A copy of the 64x64 MR study inside the test's folder, so that its snapshot covers the input."""
    return Path(shutil.copy(small_mr_study, tmp_path / "mr.nii.gz"))


@pytest.fixture
def reconstruct(mr_prior_64):
    def run(study: Path, out: Path, *extra: str) -> int:
        return main(["reconstruct", str(study), "-o", str(out), "--modality", "MR", "--prior", str(mr_prior_64),
                     "--steps", "1", "--quiet", "--slices", "0:1", *extra])
    return run


def simulate(study: Path, out: Path, *extra: str) -> int:
    return main(["simulate", str(study), "-o", str(out), "--modality", "MR", "--coils", "2", *extra])


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only: its permission bits, and where they do not bind (root) the
    operating system's EACCES for a file created in it through ``os.open``."""
    made = []

    def make(folder: Path) -> Path:
        folder.mkdir()
        folder.chmod(0o555)
        made.append(folder)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            real_open = os.open

            def refusing_open(path, flags, *args, **kwargs):
                if flags & os.O_CREAT and Path(path).parent == folder:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real_open(path, flags, *args, **kwargs)

            monkeypatch.setattr(os, "open", refusing_open)
        return folder

    yield make
    for folder in made:
        folder.chmod(0o755)


def full_disk(written: list):
    """A writer ``(obj, path, ...)`` / ``(path, ...)`` that writes part of its file, then fails as a
    full disk does; ``written`` collects the paths it wrote to."""
    def write(*args, **kwargs):
        path = next(Path(a) for a in args if isinstance(a, (str, os.PathLike)))
        path.write_bytes(b"\0" * 4096)
        written.append(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return write


# ------------------------------------------------------------------------------- over the input
def test_an_output_that_is_holds_or_lies_inside_the_input_is_refused_even_through_a_link(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "slice.dcm").write_bytes(b"x")
    alias = tmp_path / "alias"
    alias.symlink_to(folder)
    for out, how in ((folder, "is"), (alias, "is"), (alias / "recon", "lies inside"), (tmp_path, "contains")):
        with pytest.raises(OutputError, match=f"{how} the input") as info:
            check_spares_input([out], folder)
        assert str(out) in str(info.value) and "\n" not in str(info.value)
    check_spares_input([tmp_path / "series-recon", tmp_path / "other" / "series"], folder)  # beside it: fine


def test_reconstruct_and_simulate_over_their_input_leave_it_untouched(tmp_path, study, reconstruct, capsys):
    before = tree(tmp_path)
    assert reconstruct(study, study, "--overwrite") == 2
    assert f"the output {study} is the input" in refusal(capsys)
    assert simulate(study, tmp_path, "--overwrite") == 2
    assert "contains the input" in refusal(capsys)
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------------- read-only folder
def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path, study, reconstruct, read_only, capsys):
    folder = read_only(tmp_path / "locked")
    before = tree(tmp_path)
    assert reconstruct(study, folder / "recon.nii.gz") == 2
    assert f"the output folder {folder} is not writable (Permission denied)" in refusal(capsys)
    assert simulate(study, folder / "sim") == 2
    assert f"{folder} is not writable" in refusal(capsys)
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------------- vanished folder
def test_an_output_folder_that_vanishes_during_the_run_leaves_nothing(tmp_path, study, reconstruct, monkeypatch,
                                                                       capsys):
    import medrecon.evaluation.baselines as baselines

    folder = tmp_path / "results"
    folder.mkdir()
    original = baselines.run_default_baseline

    def baseline_then_vanish(*args, **kwargs):  # the folder goes while the reconstruction runs
        shutil.rmtree(folder)
        return original(*args, **kwargs)

    monkeypatch.setattr(baselines, "run_default_baseline", baseline_then_vanish)
    before = tree(tmp_path)
    assert reconstruct(study, folder / "recon.nii.gz") == 2
    err = refusal(capsys)
    assert f"cannot write {folder}/recon" in err and "No such file or directory; nothing was written" in err
    assert tree(tmp_path) == {k: v for k, v in before.items() if k != "results"}  # not re-created, nothing else


# --------------------------------------------------------------------------------- full disk
def test_a_full_disk_while_reconstructing_keeps_the_previous_outputs(tmp_path, study, reconstruct, monkeypatch,
                                                                    capsys):
    import medrecon.outputs

    out = tmp_path / "recon.nii.gz"
    assert reconstruct(study, out) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"mr.nii.gz", "recon.nii.gz", "recon.json", "recon.png"}
    before = tree(tmp_path)
    written = []
    monkeypatch.setattr(medrecon.outputs, "save_study", full_disk(written))
    capsys.readouterr()
    assert reconstruct(study, out, "--overwrite") == 2
    assert f"cannot write {out}: No space left on device; nothing was written" in refusal(capsys)
    assert written and written[0].parent == tmp_path and written[0] != out  # it did write, to a staging file
    assert tree(tmp_path) == before  # the input and the previous outputs as they were, the partial file gone


def test_a_full_disk_while_simulating_keeps_the_previous_folder(tmp_path, study, monkeypatch, capsys):
    import medrecon.simulation

    out = tmp_path / "sim"
    assert simulate(study, out) == 0
    before = tree(tmp_path)
    written = []
    monkeypatch.setattr(medrecon.simulation, "write_fastmri_h5", full_disk(written))
    capsys.readouterr()
    assert simulate(study, out, "--overwrite", "--seed", "7") == 2
    assert f"cannot write {out}: No space left on device; nothing was written" in refusal(capsys)
    assert written and written[0].parent.parent == tmp_path  # inside the staging folder
    assert tree(tmp_path) == before
