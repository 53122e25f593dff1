"""Training priors: one loop, three stages, and the training data.

- :mod:`~medrecon.priors.training.loop`: the loop every stage runs (data order, per-step seeded
  generators, optimizer, optional EMA, DDP, logging, atomic checkpoints, resume checks, the time
  limit, the record's common fields) and the :class:`~medrecon.priors.training.loop.Stage` contract.
- :mod:`~medrecon.priors.training.pixel`: the pixel EDM prior (:func:`train`, exports ``prior/``).
- :mod:`~medrecon.priors.training.autoencoder`: the autoencoder of a latent prior
  (:func:`train_autoencoder`, exports ``autoencoder/``).
- :mod:`~medrecon.priors.training.latent`: the latent denoiser of a latent prior
  (:func:`train_latent`, exports the latent prior folder ``prior/``).
- :mod:`~medrecon.priors.training.data`: :class:`TrainingSlices`, the augmented training slices.

What the runtime shares with training (normalisation, resampling) is in
:mod:`medrecon.priors.normalisation`.
"""

from .autoencoder import AUTOENCODER_CHECKPOINT_FORMAT, AUTOENCODER_DIR, AutoencoderTrainConfig, autoencoder_loss, train_autoencoder
from .data import TrainingSlices
from .latent import train_latent
from .loop import CHECKPOINT_FORMAT, CHECKPOINT_NAME, RECORD_NAME, RNG_SCHEME, TimeBudget, load_checkpoint
from .pixel import EMA_NAME, PRIOR_DIR, TrainConfig, edm_loss, export_prior, initial_weights, train

__all__ = [
    "TrainConfig",
    "train",
    "edm_loss",
    "load_checkpoint",
    "initial_weights",
    "export_prior",
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "EMA_NAME",
    "RECORD_NAME",
    "PRIOR_DIR",
    "RNG_SCHEME",
    "TimeBudget",
    "AutoencoderTrainConfig",
    "autoencoder_loss",
    "train_autoencoder",
    "AUTOENCODER_DIR",
    "AUTOENCODER_CHECKPOINT_FORMAT",
    "train_latent",
    "TrainingSlices",
]
