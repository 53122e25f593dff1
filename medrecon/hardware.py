"""What the machine's CPU is and can do natively (Linux ``/proc/cpuinfo``; elsewhere the platform's
name and no native-bf16 claim)."""

from __future__ import annotations

import functools
import platform

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags that make bf16 matrix arithmetic native (Intel AMX; AVX512-BF16): bf16 networks are
about 4x faster than fp32 there, and emulated (slower) on CPUs without them."""


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where the platform does not list them)."""
    line = next((line for line in _cpuinfo().splitlines() if line.startswith("flags")), "")
    return frozenset(line.split(":", 1)[1].split()) if ":" in line else frozenset()


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor or machine name."""
    line = next((line for line in _cpuinfo().splitlines() if line.startswith("model name")), "")
    return line.split(":", 1)[1].strip() if ":" in line else (platform.processor() or platform.machine())


def native_bf16_flags() -> list[str]:
    """Which of :data:`NATIVE_BF16_FLAGS` the CPU has."""
    flags = cpu_flags()
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def cpu_has_native_bf16() -> bool:
    """Whether bf16 matrix arithmetic is native on this CPU (AMX or AVX512-BF16)."""
    return bool(native_bf16_flags())


__all__ = ["NATIVE_BF16_FLAGS", "cpu_flags", "cpu_has_native_bf16", "cpu_model_name", "native_bf16_flags"]
