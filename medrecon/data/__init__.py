"""The starter corpus: real CT and MR scans from PyPI and Debian packages (docs/studies.md).

- :mod:`medrecon.data.sources`: the sources table and THE train/validation split (by patient),
  read by every command that trains, tunes or reports: :func:`training_sources`,
  :func:`validation_sources`.
- :mod:`medrecon.data.fetch`: ``medrecon data fetch`` (:func:`fetch`), the manifest, checksums.
- :func:`load_starter`: a converted source as a :class:`~medrecon.study.Study`.

Importing this package is cheap (no torch, no nibabel, no network). ``medrecon.data.fetch`` is the
function; the module of the same name is ``importlib.import_module("medrecon.data.fetch")``.
"""

from __future__ import annotations

from pathlib import Path

from medrecon.data.fetch import (
    ENV_VAR,
    MANIFEST_NAME,
    FetchResult,
    default_dest,
    fetch,
    format_summary,
    read_manifest,
    starter_path,
    verify,
)
from medrecon.data.sources import (
    DEFAULT_IDS,
    SOURCES,
    SPLIT,
    Source,
    get_source,
    pretraining_sources,
    sources,
    training_sources,
    validation_sources,
)

__all__ = [
    "DEFAULT_IDS",
    "ENV_VAR",
    "MANIFEST_NAME",
    "SOURCES",
    "SPLIT",
    "FetchResult",
    "Source",
    "default_dest",
    "fetch",
    "format_summary",
    "get_source",
    "load_starter",
    "pretraining_sources",
    "read_manifest",
    "sources",
    "starter_path",
    "training_sources",
    "validation_sources",
    "verify",
]


def load_starter(source_id: str, dest: str | Path | None = None, *, verify: bool = True, **options):
    """Load a fetched starter source as a :class:`~medrecon.study.Study` (axial slices by default).

    ``dest`` defaults to ``$MEDRECON_DATA`` or ``~/.cache/medrecon/starter``; the file is checked
    against the manifest's sha256 unless ``verify=False``. ``options`` go to
    :func:`medrecon.io.studies.load_study` (e.g. ``slice_axis=0`` for sagittal slices of mr-colin27).
    The study's ``source["starter"]`` records the id, split and patient.
    """
    from medrecon.io.studies import load_study

    source = get_source(source_id)
    path = starter_path(source.id, dest, verify=verify)
    study = load_study(path, modality=source.modality, **options)
    study.name = source.id
    study.source["starter"] = {"id": source.id, "split": source.split, "patient": source.patient}
    return study
