"""Outputs moved into place whole and together (medrecon.io.atomic)."""

from __future__ import annotations

import os

import pytest

from medrecon.errors import InputError, OutputError
from medrecon.io import atomic
from medrecon.io.atomic import atomic_output, staged_outputs


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_file_replaces_the_old_one_only_when_complete(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("old")
    with pytest.raises(InputError, match="exists"):
        with atomic_output(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output(out, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert out.read_text() == "old" and _leftovers(tmp_path) == []
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and _leftovers(tmp_path) == []


def test_outputs_staged_together_are_all_replaced(tmp_path):
    (tmp_path / "v.nii").write_text("old volume")
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "1.dcm").write_text("old slice")
    with staged_outputs() as stage:
        stage.add(tmp_path / "v.nii", overwrite=True).write_text("new volume")
        stage.add(tmp_path / "v.json", overwrite=True).write_text("new record")
        (stage.add(tmp_path / "series", overwrite=True, folder=True) / "1.dcm").write_text("new slice")
    assert (tmp_path / "v.nii").read_text() == "new volume" and (tmp_path / "v.json").read_text() == "new record"
    assert (tmp_path / "series" / "1.dcm").read_text() == "new slice" and _leftovers(tmp_path) == []


def test_a_move_that_fails_puts_every_old_output_back(tmp_path, monkeypatch):
    """The record cannot be moved in after the volume was: the volume moved in is removed and both
    old outputs are back, the temporaries gone (before, the volume stayed new beside the old record)."""
    (tmp_path / "v.nii").write_text("old volume")
    (tmp_path / "v.json").write_text("old record")
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".partial.json"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OutputError, match="No space left on device; nothing was written"):
        with staged_outputs() as stage:
            stage.add(tmp_path / "v.nii", overwrite=True).write_text("new volume")
            stage.add(tmp_path / "v.json", overwrite=True, suffix=".json").write_text("new record")
    assert (tmp_path / "v.nii").read_text() == "old volume" and (tmp_path / "v.json").read_text() == "old record"
    assert _leftovers(tmp_path) == []
