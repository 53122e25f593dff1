"""The training data (medrecon.priors.training.data): normalised slices with their provenance, the
validation split refused, augmentation drawn from its generator only, disjoint shards per rank."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.normalisation import Normalisation
from medrecon.priors.training import TrainingSlices
from medrecon.priors.training.loop import _DataOrder
from tests.support import CT_SAMPLE, MR_TRAIN


# ------------------------------------------------------------------------------------------- data
def test_training_slices_normalised_and_provenance(ct_slices):
    assert ct_slices.images.shape == (16, 1, 32, 32)
    assert 0 <= float(ct_slices.images.min()) and float(ct_slices.images.max()) <= 1
    assert [s["id"] for s in ct_slices.sources] == ["ct-lung2"] and ct_slices.sources[0]["split"] == "train"
    norm = Normalisation.for_modality("CT")
    assert Normalisation.from_dict(norm.to_dict()) == norm
    hu = torch.tensor([-2000.0, -1000.0, 500.0, 2000.0, 3000.0])
    assert torch.allclose(norm.apply(hu), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    mr = TrainingSlices.from_files([MR_TRAIN], modality="mr", size=32)
    assert mr.normalisation.to_dict() == {"kind": "volume-percentile", "percentile": 99.5}
    # normalised at native resolution (the percentile of the volume), then resampled
    assert 0.8 < float(mr.images.max()) <= 1.0 and 0 < float(mr.images.mean()) < 0.6


def test_validation_data_refused():
    with pytest.raises(InputError, match="validation"):
        TrainingSlices.from_files([CT_SAMPLE], modality="ct", size=32)
    with pytest.raises(InputError, match="validation"):
        TrainingSlices.from_starter("ct", ids=["ct-lung1"])
    with pytest.raises(InputError, match="validation"):
        TrainingSlices.from_starter("mr", ids=["mr-brain2"])


def test_augmentation_uses_only_the_generator(ct_slices):
    ds = TrainingSlices(ct_slices.images, modality="CT", normalisation=ct_slices.normalisation, crop_size=16)
    state = torch.get_rng_state()
    a = ds.batch([0, 1, 2, 3], torch.Generator().manual_seed(1))
    b = ds.batch([0, 1, 2, 3], torch.Generator().manual_seed(1))
    c = ds.batch([0, 1, 2, 3], torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(ds.batch([5], None), ct_slices.images[5:6, :, 8:24, 8:24])


def test_data_order_disjoint_shards():
    order = _DataOrder(10, seed=0)
    world, batch = 2, 3
    for step in range(5):
        shards = [order.indices(step * world * batch + r * batch, batch) for r in range(world)]
        assert torch.equal(torch.cat(shards), order.indices(step * world * batch, world * batch))
    epoch0 = order.indices(0, 10)
    assert sorted(epoch0.tolist()) == list(range(10))
