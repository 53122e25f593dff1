"""medrecon.benchmarks.common: device, machine line, timer, memory, run header and Markdown table."""

from __future__ import annotations

import types

import pytest
import torch

from medrecon.benchmarks import common

CPUINFO = "processor\t: 0\nmodel name\t: Example CPU 9000 @ 3.00GHz\nflags\t\t: fpu sse2 avx512f {extra}\n\n"


def _fake_cpuinfo(monkeypatch, extra: str) -> None:
    real = common._read
    monkeypatch.setattr(common, "_read", lambda path: CPUINFO.format(extra=extra) if path == "/proc/cpuinfo" else real(path))


def test_the_machine_line_names_the_cpu_and_its_bf16_support(monkeypatch):
    _fake_cpuinfo(monkeypatch, "avx512_bf16 amx_tile amx_bf16")
    line = common.machine_line("cpu")
    assert line.startswith("CPU Example CPU 9000 @ 3.00GHz (amx_bf16, avx512_bf16), ")
    assert f"{torch.get_num_threads()} threads, torch {torch.__version__}" in line and " cores, " in line
    info = common.machine_info()
    assert info["cpu"] == "Example CPU 9000 @ 3.00GHz" and info["cpu_bf16"] == ["amx_bf16", "avx512_bf16"]
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    assert info["gpu"] == ("none" if not torch.cuda.is_available() else torch.cuda.get_device_name(0))

    _fake_cpuinfo(monkeypatch, "avx2")  # no bf16 flag (nor a substring match of "avx512_bf16")
    assert common.machine_line("cpu").startswith("CPU Example CPU 9000 @ 3.00GHz (no native bf16), ")
    assert common.cpu_model() == ("Example CPU 9000 @ 3.00GHz", [])


def test_the_machine_line_can_state_the_load(monkeypatch):
    monkeypatch.setattr(common, "load_average", lambda: (1.5, 0.25, 0.0))
    assert common.machine_line("cpu", load=True).endswith("; load 1.50 / 0.25 / 0.00")
    assert "load" not in common.machine_line("cpu")


def test_markdown_table():
    assert common.markdown_table(["a", "b"], [[1, "x"], ["", 2.5]]) == "| a | b |\n|---|---|\n| 1 | x |\n|  | 2.5 |\n"
    assert common.markdown_table(["only"], []) == "| only |\n|---|\n"
    assert common.markdown_table(["a", "b"], [], rule=" --- ") == "| a | b |\n| --- | --- |\n"
    with pytest.raises(ValueError, match="cells"):
        common.markdown_table(["a", "b"], [[1]])


def test_the_timer_returns_the_median_after_one_warm_up_call(monkeypatch):
    calls = []
    assert common.time_call(lambda: calls.append(1), 4) > 0
    assert len(calls) == 4 + 1

    ticks = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # timed calls of 5, 1 and 3 s
    monkeypatch.setattr(common, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    calls.clear()
    assert common.time_call(lambda: calls.append(1), 3) == 3.0 and len(calls) == 4
    with pytest.raises(ValueError):
        common.time_call(lambda: None, 0)


def test_wall_time_returns_the_seconds_and_the_result():
    seconds, out = common.wall_time(lambda: 42)
    assert out == 42 and seconds >= 0


def test_bench_device(monkeypatch):
    assert common.bench_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert common.bench_device("auto").type == expected and common.bench_device(None).type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert common.bench_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert common.bench_device(None) == torch.device("cpu")
    assert common.bench_device("cuda:1") == torch.device("cuda:1")  # an explicit name is taken as it is


def test_memory_helpers():
    peak = common.peak_memory("cpu")
    assert 2**20 < peak <= common.peak_rss_bytes()  # the process's high-water mark, which only grows
    have = common.available_bytes("cpu")
    assert have is None or have > 0
    assert common.memory_note(1) is None
    if have is not None:
        assert common.memory_note(10 * have).startswith("skipped: needs ~")
    assert common.is_out_of_memory(MemoryError()) and common.is_out_of_memory(RuntimeError("CUDA out of memory."))
    assert not common.is_out_of_memory(RuntimeError("shape mismatch"))
    assert common.package_version("torch") == torch.__version__
    assert common.package_version("no-such-distribution-here") == "not installed"


def test_run_header(monkeypatch):
    monkeypatch.setattr(common, "machine_line", lambda device: f"machine of {device}")
    header = common.run_header("medrecon bench x --y", "cpu", common.time.perf_counter() - 2.0, prior="p")
    assert header["command"] == "medrecon bench x --y" and header["machine"] == "machine of cpu"
    assert header["prior"] == "p" and 2.0 <= header["seconds"] < 60 and len(header["date"]) == 10
