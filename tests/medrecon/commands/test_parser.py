"""The command line's parser (medrecon.commands): help is instant and imports no torch, exit codes of
bad usage, and docs/cli.md, generated from the parser, in step with it."""

from __future__ import annotations

import subprocess
import sys

from medrecon.commands import main, reference_markdown
from tests.support import ROOT

PAGE = ROOT / "docs" / "cli.md"


def test_cli_reference_page_matches_the_parser():
    expected = reference_markdown() + "\n"
    assert PAGE.read_text() == expected, (
        "docs/cli.md is out of date: regenerate it with "
        "python -c \"from medrecon.commands import reference_markdown; open('docs/cli.md', 'w').write(reference_markdown() + '\\n')\""
    )


def test_help_is_instant_and_does_not_import_torch():
    code = "import sys; from medrecon.commands import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_usage_exits_with_2_and_help_with_0(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "reconstruct" in capsys.readouterr().out


def test_a_negative_window_is_read_as_the_value_of_window():
    """``--window -1000,2000`` (a value starting with a minus sign) is --window's value, not an
    unknown option; other arguments are left alone."""
    from medrecon.commands import build_parser, with_negative_values

    argv = ["reconstruct", "study", "-o", "out.nii.gz", "--window", "-1000,2000", "--steps", "3"]
    assert with_negative_values(argv) == ["reconstruct", "study", "-o", "out.nii.gz", "--window=-1000,2000", "--steps", "3"]
    args = build_parser().parse_args(with_negative_values(argv))
    assert args.window == (-1000.0, 2000.0) and args.steps == 3
    assert with_negative_values(["reconstruct", "--window", "-o"]) == ["reconstruct", "--window", "-o"]
