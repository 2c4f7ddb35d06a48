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


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_shows_the_real_generated_code():
    excerpt = re.search(r"```python\n(class Residual.*?)```", README, re.S).group(1)
    source = archsmith.compile(str(Path(__file__).resolve().parent.parent / "examples" / "tiny_resnet.arch"))
    assert excerpt in source
    spec = re.search(r"`examples/tiny_resnet.arch`:\n\n```\n(.*?)```", README, re.S).group(1)
    assert spec == (Path(__file__).resolve().parent.parent / "examples" / "tiny_resnet.arch").read_text()


def test_readme_shows_the_real_error(monkeypatch):
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    shown = re.search(r"\$ archsmith check (\S+)\n(.*?)```", README, re.S)
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile(shown.group(1))
    assert str(e.value) + "\n" == shown.group(2)


BLOCKS = list(re.finditer(r"```(arch|python)\n(.*?)```", DOC, re.S))
SNIPPETS = [(BLOCKS[i - 1].group(2), b.group(2)) for i, b in enumerate(BLOCKS)
            if b.group(1) == "python" and i and BLOCKS[i - 1].group(1) == "arch" and "class " in b.group(2)]


def test_the_reference_shows_generated_code():
    assert len(SNIPPETS) >= 12


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_generated_code_on_the_page_is_real_output(index, tmp_path):
    """Every line a Python snippet shows after an example is in the example's generated source, in
    order (`...` stands for lines left out; the snippet's file name is the one the page uses)."""
    spec, snippet = SNIPPETS[index]
    for example in EXAMPLES:
        named = FILE_COMMENT.match(example)
        if named:
            (tmp_path / named.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / named.group(1)).write_text(example)
    named = FILE_COMMENT.match(spec)
    imported = {f"{name}.arch" for name in re.findall(r'^import "([\w/]+)"', spec, re.M)}
    shown = [f for f in re.findall(r"of (\w+\.arch):", snippet) if f not in imported]
    if named:
        path = tmp_path / named.group(1)
    else:
        path = tmp_path / (shown[0] if shown else "example.arch")
        path.write_text(spec)
    between = DOC[:DOC.index(snippet)].rsplit("```arch", 1)[-1].split("```", 1)[1]  # prose after the example
    model = re.search(r"--model (\w+)", between)
    params = dict(re.findall(r"archsmith\.compile\(.*?(\w+)=(\d+)\)", between)[-1:])
    source = archsmith.compile(str(path), model.group(1) if model else None, deploy="--deploy" in between,
                               **{k: int(v) for k, v in params.items()}).splitlines()
    position = 0
    for line in snippet.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        assert line in source[position:], f"not in the generated source (after line {position}): {line!r}"
        position = source.index(line, position) + 1


def test_the_primitive_tables_are_the_primitives():
    from archsmith.primitives import PRIMITIVES
    from archsmith.reference import primitive_table
    assert primitive_table() in DOC
    assert all(prim.rule for prim in PRIMITIVES.values())
    assert all(f"| `{name}` |" in DOC for name in PRIMITIVES)


def _shown_value(comment: str):
    """The value a `# ...` comment shows at its start (`3`, `[1, 2]`, `"big"`), or None for prose."""
    from archsmith.evaluate import evaluate
    for end in sorted({m.start() for m in re.finditer(r"  | \(|;|$", comment)}):
        try:
            return evaluate(comment[:end])
        except archsmith.SpecError:
            continue
    return None


def test_the_values_the_page_shows_are_computed():
    from archsmith.evaluate import Evaluator
    from archsmith.loader import Loader
    checked = 0
    for example in EXAMPLES:
        shown = re.findall(r"^([A-Z_]+) = [^#\n]*#\s*(.+)$", example, re.M)
        if not shown:
            continue
        loader = Loader()
        file = loader.load_text(example, "example.arch")
        evaluator = Evaluator(loader)
        constants = {c.target: c for c in file.constants}
        for name, comment in shown:
            value = _shown_value(comment)
            if value is None:
                continue
            assert evaluator._constant(constants[name]) == value, (name, comment)
            checked += 1
    assert checked >= 35


def test_the_readme_counts_the_primitives():
    from archsmith.primitives import PRIMITIVES
    assert f"from {len(PRIMITIVES)} primitives" in README


def test_the_standard_library_table_lists_every_definition_with_its_signature():
    """Section 12.1 is how a user learns std.arch without reading it: every block, def and fn, as declared."""
    std = (Path(__file__).resolve().parent.parent / "specs" / "std.arch").read_text()
    table = DOC[DOC.index("### 12.1 The standard library"):].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)\((.*?)\)` \| (block|def|fn):", table, re.M)
    declared = [(name, re.sub(r"\s+", " ", params), kind)
                for kind, name, params in re.findall(r"^(block|def|fn) (\w+)\((.*?)\)", std, re.M | re.S)]
    assert sorted(listed) == sorted(declared)
