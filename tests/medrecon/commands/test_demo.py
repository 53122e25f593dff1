"""`medrecon demo` end to end: the classical baselines on two scans inside pydicom, its figure and
record, and its refusal to overwrite."""

from __future__ import annotations

import json

from medrecon.commands import main


def test_demo_runs_end_to_end_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    record = json.loads((out / "demo.json").read_text())
    ct = record["demos"]["CT, parallel beam, 23 views, 1% noise"]["results"]
    mr = record["demos"]["MR, 8 coils, 4x, noise 0.02"]["results"]
    fbp = next(v for k, v in ct.items() if k.startswith("FBP"))
    tv = next(v for k, v in ct.items() if k.startswith("TV"))
    zero_filled = mr["zero-filled"]
    l1 = next(v for k, v in mr.items() if k.startswith("L1-wavelet"))
    assert tv["psnr_db"] > fbp["psnr_db"] + 3  # the tuned TV clearly beats FBP on 23 noisy views
    assert l1["psnr_db"] > zero_filled["psnr_db"]
    assert (out / "demo.png").stat().st_size > 1000
    before = (out / "demo.json").read_bytes()
    assert main(["demo", "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "demo.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging folder left behind
