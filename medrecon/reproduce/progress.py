"""A reproduction's finished volumes on disk, so that a killed run resumes and several processes share one.

A full LIDC-IDRI or fastMRI run is hours to days of sampling; :func:`medrecon.reproduce.run.reproduce`
scores one volume at a time and keeps each finished volume here, in ``OUTDIR.progress/`` beside the
output folder:

- ``run.json``: the run's fingerprint (protocol, data folder, prior and its sha256, samplers, steps,
  settings, slices, volume limit, seed, batch size): a restart with other arguments is refused
  (it would mix two runs' numbers), one with the same arguments resumes;
- ``volume-NNNNN.json``: volume ``NNNNN``'s table rows, per-slice scores, acquisition record, method
  details and sampler settings (written atomically, after the volume is complete);
- ``figure.npz``: the images of the figure (the first volume's middle slice).

``torchrun`` processes (:mod:`medrecon.distributed`) share the folder: process ``r`` of ``W`` scores
the volumes ``i`` with ``i % W == r``, and process 0 assembles the tables from every volume's file
once all are there. The folder is removed when OUTDIR is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output

SUFFIX = ".progress"
RUN_FILE = "run.json"
FIGURE_FILE = "figure.npz"


def progress_folder(out: str | Path) -> Path:
    """``OUTDIR.progress`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.name + SUFFIX)


class Progress:
    """The finished volumes of one run (module docstring). ``fingerprint``: JSON-able; ``restart``:
    discard another run's progress instead of refusing it (``--overwrite``). The folder is made at
    the first :meth:`save`, so a run refused before any volume is finished leaves nothing."""

    def __init__(self, out: str | Path, fingerprint: dict, *, restart: bool = False) -> None:
        self.folder = progress_folder(out)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        run_file = self.folder / RUN_FILE
        if self.folder.exists():
            try:
                recorded = json.loads(run_file.read_text())
            except (OSError, ValueError):
                recorded = None
            if recorded != self.fingerprint:
                if not restart:
                    raise InputError(
                        f"{self.folder} holds the partial results of a run with other arguments (or is damaged): run "
                        "again with the same arguments to resume it, or pass --overwrite to start again"
                    )
                shutil.rmtree(self.folder)

    def _volume_file(self, index: int) -> Path:
        return self.folder / f"volume-{index:05d}.json"

    def done(self) -> set[int]:
        """The indices of the volumes already scored."""
        return {int(p.stem.split("-")[1]) for p in self.folder.glob("volume-*.json")} if self.folder.exists() else set()

    def save(self, index: int, result: dict, figure: dict[str, list[np.ndarray]] | None = None) -> None:
        """Record volume ``index`` (and, for the figure's volume, its images), atomically."""
        if not (self.folder / RUN_FILE).is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.folder / RUN_FILE, overwrite=True, suffix=".json") as tmp:
                tmp.write_text(json.dumps(self.fingerprint, indent=2) + "\n")
        if figure:
            with atomic_output(self.folder / FIGURE_FILE, overwrite=True, suffix=".npz") as tmp:
                np.savez(tmp, **{name: np.stack(images) for name, images in figure.items()},
                         __order__=np.array(list(figure)))
        with atomic_output(self._volume_file(index), overwrite=True, suffix=".json") as tmp:
            tmp.write_text(json.dumps(result) + "\n")  # NaN scores of a diverged method are kept as NaN

    def load(self, index: int) -> dict:
        return json.loads(self._volume_file(index).read_text())

    def figure(self) -> dict[str, list[np.ndarray]]:
        """The figure's images by column (empty when no volume of the figure was saved)."""
        path = self.folder / FIGURE_FILE
        if not path.is_file():
            return {}
        with np.load(path) as stored:
            return {str(name): list(stored[str(name)]) for name in stored["__order__"]}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["FIGURE_FILE", "Progress", "RUN_FILE", "SUFFIX", "progress_folder"]
