"""NRRD volumes read with numpy alone (medrecon.io.nrrd), against a file written here."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from medrecon.errors import InputError
from medrecon.io.nrrd import read_nrrd


def test_nrrd_reader_against_a_file_written_here(tmp_path):
    data = np.arange(4 * 3 * 2, dtype="<i2").reshape(2, 3, 4)  # NRRD stores the fastest axis first
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 3 2\n"
        "space directions: (0.5,0,0) (0,0.7,0) (0,0,3)\nendian: little\nencoding: gzip\n"
        "space origin: (10,20,30)\n\n"
    )
    path = tmp_path / "v.nrrd"
    path.write_bytes(header.encode() + gzip.compress(data.tobytes()))
    volume = read_nrrd(path)
    np.testing.assert_array_equal(volume.data, data.transpose())  # (i, j, k) order
    # LPS -> RAS flips x and y
    np.testing.assert_allclose(volume.affine, [[-0.5, 0, 0, -10], [0, -0.7, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]])
    path.write_bytes(header.replace("gzip", "bzip2").encode() + data.tobytes())
    with pytest.raises(InputError, match="bzip2"):
        read_nrrd(path)
