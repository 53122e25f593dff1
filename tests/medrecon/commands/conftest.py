"""Fixtures of the command-line tests: a 64x64 copy of two MR sample slices and a prior of that size
(the commands' MR paths at a sixteenth of the sample's pixels: the default baseline on 256x256
8-coil k-space alone takes about 10 s)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from skimage.transform import resize

from tests import support

SMALL = 64


@pytest.fixture(scope="session")
def small_mr_study(tmp_path_factory):
    """A 64x64 NIfTI of slices 3 and 4 of the MR sample, its affine scaled to keep the field of view."""
    source = nib.load(support.MR_SAMPLE)
    data = source.get_fdata()[:, :, 3:5]
    small = np.stack([resize(data[:, :, k], (SMALL, SMALL), anti_aliasing=True, preserve_range=True) for k in range(2)], -1)
    affine = source.affine.copy()
    affine[:3, :2] *= data.shape[0] / SMALL
    path = tmp_path_factory.mktemp("study") / "mr-small.nii.gz"
    nib.save(nib.Nifti1Image(small.astype(np.float32), affine), path)
    return path


@pytest.fixture(scope="session")
def mr_prior_64(tmp_path_factory):
    """An untrained MR prior folder for 64x64 images."""
    return support.saved_unet_prior(tmp_path_factory.mktemp("priors") / "tiny-mr-64", "MR", size=SMALL)
