"""`archsmith fmt`: over every spec the project has (bundled, examples, fixtures, the reference's
examples) and perturbations of them, formatting is idempotent, keeps every comment and line, and the
formatted spec compiles to the same source."""
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lark import Token, Tree

import archsmith
from archsmith.compiler import check
from archsmith.format import format_spec
from archsmith.parser import _concrete_lark, _lark, parse

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*ROOT.glob("specs/*.arch"), *ROOT.glob("examples/*.arch"), *ROOT.glob("tests/fixtures/**/*.arch")])
DOC_EXAMPLES = re.findall(r"```arch\n(.*?)```", (ROOT / "docs" / "language.md").read_text(), re.S)
FILE_COMMENT = re.compile(r"# ([\w/]+\.arch)\b")


def test_the_corpus():
    assert len(FILES) >= 35 and len(DOC_EXAMPLES) >= 40


def _doc_project(tmp_path: Path, index: int) -> Path:
    """The reference's example `index` as a file, beside the examples it may import (`# lib.arch`)."""
    for example in DOC_EXAMPLES:
        named = FILE_COMMENT.match(example)
        if named:
            (tmp_path / named.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / named.group(1)).write_text(example)
    named = FILE_COMMENT.match(DOC_EXAMPLES[index])
    path = tmp_path / (named.group(1) if named else "example.arch")
    path.write_text(DOC_EXAMPLES[index])
    return path


def _project(tmp_path: Path, file: Path) -> Path:
    """A copy of `file` beside copies of the .arch files of its directory, which it may import."""
    for sibling in file.parent.glob("*.arch"):
        shutil.copy(sibling, tmp_path / sibling.name)
    return tmp_path / file.name


CASES = [pytest.param(lambda tmp, f=f: _project(tmp, f), id=str(f.relative_to(ROOT))) for f in FILES] + [
    pytest.param(lambda tmp, i=i: _doc_project(tmp, i), id=f"language.md-{i}") for i in range(len(DOC_EXAMPLES))]


def _compiled(path: Path):
    """What the compiler makes of a file: the source of its models, a library's summary, or its error."""
    try:
        if parse(path.read_text(), str(path)).models:
            return archsmith.compile(str(path))
        return check(str(path)).summary()
    except archsmith.SpecError as e:
        return f"{e.line}: {e.message}"


def _structure(text: str):
    """The parse tree without positions or newlines: what formatting must not change."""
    def strip(node):
        if isinstance(node, Tree):
            return node.data, [strip(c) for c in node.children if not (isinstance(c, Token) and c.type == "_NL")]
        return node if node is None else (node.type, str(node))
    return strip(_concrete_lark().parse(text))


def _comments(text: str) -> list:
    return [str(t).rstrip() for t in _lark().lex(text, dont_ignore=True) if t.type == "COMMENT"]


def _check_formatted(text: str, formatted: str):
    assert format_spec(formatted) == formatted
    assert formatted.count("\n") == text.rstrip().count("\n") + 1
    assert _structure(formatted) == _structure(text)
    assert _comments(formatted) == _comments(text)
    assert all(line == line.rstrip() and "\t" not in line for line in formatted.splitlines())


def _perturbed(text: str, rng: random.Random) -> str:
    """`text` with the space between tokens changed where it does not matter: removed, widened, tabs,
    other indents, `;` at the ends of lines, trailing spaces, Windows line ends and blank lines at the end."""
    tree = _concrete_lark().parse(text)
    tokens = sorted((t for node in tree.iter_subtrees() for t in node.children
                     if isinstance(t, Token) and t.type != "_NL"), key=lambda t: t.start_pos)
    in_names = {t.start_pos for node in tree.iter_subtrees() if node.data == "layer_name"
                for t in node.children if isinstance(t, Token)}  # `conv{i}` is written without spaces
    out, end = [], 0
    for previous, tok in zip([None] + tokens, tokens):
        gap = text[end:tok.start_pos]
        if "\n" in gap:
            *lines, indent = gap.split("\n")
            lines = [line + rng.choice(["", "", "  "] + ([] if "#" in line else [";"])) for line in lines]
            gap = "\n".join(lines + [rng.choice([" ", "\t", "  ", "      "])])
        elif previous is not None and ";" not in gap and not {previous.start_pos, tok.start_pos} & in_names:
            words = re.match(r"\w", previous.value[-1]) and re.match(r"\w", tok.value[0])
            gap = rng.choice([" ", "  ", "\t"] + ([] if words else ["", ""]))
        out.append(gap + tok.value)
        end = tok.end_pos
    perturbed = "".join(out) + text[end:] + rng.choice(["", "\n", "\n\n  \n"])
    return perturbed.replace("\n", "\r\n") if rng.random() < 0.2 else perturbed


@pytest.mark.parametrize("make", CASES)
def test_formatting_round_trips(make, tmp_path):
    path = make(tmp_path)
    text = path.read_text()
    formatted = format_spec(text, str(path))
    _check_formatted(text, formatted)
    compiled = _compiled(path)
    path.write_text(formatted)
    assert _compiled(path) == compiled
    rng = random.Random(path.name)
    for _ in range(3):
        perturbed = _perturbed(text, rng)
        again = format_spec(perturbed)
        assert format_spec(again) == again
        # the original's formatting, but for the column of a comment after code
        assert re.sub(r" +#", " #", again) == re.sub(r" +#", " #", formatted)
    path.write_text(perturbed)
    assert _compiled(path) == compiled


def test_the_canonical_style():
    messy = ("def f(a,b=1) =\n  seq {\nconv2d(a,3);;relu ;\n   }\n"
             "block B(a=1,\n  b=-2,   # two\n)  {\n"
             "  x=x|conv{a+1}_{b}:f(a,b=[1,2,][-1])  # trailing\n"
             "    # own line\n"
             "  if a{ y = {a:1,b:[1, 2][1:]} }\n  else{\n   return x }\n"
             "  y=[ x[ 1: ] ,\n   -a,\n    ]\n"
             "  z=(a  if not b else  -c)[a+1:-1]\n}\n"
             "model m=B(a=1)\n input [3,32,32]\n\n\n")
    assert format_spec(messy) == (
        "def f(a, b = 1) =\n    seq {\n        conv2d(a, 3); relu\n    }\n"
        "block B(a = 1,\n        b = -2,  # two\n) {\n"
        "    x = x | conv{a + 1}_{b}: f(a, b=[1, 2,][-1])  # trailing\n"
        "    # own line\n"
        "    if a { y = {a: 1, b: [1, 2][1:]} }\n    else {\n        return x }\n"
        "    y = [x[1:],\n         -a,\n    ]\n"
        "    z = (a if not b else -c)[a + 1:-1]\n}\n"
        "model m = B(a=1)\n    input [3, 32, 32]\n")


def test_a_hanging_bracket_indents_its_lines_and_aligned_comments_stay():
    text = "W = [\n  1,   # one\n  22,  # two\n]\n"
    assert format_spec(text) == "W = [\n    1,   # one\n    22,  # two\n]\n"


def test_text_that_does_not_parse_is_a_located_error():
    with pytest.raises(archsmith.SpecError) as e:
        format_spec("block B() {\n    x = (x\n}\n", "bad.arch")
    assert (e.value.path, e.value.line) == ("bad.arch", 3)


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "archsmith", "fmt", *args], capture_output=True, text=True,
                          cwd=ROOT, **kwargs)


def test_fmt_rewrites_files_and_check_lists_them(tmp_path):
    (tmp_path / "lib").mkdir()
    messy, tidy = tmp_path / "lib" / "messy.arch", tmp_path / "tidy.arch"
    messy.write_text("X=[1,2]\n")
    tidy.write_text("X = [1, 2]\n")
    result = run("--check", str(tmp_path))
    assert (result.returncode, result.stdout) == (1, f"would reformat {messy}\n")
    assert messy.read_text() == "X=[1,2]\n"
    result = run(str(tidy), str(tmp_path))
    assert (result.returncode, result.stdout) == (0, f"reformatted {messy}\n")
    assert messy.read_text() == "X = [1, 2]\n"
    assert run("--check", str(tmp_path)).returncode == 0


def test_fmt_reads_standard_input():
    result = run("-", input="X=[1,2]\n")
    assert (result.returncode, result.stdout) == (0, "X = [1, 2]\n")
    result = run("-", input="X=[1,\n")
    assert result.returncode == 1 and result.stderr.startswith("<stdin>:1:6: error: expected an expression")


def test_fmt_leaves_every_file_as_it_was_when_one_does_not_parse(tmp_path):
    (tmp_path / "a.arch").write_text("X=1\n")
    (tmp_path / "b.arch").write_text("X=(1\n")
    result = run(str(tmp_path))
    assert result.returncode == 1 and "b.arch:1:5: error" in result.stderr
    assert (tmp_path / "a.arch").read_text() == "X=1\n"
