"""Train a small score prior on your own NIfTI files, load it back and measure it as a denoiser.

    python examples/train_own_prior.py [--fast] [--modality ct|mr] [FILE.nii.gz ...] [--steps 400] [--size 64] [-o DIR]

- Data: the axial slices of FILES (default: data/train/{ct,mr}-*.nii.gz of --modality), normalised as
  the priors are (CT: HU window [-1000, 2000] -> [0, 1]; MR: magnitude / the volume's 99.5th
  percentile, clipped), resampled to ``--size`` x ``--size`` (32 with --fast): ``(N, 1, size, size)``.
  Files of the validation patients (e.g. data/ct-lung1-sample.nii.gz) are refused. The middle slice
  of the first file is held out of training.
- Training: ``medrecon.priors.training.train`` (EDM denoising score matching, AdamW, EMA) of a small
  UNet (``UNetConfig``); --fast: 3 steps of batch 4 with a tiny 2-level UNet. The run writes
  ``DIR/checkpoint.pt``, ``DIR/train_record.json`` and the prior folder ``DIR/prior`` (a temporary
  DIR, deleted at the end, unless ``-o`` is given; an existing DIR is resumed).
- Evaluation: ``load_prior(DIR/prior)``; the held-out slice plus white Gaussian noise of std 0.1
  (units of the normalised image, data range 1) is denoised with ``D(x, 0.1)``; PSNR of the noisy
  input and of the denoised slice (clipped to [0, 1]) against the clean slice.

A few hundred steps on a CPU give a weak prior; docs/priors.md states what the starter priors took.
"""

import argparse
import tempfile
from pathlib import Path

import torch

import medrecon
from medrecon.priors.networks import UNetConfig
from medrecon.priors.training import TrainConfig, TrainingSlices, train

TRAIN_DIR = Path(__file__).resolve().parents[1] / "data" / "train"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*", help="NIfTI/NRRD files or DICOM folders (default: data/train/MODALITY-*.nii.gz)")
    parser.add_argument("--fast", action="store_true", help="3 steps on 32x32 slices with a tiny UNet (for CI)")
    parser.add_argument("--modality", choices=("ct", "mr"), default="ct")
    parser.add_argument("--steps", type=int, default=400, help="training steps (3 with --fast)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="slice size in pixels (32 with --fast)")
    parser.add_argument("-o", "--out", default=None, help="training folder to keep (default: a temporary one)")
    args = parser.parse_args()

    files = args.files or sorted(TRAIN_DIR.glob(f"{args.modality}-*.nii.gz"))
    size = 32 if args.fast else args.size
    data = TrainingSlices.from_files(files, modality=args.modality, size=size)     # (N, 1, size, size) in [0, 1]
    held = data.sources[0]["slices"] // 2                                          # middle slice of the first file
    keep = [i for i in range(len(data)) if i != held]
    train_set = TrainingSlices(data.images[keep], modality=data.modality, normalisation=data.normalisation,
                               sources=data.sources)
    print(f"training on {len(train_set)} slices of {[s['id'] for s in data.sources]} at {size}x{size}, slice {held} held out")

    if args.fast:
        unet = UNetConfig(sample_size=size, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4,
                          layers_per_block=1)
        config = TrainConfig(steps=3, batch_size=4, seed=0, log_every=1)
    else:
        unet = UNetConfig(sample_size=size, block_out_channels=(32, 64, 64), attention_levels=(), layers_per_block=1)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=0, log_every=50,
                             checkpoint_every=max(1, args.steps // 4))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "own-prior"
        record = train(config, unet, train_set, out)  # CUDA when available
        loss = "-" if record["final_loss"] is None else f"{record['final_loss']:.4f}"  # None: a finished run, resumed
        print(f"trained {record['steps']} steps ({record['seconds_this_run']:.1f} s in this run), final loss {loss}"
              f" -> {out / 'prior'}" + ("" if args.out else " (temporary; -o DIR keeps it)"))

        prior = medrecon.load_prior(out / "prior")
        clean = data.images[held : held + 1]                                         # (1, 1, size, size)
        noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            denoised = prior.denoiser(noisy, 0.1)
        for name, image in (("noisy input (sigma 0.1)", noisy), (f"denoised by {prior.card.name}", denoised)):
            print(f"{name:26s} PSNR {medrecon.psnr(image.clamp(0, 1), clean, data_range=1.0, per='volume'):.2f} dB")


if __name__ == "__main__":
    main()
