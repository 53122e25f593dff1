"""The distribution's package list covers every package folder, so a non-editable install is whole."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            sub = ".".join((name, *relative)) if relative else name
            if not any(sub.startswith(other + ".") for other in mapping if other != name and len(other) > len(name)):
                found.add(sub)
    assert found == listed, f"packages on disk {sorted(found)} vs listed {sorted(listed)}"


def test_importing_the_operators_does_not_import_astra_or_sigpy():
    import subprocess
    import sys

    code = "import sys, medrecon, medrecon.operators; print('astra' in sys.modules, 'sigpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
