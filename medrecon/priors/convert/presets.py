"""Named architectures of published medical diffusion checkpoints, for ``medrecon priors convert``.

A checkpoint of guided-diffusion (ADM) or score_sde (NCSN++) carries no config: the flags that
built it are in its authors' repository. Each preset gives those flags as the repository states
them (the file is named in ``flags_source``; ``scripts/make_conversion_fixtures.py`` reads the
files of a local clone and checks the presets against them), with what is known of the
checkpoint: paper, modality, where the authors host it, its licence status, and the normalisation
the authors trained on, as a card states it (:class:`medrecon.priors.normalisation.Normalisation`;
``user-choice`` where their repository ships already-scaled data and does not say how it was
scaled). ``refusal`` lists what stops a preset's published files from converting beyond what the
flags say (none at present). Pure data: no imports of torch or the converters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medrecon.errors import InputError


@dataclass(frozen=True)
class Preset:
    """One published checkpoint's architecture and provenance."""

    name: str
    format: str
    modality: str
    flags: dict
    paper: str
    checkpoint: str
    hosted: str
    flags_source: str
    licence: str
    normalisation: dict
    refusal: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


_DDS_FLAGS = {
    "num_channels": 256, "channel_mult": [1, 1, 2, 2, 4, 4], "num_res_blocks": 1, "attention_resolutions": [16],
    "num_heads": 4, "num_head_channels": 64, "num_heads_upsample": -1, "learn_sigma": True,
    "use_scale_shift_norm": True, "resblock_updown": True, "use_new_attention_order": False, "class_cond": False,
    "noise_schedule": "linear", "diffusion_steps": 1000,
}
_DDS = dict(
    paper="Chung, Lee & Ye, Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse Problems (ICLR 2024)",
    licence="no licence stated: the HJ-harry/DDS repository has no licence file and its README none for the weights "
            "(its network code is openai/guided-diffusion's, MIT)",
)
_NCSNPP_SWITCHES = {  # what every published medical NCSN++ shares (score_sde's config.model names)
    "num_channels": 1, "centered": False, "resblock_type": "biggan", "progressive_combine": "sum", "fir": True,
    "fir_kernel": [1, 3, 3, 1], "skip_rescale": True, "resamp_with_conv": True, "embedding_type": "fourier",
    "conditional": True, "scale_by_sigma": True, "attention_type": "ddpm", "normalization": "GroupNorm",
    "nonlinearity": "swish", "conv_size": 3, "sigma_min": 0.01,
}
_SONG_FLAGS = {
    **_NCSNPP_SWITCHES, "nf": 32, "num_res_blocks": 2, "progressive": "output_skip", "progressive_input": "input_skip",
    "sigma_max": 128.0, "num_scales": 1000,
}
_SONG = dict(
    paper="Song, Shen, Xing & Ermon, Solving Inverse Problems in Medical Imaging with Score-Based Generative Models (ICLR 2022)",
    hosted="Google Drive folder linked from the yang-song/score_inverse_problems README (checkpoints and test data)",
    licence="no licence stated: the yang-song/score_inverse_problems repository has no licence file (its config files "
            "carry Google's Apache-2.0 header) and the Drive folder states none",
)
_CHUNG_FLAGS = {  # score-MRI and DiffusionMBIR: score_sde_pytorch's NCSN++ with configs/default_lsun_configs.py
    **_NCSNPP_SWITCHES, "nf": 128, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16],
    "progressive": "none", "progressive_input": "residual", "sigma_max": 378.0, "num_scales": 2000,
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="dds-aapm-256", format="adm", modality="CT",
            flags={"image_size": 256, "in_channels": 1, **_DDS_FLAGS},
            checkpoint="AAPM256_1M.pt",
            hosted="Dropbox, linked from the HJ-harry/DDS README (the same file DiffusionMBIR uses)",
            flags_source="HJ-harry/DDS configs/vp/AAPM256.yml (model and diffusion flags) and guided_diffusion/"
                         "script_util.py create_model (channel_mult 1,1,2,2,4,4 for image_size 256; attention at "
                         "rates image_size // r)",
            normalisation={"kind": "user-choice", "note": "DDS ships AAPM 2016 slices as .npy images already in [0, 1] "
                           "(solver_2d.py loads them as they are); the map from HU is not stated in the repository"},
            **_DDS,
        ),
        Preset(
            name="dds-fastmri-knee-320", format="adm", modality="MR",
            flags={"image_size": 320, "in_channels": 2, **_DDS_FLAGS},
            checkpoint="fastmri_knee_320_complex_1m.pt",
            hosted="Dropbox, linked from the HJ-harry/DDS README (saved there as fastmri_brain_320_complex_1m.pth)",
            flags_source="HJ-harry/DDS configs/vp/fastmri_knee_320_complex.yml and guided_diffusion/script_util.py "
                         "create_model (channel_mult 1,1,2,2,4,4 for image_size 320; attention_resolutions 16 gives "
                         "the rate 320 // 16 = 20, which no level has: attention only in the middle block)",
            normalisation={"kind": "user-choice", "note": "complex fastMRI knee slices as two channels (real, imaginary), "
                           "shipped as already-scaled .npy files (solver_2d.py loads them as they are); the scaling is "
                           "not stated in the repository"},
            **_DDS,
        ),
        Preset(
            name="song2022-lidc-320", format="ncsnpp", modality="CT",
            flags={"image_size": 320, "ch_mult": [1, 1, 2, 2, 2, 2, 2], "attn_resolutions": [20], **_SONG_FLAGS},
            checkpoint="LIDC-IDRI 320x320 NCSN++, a Flax checkpoint (config ct2d_320_ncsnpp_continuous, evaluation "
                       "checkpoint 101)",
            flags_source="yang-song/score_inverse_problems configs/ve/ct2d_320_ncsnpp_continuous.py (with "
                         "configs/default_cs_configs.py: embedding_type fourier, num_channels 1)",
            normalisation={"kind": "volume-minmax", "note": "each LIDC-IDRI volume min-max scaled to [0, 1] "
                           "(ct2d_320/ct2d_320.py slice_3d_img, over the whole volume), then stored as 8-bit images"},
            **_SONG,
        ),
        Preset(
            name="song2022-brats-240", format="ncsnpp", modality="MR",
            flags={"image_size": 240, "ch_mult": [1, 1, 2, 2, 2], "attn_resolutions": [30], **_SONG_FLAGS},
            checkpoint="BraTS 2021 240x240 NCSN++, a Flax checkpoint (config brats_ncsnpp_continuous, evaluation "
                       "checkpoint 26)",
            flags_source="yang-song/score_inverse_problems configs/ve/brats_ncsnpp_continuous.py (with "
                         "configs/default_cs_configs.py: embedding_type fourier)",
            normalisation={"kind": "volume-clip-minmax", "clip_std": 6.0, "note": "each BraTS volume: the box of its "
                           "voxels above the minimum, clipped to mean +- 6 std of the box, min-max scaled to [0, 1], "
                           "zero outside the box (brats/brats.py mri_data_norm), then stored as 8-bit images"},
            **_SONG,
        ),
        Preset(
            name="chung2022-fastmri-knee-320", format="ncsnpp", modality="MR",
            flags={"image_size": 320, **_CHUNG_FLAGS},
            paper="Chung & Ye, Score-based diffusion models for accelerated MRI (Medical Image Analysis 2022)",
            checkpoint="checkpoint_95.pth (a score_sde_pytorch checkpoint)",
            hosted="Dropbox, linked from the HJ-harry/score-MRI install.sh (and the HJ-harry/DiffusionMBIR README)",
            flags_source="HJ-harry/score-MRI configs/ve/fastmri_knee_320_ncsnpp_continuous.py (with "
                         "configs/default_lsun_configs.py: num_channels 1, centered False, sigma range, num_scales, "
                         "embedding_type fourier)",
            licence="code Apache-2.0 (HJ-harry/score-MRI LICENSE); no separate statement for the weights",
            normalisation={"kind": "slice-minmax", "note": "fastMRI knee magnitude images, each slice's magnitude "
                           "min-max scaled to [0, 1]: the shipped sample samples/single-coil/001.npy spans exactly "
                           "[0, 1], and utils.py normalize / normalize_complex (the multi-coil scripts) min-max the "
                           "magnitude; the training files' preparation is not in the repository"},
        ),
        Preset(
            name="chung2023-aapm-256", format="ncsnpp", modality="CT",
            flags={"image_size": 256, **_CHUNG_FLAGS},
            paper="Chung, Ryu, McCann, Klasky & Ye, Solving 3D Inverse Problems using Pre-trained 2D Diffusion Models "
                  "(DiffusionMBIR, CVPR 2023)",
            checkpoint="checkpoint_185.pth (a score_sde_pytorch checkpoint, exp/ve/AAPM_256_ncsnpp_continuous)",
            hosted="Dropbox, linked from the HJ-harry/DiffusionMBIR README",
            flags_source="HJ-harry/DiffusionMBIR configs/ve/AAPM_256_ncsnpp_continuous.py (with "
                         "configs/default_lsun_configs.py: num_channels 1, centered False, sigma range, num_scales, "
                         "embedding_type fourier)",
            licence="code Apache-2.0 (HJ-harry/DiffusionMBIR LICENSE); no separate statement for the weights",
            normalisation={"kind": "user-choice", "note": "AAPM 2016 slices shipped as .npy images already in [0, 1] "
                           "(datasets.py AAPM, inverse_problem_solver_AAPM_3d_total.py load them as they are); the map "
                           "from HU is not stated in the repository"},
        ),
    )
}


def get_preset(name: str, fmt: str) -> Preset:
    """The preset ``name`` for checkpoints of format ``fmt`` (:class:`InputError` if unknown)."""
    preset = PRESETS.get(name)
    if preset is None:
        known = ", ".join(f"{p.name} ({p.format})" for p in PRESETS.values())
        raise InputError(f"unknown preset {name!r}; known: {known}")
    if preset.format != fmt:
        raise InputError(f"preset {name!r} is for --format {preset.format}, not {fmt}")
    return preset
