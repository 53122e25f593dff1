"""The sampler registry: one entry per sampler, and every other place reads it."""

from __future__ import annotations

import pytest

from medrecon.commands import build_parser
from medrecon.errors import InputError
from medrecon.samplers import SAMPLERS, sampler_names, sampler_spec
from medrecon.samplers.presets import TASKS, sampler_settings


def test_every_sampler_has_a_function_presets_for_every_task_and_presets_it_accepts():
    for name, spec in SAMPLERS.items():
        assert spec.name == name and callable(spec.function) and spec.short and spec.title
        assert set(spec.presets()) == set(TASKS)
        for task in TASKS:
            settings = sampler_settings(name, task)  # every preset option is one of the function's
            assert settings.nfe == spec.nfe(settings.steps) >= settings.steps


def test_the_facts_the_pipeline_and_the_benchmarks_read():
    assert sampler_names(prior="latent") == ["resample"]
    assert sampler_names(slice_wise=False) == ["diffusion_mbir"]
    assert [s.name for s in SAMPLERS.values() if s.takes_volume_prior] == ["dds", "diffusion_mbir"]
    assert {s.name for s in SAMPLERS.values() if s.long} == {"dps", "score_sde", "resample", "diffusion_mbir"}
    assert {s.name for s in SAMPLERS.values() if s.gradient} == {"dps", "resample"}
    assert SAMPLERS["score_sde"].nfe(1000) == 2001 and SAMPLERS["dds"].nfe(50) == 50
    assert SAMPLERS["resample"].default_prior("MR") == "mr-starter-latent" and SAMPLERS["dds"].default_prior("CT") == "ct-starter"
    with pytest.raises(InputError, match="unknown sampler 'nope'"):
        sampler_spec("nope")


def test_options_are_checked_against_the_functions_annotations():
    assert sampler_settings("dds", "ct-clean", gamma_rel=3, volume_prior="tv-z").options["gamma_rel"] == 3
    assert sampler_settings("dps", "ct-clean", clip=[0, 1]).options["clip"] == [0, 1]  # JSON gives a list for a tuple
    for sampler, option, value, message in (("dds", "gamma_rel", "abc", "float or None"), ("dds", "cg_iters", 2.5, "int"),
                                            ("dds", "eta", True, "float"), ("resample", "final_cg", 1, "bool"),
                                            ("dds", "sigma_max", "x", "a number")):
        with pytest.raises(InputError, match=message):
            sampler_settings(sampler, "ct-clean", **{option: value})
    with pytest.raises(InputError, match="has no option"):
        sampler_settings("dds", "ct-clean", zeta_rel=1.0)


def _choices(parser, *path):
    for word in path:
        parser = next(a for a in parser._actions if a.choices and word in a.choices).choices[word]
    return parser


def test_the_command_line_offers_the_registry():
    parser = build_parser()
    reconstruct = _choices(parser, "reconstruct")
    sampler = next(a for a in reconstruct._actions if a.dest == "sampler")
    assert list(sampler.choices) == list(SAMPLERS) and sampler.default == next(iter(SAMPLERS))
    recon = _choices(parser, "bench", "recon")
    samplers = next(a for a in recon._actions if a.dest == "samplers")
    assert samplers.default == sampler_names(slice_wise=True)
    volume = _choices(parser, "bench", "volume")
    assert next(a for a in volume._actions if a.dest == "samplers").default == sampler_names(prior="pixel", slice_wise=True)


def test_published_numbers_name_registry_samplers_or_registry_baselines():
    from medrecon.evaluation.baselines import BASELINES
    from medrecon.reproduce.protocols import PROTOCOLS

    for protocol in PROTOCOLS.values():
        for published in protocol.published:
            assert published.method is None or published.method in SAMPLERS or published.method in BASELINES
        assert set(protocol.baselines) <= set(BASELINES)
