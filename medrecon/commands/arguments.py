"""Argument types and groups the commands share (no torch: ``medrecon --help`` stays instant).

Types raise :class:`argparse.ArgumentTypeError`, which argparse turns into a usage error (exit 2)
naming the flag. Library functions never see an :class:`argparse.Namespace`: each command turns
its flags into explicit arguments or an options dataclass (:func:`options_from`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from medrecon.errors import InputError, MissingResourceError
from medrecon.samplers.registry import DEFAULT_SAMPLER, SAMPLERS, sampler_names

MODALITIES = ("CT", "MR")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune")


def positive_int(value: str) -> int:
    """A whole number >= 1."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(value).strip().lstrip("+") != str(number):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    """A whole number >= 0."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}")
    return number


def batch_size(value: str):
    """``--batch-size``: a positive integer or ``auto``."""
    if value == "auto":
        return value
    try:
        return positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {value!r}") from None


def modality(value: str) -> str:
    """``--modality``: CT or MR, in any case."""
    upper = str(value).upper()
    if upper not in MODALITIES:
        raise argparse.ArgumentTypeError(f"expected CT or MR (any case), got {value!r}")
    return upper


def add_modality(parser, help_text: str = "CT or MR, any case; required for NIfTI/NRRD (DICOM records it)", **kwargs) -> None:
    parser.add_argument("--modality", type=modality, metavar="{CT,MR}", help=help_text, **kwargs)


def add_sampler(parser, *, names=None, default: str = DEFAULT_SAMPLER, help_text: str = "") -> None:
    """``--sampler`` with the registry's names (or ``names``)."""
    parser.add_argument("--sampler", choices=list(names or SAMPLERS), default=default,
                        help=(help_text + " " if help_text else "") + "(default: %(default)s)")


def add_samplers(parser, *, slice_wise: bool | None = True, prior: str | None = None, flag: str = "--samplers") -> None:
    """``--samplers A B ...`` with the registry's names (by default the slice-wise ones, all of them)."""
    names = sampler_names(prior=prior, slice_wise=slice_wise)
    parser.add_argument(flag, nargs="+", choices=names, default=names, metavar="SAMPLER",
                        help=f"samplers to run: {', '.join(names)} (default: all of them)")


def add_execution(parser) -> None:
    """``--precision`` and ``--compile``: how the prior's network runs (medrecon.priors.execution)."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the network's arithmetic: bf16 autocast with channels_last, or fp32; auto: bf16 on a GPU and "
                        "on a CPU with native bf16 (AMX / AVX512-BF16), fp32 elsewhere (default: %(default)s)")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="auto",
                        help="torch.compile the network with this mode (off: eager); auto: default on a GPU, off on the CPU. "
                        "The first call of each batch shape pays the compile time, stated in the record; a compile that "
                        "fails falls back to eager with a warning (default: %(default)s)")


def add_device(parser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help="auto, cpu, cuda or cuda:N (default: %(default)s)")


def check_device(value: str | None) -> str | None:
    """``--device`` checked before any work: ``auto``/None and ``cpu`` as they are; ``cuda`` or
    ``cuda:N`` only where torch sees that CUDA device (else :class:`MissingResourceError`, exit 3);
    anything else an :class:`InputError` (exit 2)."""
    if value in (None, "auto", "cpu"):
        return value
    import torch  # only when running: the parser builds without torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type != "cuda":
        raise InputError(f"--device {value!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise MissingResourceError(f"--device {value}: torch sees no CUDA device on this machine (a CPU-only build of torch, "
                                   "or no GPU); use --device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise MissingResourceError(f"--device {value}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return value


def hu_window(text: str) -> tuple[float, float]:
    """``--window LOW,HIGH``: two finite HU values, LOW below HIGH."""
    import math

    parts = text.split(",")
    try:
        low, high = (float(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in HU (e.g. -1000,2000), got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected finite LOW < HIGH in HU, got {text!r}")
    return low, high


def options_from(cls, args: argparse.Namespace, **overrides):
    """An instance of the dataclass ``cls`` from the flags of the same names (lists become tuples)."""
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
        elif hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def key_values(items, flag: str) -> dict:
    """``["k=v", ...]`` -> ``{k: JSON value of v}`` (a bare word stays a string; ``none`` is None)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key] = json_value(value)
    return out


def json_value(text: str):
    """A command-line value as JSON (``none`` for None; a bare word stays a string)."""
    if text in ("none", "None"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


__all__ = ["MODALITIES", "add_device", "add_execution", "add_modality", "add_sampler", "add_samplers", "batch_size",
           "check_device", "hu_window", "json_value", "key_values", "modality", "non_negative_int", "options_from", "positive_int"]
