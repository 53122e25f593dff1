"""Smoke test of `medrecon bench operators`: the table machinery on tiny cases, and `--write`.

No timing assertion: only that every measured time is a positive number, that the rows carry the
fields the report needs, and that writing replaces the marked section of a file and nothing else.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from medrecon.benchmarks import operators_cases as op_cases
from medrecon.benchmarks import operators_sections as sections
from medrecon.benchmarks import operators_tables as tables
from medrecon.benchmarks.common import peak_rss_bytes
from medrecon.benchmarks.operators import run_cases, run_operator_benchmark
from medrecon.errors import InputError
from medrecon.operators.astra_backend import astra_available

OPS = ("forward", "adjoint", "normal")


@pytest.fixture(scope="module")
def result():
    cases = [op_cases.ct_case("parallel", 32, 8), op_cases.mri_case(32, 2)]
    return run_cases(cases, repeats=1, batch=3, devices=["cpu"], log=None)


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
    info = tables.report_info()
    text = tables.format_report(
        result, command="medrecon bench operators --quick", info=info, date="2000-01-01 00:00 UTC",
        repeats=1, batch=3, total_s=1.0, peak_rss_bytes=peak_rss_bytes(),
    )
    assert "`medrecon bench operators --quick`" in text and info["cpu"] in text
    rows = [line for line in text.splitlines() if line.startswith("| CT parallel 32²")]
    assert rows and all(line.count("|") == 8 for line in rows if "medrecon" in line)


def test_column_mask():
    mask = op_cases.column_mask((10, 100), 4, 0.08)
    cols = mask[0].astype(bool)
    assert np.all(mask == mask[:1])
    assert cols[::4].all() and cols[46:54].all()
    assert cols.sum() == 25 + 8 - 2  # every 4th of 100, plus 8 centre columns (2 of them already kept)


def test_write_replaces_only_the_marked_section(tmp_path):
    page = tmp_path / "benchmarks.md"
    before = "# Benchmarks\n\nintro text\n\n"
    after = "\n## Other section\n\nkept as it is\n"
    page.write_text(f"{before}{sections.START_MARKER}\nold table\n{sections.END_MARKER}\n{after}")
    sections.write_section(page, "new table\n")
    assert page.read_text() == f"{before}{sections.START_MARKER}\nnew table\n{sections.END_MARKER}\n{after}"
    sections.write_section(page, "newer table")
    assert page.read_text() == f"{before}{sections.START_MARKER}\nnewer table\n{sections.END_MARKER}\n{after}"
    assert [p.name for p in tmp_path.iterdir()] == ["benchmarks.md"]  # no temporary file left


def test_write_creates_or_appends(tmp_path):
    new = tmp_path / "new.md"
    sections.write_section(new, "table")
    text = new.read_text()
    assert text.startswith("# ") and f"{sections.START_MARKER}\ntable\n{sections.END_MARKER}\n" in text

    plain = tmp_path / "plain.md"
    plain.write_text("# Notes\n\nsomething\n")
    sections.write_section(plain, "table")
    assert plain.read_text() == f"# Notes\n\nsomething\n\n{sections.START_MARKER}\ntable\n{sections.END_MARKER}\n"


def test_write_refuses_broken_markers(tmp_path):
    page = tmp_path / "broken.md"
    original = f"# B\n{sections.END_MARKER}\n{sections.START_MARKER}\n"
    page.write_text(original)
    with pytest.raises(InputError, match="marker"):
        sections.check_write_target(page)
    with pytest.raises(InputError):
        sections.write_section(page, "table")
    assert page.read_text() == original
    with pytest.raises(InputError, match="does not exist"):
        sections.check_write_target(tmp_path / "missing" / "b.md")


def test_report_warns_about_a_busy_machine(result):
    info = dict(tables.report_info(), usable_cores=2)
    common = dict(command="c", info=info, date="d", repeats=1, batch=3)
    busy = tables.format_report(result, load=((3.5, 3.0, 2.0), (1.0, 1.0, 1.0)), **common)
    idle = tables.format_report(result, load=((0.1, 0.1, 0.1), (0.2, 0.1, 0.1)), **common)
    assert "machine was busy" in busy and "machine was busy" not in idle
    assert "3.50 / 3.00 / 2.00 -> 1.00 / 1.00 / 1.00" in busy


# ------------------------------------------------------------------------------- non-Cartesian MRI
NUFFT_OPS = ("forward", "adjoint", "normal", "normal_plain")
MEDRECON = ("medrecon NonCartesianMRI (torch)", "medrecon NonCartesianMRI (finufft)")


@pytest.fixture(scope="module")
def nufft_result():
    pytest.importorskip("finufft")
    cases = [op_cases.nufft_case(32, 1, "radial"), op_cases.nufft_case(32, 2, "spiral", undersampling=0.25)]
    return run_cases(cases, repeats=1, batch=2, devices=["cpu"], log=None)


def test_nufft_cases_and_trajectories():
    radial, spiral = op_cases.nufft_case(32, 1, "radial"), op_cases.nufft_case(32, 2, "spiral")
    assert op_cases.nufft_coordinates(radial).shape == (64 * 32, 2)
    # the spiral's R is the candidate whose sample count is closest to the radial case's
    k = op_cases.nufft_coordinates(spiral).shape[0]
    assert abs(k - 64 * 32) < 0.1 * 64 * 32 and spiral.undersampling == 0.25
    assert spiral.label == f"NUFFT 32², spiral 16 interleaves R 0.25 ({k:,} samples), 2-coil SENSE"
    assert radial.label == "NUFFT 32², radial 64 golden spokes (2,048 samples), 1 coil"
    with pytest.raises(InputError):
        op_cases.Case("nufft", 32, kind="rosette", spokes=4)
    with pytest.raises(InputError):
        op_cases.Case("nufft", 32, kind="radial")  # no spokes

    full, quick = op_cases.default_cases(), op_cases.default_cases(quick=True)
    nufft_full = [c for c in full if c.modality == "nufft"]
    nufft_quick = [c for c in quick if c.modality == "nufft"]
    assert {(c.size, c.kind, c.coils) for c in nufft_full} == {
        (n, kind, c) for n in (256, 320) for kind in ("radial", "spiral") for c in (1, 8)
    }
    assert 0 < len(nufft_quick) < len(nufft_full)
    assert all(c.modality == "nufft" for c in op_cases.default_cases(only="nufft"))
    assert not any(c.modality == "nufft" for c in op_cases.default_cases(only="ct-mri"))
    assert [c for c in full if c.modality != "nufft"] == op_cases.default_cases(only="ct-mri")
    with pytest.raises(InputError, match="--only"):
        op_cases.default_cases(only="pet")


def test_nufft_rows_have_all_implementations(nufft_result):
    assert nufft_result["timings"] == [] and nufft_result["matrices"] == []
    rows = nufft_result["nufft"]
    cases = {r["case"] for r in rows}
    assert len(cases) == 2
    keys = {"case", "samples", "coils", "implementation", "device", "batch", "setup_s", "toeplitz_s",
            "b1_ms", "batch_ms", "per_slice_ms", "rel_error", "note"}
    for case in cases:
        impls = [r["implementation"] for r in rows if r["case"] == case]
        assert impls[:2] == list(MEDRECON)
        assert impls[2].startswith("sigpy") and impls[3] == "mri-nufft (finufft backend)"
    for r in rows:
        assert set(r) == keys
        for column in ("b1_ms", "batch_ms", "per_slice_ms"):
            assert set(r[column]) == set(NUFFT_OPS)
            assert all(v is None or _positive(v) for v in r[column].values())
        if r["implementation"] in MEDRECON:  # every column measured, Toeplitz and plain normal alike
            assert _positive(r["setup_s"]) and _positive(r["toeplitz_s"])
            for op in NUFFT_OPS:
                assert _positive(r["b1_ms"][op]) and _positive(r["batch_ms"][op])
                assert r["per_slice_ms"][op] == pytest.approx(r["batch_ms"][op] / 2)
            assert "A^H A / Toeplitz" in r["note"]
        elif r["implementation"].startswith("sigpy"):  # one slice per call, no Toeplitz normal
            assert r["b1_ms"]["normal"] is None and r["batch_ms"] == dict.fromkeys(NUFFT_OPS)
            assert all(_positive(r["b1_ms"][op]) for op in ("forward", "adjoint", "normal_plain"))


def test_nufft_accuracy_column(nufft_result):
    for r in nufft_result["nufft"]:
        err = r["rel_error"]
        if r["implementation"] in MEDRECON:
            assert err < 1e-4, r  # eps 1e-6 in complex64 against the eps 1e-12 complex128 reference
        elif r["implementation"].startswith("sigpy"):
            assert err < 5e-2, r  # its default oversampling 1.25, width 4; a wrong convention gives ~1
        elif err is not None:  # mri-nufft, where it is installed
            assert err < 1e-4, r


def test_mrinufft_row(nufft_result):
    rows = [r for r in nufft_result["nufft"] if r["implementation"].startswith("mri-nufft")]
    try:
        import mrinufft  # noqa: F401
    except ImportError:
        assert all(r["note"].startswith("not installed") for r in rows)
        return
    for r in rows:
        assert _positive(r["setup_s"]) and r["b1_ms"]["normal"] is None
        for op in ("forward", "adjoint", "normal_plain"):
            assert _positive(r["b1_ms"][op]) and _positive(r["batch_ms"][op])


def test_mrinufft_missing_is_a_note(monkeypatch):
    pytest.importorskip("finufft")
    monkeypatch.setitem(sys.modules, "mrinufft", None)  # `import mrinufft` raises ImportError
    case = op_cases.nufft_case(16, 1, "radial", spokes=8)
    rows = run_cases([case], repeats=1, batch=2, devices=["cpu"], log=None)["nufft"]
    (row,) = [r for r in rows if r["implementation"].startswith("mri-nufft")]
    assert row["note"] == "not installed (pip install mri-nufft)"
    assert row["rel_error"] is None and all(v is None for v in row["b1_ms"].values())
    assert all(r["rel_error"] < 1e-4 for r in rows if r["implementation"] in MEDRECON)


def test_nufft_report_table(nufft_result):
    info = tables.report_info()
    text = tables.format_nufft_report(
        nufft_result, command="medrecon bench operators --only nufft", info=info, date="2000-01-01 00:00 UTC",
        repeats=1, batch=2,
    )
    assert "`medrecon bench operators --only nufft`" in text and "rel. error" in text
    rows = [line for line in text.splitlines() if line.startswith("| NUFFT 32²")]
    assert len(rows) == len(nufft_result["nufft"])
    assert all(line.count("|") == 11 for line in rows)
    ours = [line for line in rows if "NonCartesianMRI" in line]
    assert ours and all(len(line.split("|")[6].split(" / ")) == 4 for line in ours)
    # the CT/MRI report of the same result has no NUFFT row
    assert "NUFFT" not in tables.format_report(nufft_result, command="c", info=info, date="d", repeats=1, batch=2)


def test_entry_point_refuses_bad_arguments_before_any_work(tmp_path):
    with pytest.raises(InputError, match="--only"):
        run_operator_benchmark(only="everything", command="c")
    with pytest.raises(InputError, match="--repeats"):
        run_operator_benchmark(repeats=0, command="c")
    with pytest.raises(InputError, match="does not exist"):
        run_operator_benchmark(write=str(tmp_path / "missing" / "b.md"), command="c")


def test_the_cli_passes_the_command_line_it_was_given(monkeypatch):
    import medrecon.benchmarks.operators as entry
    calls = []
    monkeypatch.setattr(entry, "run_operator_benchmark", lambda **kw: calls.append(kw) or 0)
    argv = ["bench", "operators", "--only", "nufft", "--write", "docs/bench marks.md"]
    monkeypatch.setattr(sys, "argv", ["medrecon", *argv])
    from medrecon.commands import main

    assert main(argv) == 0
    assert calls == [{"quick": False, "repeats": None, "write": "docs/bench marks.md", "only": "nufft",
                      "command": "medrecon bench operators --only nufft --write 'docs/bench marks.md'"}]


def test_the_library_reads_no_command_line():
    """No argparse, no ``sys.argv`` and no ``__main__`` block: the command line is medrecon.commands's."""
    import ast
    from pathlib import Path

    import medrecon.benchmarks as package

    folder = Path(package.__file__).parent
    for path in [folder / "common.py", *sorted(folder.glob("operators*.py"))]:
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 800, path
        for node in ast.walk(ast.parse(text)):
            assert not (isinstance(node, ast.Attribute) and node.attr == "argv"), path
            assert not (isinstance(node, ast.Name) and node.id == "__name__"), path
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert "argparse" not in names, path


def test_nufft_section_goes_after_the_operators_section(tmp_path):
    page = tmp_path / "benchmarks.md"
    before = f"# Benchmarks\n\n{sections.START_MARKER}\nold table\n{sections.END_MARKER}\n"
    after = "\n## Other section\n\nkept as it is\n"
    page.write_text(before + after)
    sections.write_sections(page, nufft="nufft table\n")  # the operators section is left as it is
    block = f"{sections.NUFFT_START_MARKER}\nnufft table\n{sections.NUFFT_END_MARKER}\n"
    assert page.read_text() == f"{before}\n{block}{after}"
    sections.write_sections(page, nufft="newer nufft")
    assert page.read_text() == f"{before}\n{sections.NUFFT_START_MARKER}\nnewer nufft\n{sections.NUFFT_END_MARKER}\n{after}"
    sections.write_sections(page, operators="new table", nufft="both")
    assert page.read_text() == (
        f"# Benchmarks\n\n{sections.START_MARKER}\nnew table\n{sections.END_MARKER}\n\n"
        f"{sections.NUFFT_START_MARKER}\nboth\n{sections.NUFFT_END_MARKER}\n{after}"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["benchmarks.md"]

    fresh = tmp_path / "fresh.md"
    sections.write_sections(fresh, operators="ops", nufft="nufft")
    text = fresh.read_text()
    assert text.index(sections.END_MARKER) < text.index(sections.NUFFT_START_MARKER)

    broken = tmp_path / "broken.md"
    broken.write_text(f"# B\n{sections.NUFFT_END_MARKER}\n{sections.NUFFT_START_MARKER}\n")
    with pytest.raises(InputError, match="marker"):
        sections.check_write_target(broken)
