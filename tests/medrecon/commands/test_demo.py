"""The command line: instant help, exit codes, and the README's main job (the demo) end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medrecon.commands import main


def test_help_is_instant_and_does_not_import_torch():
    code = "import sys; from medrecon.commands import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_usage_exits_with_2_and_help_with_0(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "reconstruct" in capsys.readouterr().out


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
