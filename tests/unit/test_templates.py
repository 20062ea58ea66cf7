"""The project's templates as text: what Django would otherwise show to users verbatim."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "templates"
TEMPLATES = sorted(ROOT.rglob("*.html"))


def test_there_are_templates_to_check() -> None:
    assert len(TEMPLATES) > 20


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_comment_tag_closes_on_its_own_line(path: Path) -> None:
    """`{# … #}` is a one-line comment: one that spans lines is printed on the page. Longer ones are
    `{% comment %}` blocks."""
    unclosed = [n for n, line in enumerate(path.read_text().splitlines(), 1) if "{#" in line and "#}" not in line]
    assert unclosed == [], f"{path.relative_to(ROOT)}: a {{# comment opened on line(s) {unclosed} does not close there"
