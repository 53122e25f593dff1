"""`medrecon bench volume` (medrecon.benchmarks.throughput): its ``--steps SAMPLER=N`` arguments and the
volume it repeats slices into."""

from __future__ import annotations

import pytest
import torch


def test_bench_volume_arguments_and_volume():
    from medrecon.benchmarks.throughput import parse_steps
    from medrecon.benchmarks.volume import repeated_volume
    from medrecon.errors import InputError

    assert parse_steps(["dps=20", "dds=5"]) == {"dps": 20, "dds": 5}
    for bad in (["dps"], ["dps=0"], ["nope=3"], ["dds=x"]):
        with pytest.raises(InputError, match="SAMPLER=N"):
            parse_steps(bad)
    block = torch.arange(3.0).reshape(3, 1, 1, 1)
    assert repeated_volume(block, 8).flatten().tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
