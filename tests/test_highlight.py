"""Syntax highlighting: the Pygments lexer and the TextMate grammar know the grammar's words and
read every spec the project has without an error."""
import importlib
import json
import re
import tomllib
from pathlib import Path

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

import archsmith
from archsmith import highlight
from archsmith.evaluate import BUILTINS
from archsmith.highlight import ArchLexer
from archsmith.parser import _lark, parse
from archsmith.primitives import INITIALIZERS, PRIMITIVES

ROOT = Path(__file__).resolve().parent.parent
SPECS = {str(p.relative_to(ROOT)): p.read_text() for p in
         sorted([*ROOT.glob("specs/*.arch"), *ROOT.glob("examples/*.arch"), *ROOT.glob("tests/fixtures/**/*.arch")])}
SPECS.update((f"language.md-{i}", e) for i, e in
             enumerate(re.findall(r"```arch\n(.*?)```", (ROOT / "docs" / "language.md").read_text(), re.S)))
GRAMMAR = json.loads((ROOT / "editors" / "arch.tmLanguage.json").read_text())


def _tokens(text: str) -> list:
    return [(kind, value) for kind, value in ArchLexer().get_tokens(text) if value.strip()]


@pytest.mark.parametrize("name", SPECS)
def test_every_spec_lexes_without_an_error(name):
    assert [value for kind, value in _tokens(SPECS[name]) if kind in Error] == []


def test_the_words_are_the_grammars():
    words = {t.pattern.value for t in _lark().terminals if re.fullmatch(r"[a-z]+", t.pattern.value)}
    lexer = {*highlight.KEYWORDS, *highlight.WORD_OPERATORS, *highlight.CONSTANTS, *highlight.DEFINITIONS, "input"}
    assert lexer == words
    reserved = re.search(r"NAME: /\(\?!\(([\w|]+)\)", (ROOT / "archsmith" / "grammar" / "arch.lark").read_text())
    assert {*highlight.KEYWORDS, *highlight.WORD_OPERATORS, *highlight.CONSTANTS} == set(reserved.group(1).split("|"))
    assert set(highlight.FUNCTIONS) == set(PRIMITIVES) | set(INITIALIZERS) | set(BUILTINS)


@pytest.mark.parametrize("word", highlight.STATEMENT_WORDS)
def test_statement_words_start_statements(word):
    statement = {"recompute": "recompute y {\n        y = x\n    }", "declare": "declare y"}.get(
        word, f"{word} y = zeros([1])")
    parse(f"block B() {{\n    {statement}\n    return x\n}}\n")
    with pytest.raises(archsmith.SpecError):
        parse(f"block B() {{\n    {statement.replace(word, 'other')}\n    return x\n}}\n")


def test_tokens_get_their_kinds():
    text = ('import "std"\n'
            "# a comment\n"
            "block Net(width = 16, ratio = 0.25, eps = 1e-5) {\n"
            "    param gamma = zeros([width])\n"
            '    x = x | conv{i}: conv2d(width, 3) | "stage-{s}": Other() | relu\n'
            "    if training and not false { return x }\n"
            "    return x[1:] * gamma + len(range(2))\n"
            "}\n"
            "def helper(out) = seq { linear(out) }\n"
            "model net = Net() input [3, 32, 32]\n")
    kinds = {}
    for kind, value in _tokens(text):
        kinds.setdefault(value, kind)  # where it first occurs
    assert kinds["import"] in Keyword and kinds["std"] in String
    assert kinds["# a comment"] in Comment
    assert (kinds["block"], kinds["Net"]) == (Keyword.Declaration, Name.Class)
    assert (kinds["def"], kinds["helper"]) == (Keyword.Declaration, Name.Function)
    assert (kinds["model"], kinds["input"]) == (Keyword.Declaration, Keyword.Declaration)
    assert (kinds["16"], kinds["0.25"], kinds["1e-5"]) == (Number.Integer, Number.Float, Number.Float)
    assert kinds["param"] in Keyword and kinds["gamma"] is Name
    assert (kinds["conv{i}"], kinds['"stage-{s}"']) == (Name.Label, Name.Label)
    assert kinds["conv2d"] is kinds["relu"] is kinds["zeros"] is kinds["len"] is Name.Builtin
    assert kinds["if"] is kinds["return"] is kinds["seq"] is Keyword
    assert kinds["and"] is kinds["not"] is Operator.Word and kinds["false"] is Keyword.Constant
    assert kinds["training"] is Name.Builtin.Pseudo and kinds["Other"] is Name


def test_the_lexer_is_registered_for_pygments():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, _, attribute = project["entry-points"]["pygments.lexers"]["arch"].partition(":")
    lexer = getattr(importlib.import_module(module), attribute)
    assert lexer is ArchLexer and lexer.aliases == ["arch"] and lexer.filenames == ["*.arch"]
    assert "pygments" not in " ".join(project["dependencies"])


def _patterns(node):
    """Every regex of the TextMate grammar."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("match", "begin", "end"):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


def _words(entry: str) -> set:
    """The words of a grammar entry's alternations: `\\b(?:if|else)\\b` -> {if, else}."""
    match = GRAMMAR["repository"][entry]["match"]
    return {w for group in re.findall(r"\((?:\?:)?([a-z0-9_|]+)\)", match) for w in group.split("|")}


def test_the_textmate_grammar_has_the_lexers_words():
    assert GRAMMAR["scopeName"] == "source.arch" and GRAMMAR["fileTypes"] == ["arch"]
    for pattern in _patterns(GRAMMAR):
        re.compile(pattern)  # Oniguruma's syntax, in the part Python's shares
    assert {p["include"][1:] for p in GRAMMAR["patterns"]} == set(GRAMMAR["repository"])
    assert _words("keyword") == set(highlight.KEYWORDS)
    assert _words("operator-word") == set(highlight.WORD_OPERATORS)
    assert _words("constant") == set(highlight.CONSTANTS)
    assert _words("builtin") == set(highlight.FUNCTIONS)
    assert _words("statement-word") == set(highlight.STATEMENT_WORDS)
    assert set().union(*map(_words, ["block", "function", "model", "import"])) == set(highlight.DEFINITIONS)


def test_the_textmate_grammar_finds_layer_names():
    layer = re.compile(GRAMMAR["repository"]["layer-name"]["match"])
    assert [m.group(2) for m in layer.finditer('x = x | conv{i}_{j}: conv2d(8, 3) | "a-{s}": B() | relu')] == [
        "conv{i}_{j}", '"a-{s}"']


def test_the_vim_syntax_has_the_lexers_words():
    vim = (ROOT / "editors" / "vim" / "syntax" / "arch.vim").read_text()

    def words(group: str) -> set:
        keywords = re.findall(rf"^syntax keyword {group} (.*)$", vim, re.M)
        matched = re.findall(rf'^syntax match {group} ".*?\\\(([a-z\\|]+)\\\)', vim, re.M)
        return {w for line in keywords for w in line.split()} | {w for m in matched for w in m.split("\\|")}
    assert words("archKeyword") == set(highlight.KEYWORDS)
    assert words("archOperator") == set(highlight.WORD_OPERATORS)
    assert words("archConstant") == set(highlight.CONSTANTS)
    assert words("archFunction") == set(highlight.FUNCTIONS)
    assert words("archDefinition") == set(highlight.DEFINITIONS)
    assert words("archStatement") == set(highlight.STATEMENT_WORDS)
