"""Suite-wide options and fixtures.

- Tests marked ``astra`` (they ask for astra-toolbox itself, as a reference or an astra-only
  option) skip where astra cannot be loaded, as on a CUDA-13-only GPU image; every other test must
  pass there, the CT operators falling back to the torch builder.
- Fixtures hand out the builders of :mod:`tests.support` (small priors, problems, generators) and,
  once per session, prior folders for command-line tests. Folders with fixtures of their own:
  medrecon/commands/conftest.py (a 64x64 MR study and prior), medrecon/priors/conftest.py (training
  slices). Writers of synthetic raw-data and dataset files: :mod:`tests.support_files`.
"""

from __future__ import annotations

import pytest

from tests import support


def pytest_collection_modifyitems(config, items):
    from medrecon.operators.astra_backend import astra_available, load_error

    if astra_available():
        return
    skip = pytest.mark.skip(reason=f"astra-toolbox cannot be loaded here ({load_error()})")
    for item in items:
        if "astra" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny problems (on a busy machine, threads only wait for
    each other: tens of seconds instead of a few); restored after the module. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gaussian_prior():
    """``gaussian_prior(modality="CT", size=8, mean=0.5, std=0.1)``: the analytic Gaussian prior."""
    return support.gaussian_prior


@pytest.fixture
def unet_prior():
    """``unet_prior(modality="CT", size=16)``: an untrained EDM UNet prior."""
    return support.unet_prior


@pytest.fixture
def tiny_latent_prior():
    """``tiny_latent_prior(modality="CT")``: an untrained latent prior on 8x8 images."""
    return support.tiny_latent_prior


@pytest.fixture
def small_ct_problem():
    """``small_ct_problem(n=3, size=8, views=4)`` -> ``(Problem, x)``."""
    return support.small_ct_problem


@pytest.fixture
def small_mr_problem():
    """``small_mr_problem(n=2, size=16, coils=4, noisy=False)`` -> ``(Problem, x)``."""
    return support.small_mr_problem


@pytest.fixture
def generators():
    """``generators(n, seed=0)``: one seeded ``torch.Generator`` per batch item."""
    return support.generators


@pytest.fixture(scope="session")
def cli_priors(tmp_path_factory):
    """``{"CT": folder, "MR": folder}``: untrained 256x256 prior folders for the command line (``--prior``)."""
    root = tmp_path_factory.mktemp("priors")
    return {m: support.saved_unet_prior(root / f"tiny-{m.lower()}", m) for m in ("CT", "MR")}
