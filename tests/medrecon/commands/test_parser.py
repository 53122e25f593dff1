"""docs/cli.md is generated from the parser and must stay in step with it."""

from pathlib import Path

from medrecon.commands import reference_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_page_matches_the_parser():
    expected = reference_markdown() + "\n"
    assert PAGE.read_text() == expected, (
        "docs/cli.md is out of date: regenerate it with "
        "python -c \"from medrecon.commands import reference_markdown; open('docs/cli.md', 'w').write(reference_markdown() + '\\n')\""
    )
