"""Reproduction of the papers' tables on published datasets (LIDC-IDRI, BraTS, fastMRI).

:mod:`medrecon.reproduce.datasets` turns each dataset, in its published on-disk layout, into
evaluation items normalised exactly as the published protocols prescribe (docs/reproduce.md).
"""
