"""Readers and writers of medical image and raw-data formats, one module per format and job.

Studies (images; the :class:`~medrecon.study.Study` type and its conventions are
:mod:`medrecon.study`, below every module here):

- :mod:`medrecon.io.studies`: ``load_study`` / ``save_study`` / ``check_save``, the dispatch on the
  format a path names; it sits above the format modules, and ``medrecon.load_study`` /
  ``medrecon.save_study`` are its functions;
- :mod:`medrecon.io.dicom_read` (a DICOM series as a Study) and :mod:`medrecon.io.dicom_write` (a
  new derived series, above the reader), :mod:`medrecon.io.nifti`, :mod:`medrecon.io.nrrd`;
- :mod:`medrecon.io.sidecar` (the modality in a JSON sidecar and a header tag, for NIfTI and NRRD)
  and :mod:`medrecon.io.atomic` (write under a temporary name, rename when complete).

Raw k-space (not Studies): :mod:`medrecon.io.kspace` (fastMRI), :mod:`medrecon.io.noncartesian`
(the non-Cartesian data type and medrecon's own layout) and :mod:`medrecon.io.mrd` (ISMRMRD / MRD,
above it), sharing the argument checks of :mod:`medrecon.io.checks`.

This ``__init__`` imports nothing, so ``import medrecon.io.X`` loads only X and what X needs.
"""
