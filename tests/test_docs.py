"""docs/language.md stays true: every example with a model compiles, and the error example fails
with the error the page shows."""
import re
from pathlib import Path

import pytest

import archsmith

DOC = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text()
EXAMPLES = re.findall(r"```arch\n(.*?)```", DOC, re.S)
FILE_COMMENT = re.compile(r"# ([\w/]+\.arch)\b")


def test_the_reference_has_examples():
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize("index", [i for i, e in enumerate(EXAMPLES) if "\nmodel " in "\n" + e])
def test_example_compiles(index, tmp_path):
    # examples that start with `# some/file.arch` are files of one project: write them all
    for example in EXAMPLES:
        named = FILE_COMMENT.match(example)
        if named:
            path = tmp_path / named.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(example)
    example = EXAMPLES[index]
    named = FILE_COMMENT.match(example)
    spec = str(tmp_path / named.group(1)) if named else example
    try:
        source = archsmith.compile(spec)
    except archsmith.SpecError as e:
        # the page's error example: it must show exactly this error
        assert f"error: {e.message}" in DOC, str(e)
        return
    assert "class " in source
