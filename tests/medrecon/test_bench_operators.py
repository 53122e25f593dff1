"""Smoke test of `medrecon bench operators`: the table machinery on tiny cases, and `--write`.

No timing assertion: only that every measured time is a positive number, that the rows carry the
fields the report needs, and that writing replaces the marked section of a file and nothing else.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medrecon.benchmarks import operators as bench
from medrecon.errors import InputError
from medrecon.operators.astra_backend import astra_available

OPS = ("forward", "adjoint", "normal")


@pytest.fixture(scope="module")
def result():
    cases = [bench.ct_case("parallel", 32, 8), bench.mri_case(32, 2)]
    return bench.run_cases(cases, repeats=1, batch=3, devices=["cpu"], log=None)


def _positive(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_rows_have_fields_and_positive_times(result):
    timings, matrices = result["timings"], result["matrices"]
    keys = {"case", "implementation", "device", "batch", "b1_ms", "batch_ms", "per_slice_ms", "note"}
    for row in timings:
        assert set(row) == keys
        for column in ("b1_ms", "batch_ms", "per_slice_ms"):
            assert set(row[column]) == set(OPS)
            assert all(v is None or _positive(v) for v in row[column].values())

    by_impl = {(r["case"], r["implementation"]): r for r in timings}
    ours = [r for r in timings if r["implementation"].startswith("medrecon")]
    assert {r["case"] for r in ours} == {"CT parallel 32², 8 views", "MRI 32², 2-coil SENSE, 4x"}
    for row in ours:  # our operators: every column measured, per slice = per batch / B
        assert row["batch"] == 3
        for op in OPS:
            assert _positive(row["b1_ms"][op]) and _positive(row["batch_ms"][op])
            assert row["per_slice_ms"][op] == pytest.approx(row["batch_ms"][op] / 3)

    radon = by_impl[("CT parallel 32², 8 views", "scikit-image `radon`")]
    assert _positive(radon["b1_ms"]["forward"]) and radon["b1_ms"]["adjoint"] is None
    sigpy = by_impl[("MRI 32², 2-coil SENSE, 4x", "sigpy `mri.linop.Sense`")]
    assert all(_positive(sigpy["b1_ms"][op]) for op in OPS)
    astra_rows = [r for r in timings if r["implementation"].startswith("astra")]
    assert len(astra_rows) == 1
    if astra_available():
        assert all(_positive(astra_rows[0]["b1_ms"][op]) for op in OPS)

    # both matrix sources reported (astra's only where it loads), one of them used for the timings
    sources = {m["source"]: m for m in matrices}
    assert set(sources) == {"astra", "torch"}
    assert sum(m["used_for_timings"] for m in matrices) == 1
    for m in matrices:
        if m["source"] == "astra" and not astra_available():
            assert m["note"]
            continue
        assert _positive(m["build_s"]) and m["nnz"] > 0 and m["mb"] > 0
        assert (m["transpose_s"] is not None) == m["used_for_timings"]


def test_report_is_a_markdown_table(result):
    info = bench.machine_info()
    text = bench.format_report(
        result, command="medrecon bench operators --quick", info=info, date="2000-01-01 00:00 UTC",
        repeats=1, batch=3, total_s=1.0, peak_rss_bytes=bench.peak_rss_bytes(),
    )
    assert "`medrecon bench operators --quick`" in text and info["cpu"] in text
    rows = [line for line in text.splitlines() if line.startswith("| CT parallel 32²")]
    assert rows and all(line.count("|") == 8 for line in rows if "medrecon" in line)


def test_column_mask():
    mask = bench.column_mask((10, 100), 4, 0.08)
    cols = mask[0].astype(bool)
    assert np.all(mask == mask[:1])
    assert cols[::4].all() and cols[46:54].all()
    assert cols.sum() == 25 + 8 - 2  # every 4th of 100, plus 8 centre columns (2 of them already kept)


def test_write_replaces_only_the_marked_section(tmp_path):
    page = tmp_path / "benchmarks.md"
    before = "# Benchmarks\n\nintro text\n\n"
    after = "\n## Other section\n\nkept as it is\n"
    page.write_text(f"{before}{bench.START_MARKER}\nold table\n{bench.END_MARKER}\n{after}")
    bench.write_section(page, "new table\n")
    assert page.read_text() == f"{before}{bench.START_MARKER}\nnew table\n{bench.END_MARKER}\n{after}"
    bench.write_section(page, "newer table")
    assert page.read_text() == f"{before}{bench.START_MARKER}\nnewer table\n{bench.END_MARKER}\n{after}"
    assert [p.name for p in tmp_path.iterdir()] == ["benchmarks.md"]  # no temporary file left


def test_write_creates_or_appends(tmp_path):
    new = tmp_path / "new.md"
    bench.write_section(new, "table")
    text = new.read_text()
    assert text.startswith("# ") and f"{bench.START_MARKER}\ntable\n{bench.END_MARKER}\n" in text

    plain = tmp_path / "plain.md"
    plain.write_text("# Notes\n\nsomething\n")
    bench.write_section(plain, "table")
    assert plain.read_text() == f"# Notes\n\nsomething\n\n{bench.START_MARKER}\ntable\n{bench.END_MARKER}\n"


def test_write_refuses_broken_markers(tmp_path):
    page = tmp_path / "broken.md"
    original = f"# B\n{bench.END_MARKER}\n{bench.START_MARKER}\n"
    page.write_text(original)
    with pytest.raises(InputError, match="marker"):
        bench.check_write_target(page)
    with pytest.raises(InputError):
        bench.write_section(page, "table")
    assert page.read_text() == original
    with pytest.raises(InputError, match="does not exist"):
        bench.check_write_target(tmp_path / "missing" / "b.md")


def test_report_warns_about_a_busy_machine(result):
    info = dict(bench.machine_info(), usable_cores=2)
    common = dict(command="c", info=info, date="d", repeats=1, batch=3)
    busy = bench.format_report(result, load=((3.5, 3.0, 2.0), (1.0, 1.0, 1.0)), **common)
    idle = bench.format_report(result, load=((0.1, 0.1, 0.1), (0.2, 0.1, 0.1)), **common)
    assert "machine was busy" in busy and "machine was busy" not in idle
    assert "3.50 / 3.00 / 2.00 -> 1.00 / 1.00 / 1.00" in busy
