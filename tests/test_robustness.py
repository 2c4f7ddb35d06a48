"""No Python traceback for a mistake in a spec: seeded random edits of the bundled specs either
compile or raise SpecError, whose rendering names a line of the spec."""
import random
import re
from pathlib import Path

import pytest

import archsmith

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [(ROOT / p).read_text() for p in ("specs/resnet.arch", "specs/vgg.arch", "examples/tiny_resnet.arch")]
INSERTS = ["(", ")", "{", "}", "[", "]", ",", "|", ":", "=", "x", "0", "-1", "1e9", '"a"', "true", "none",
           "seq", "relu", "conv2d(3)", "x.channels", "**", "//", "if", "else", "for", "in", "return", "block",
           "model", "\n", ";", "[]", "2.5", "x + x", "concat(x)", "split(x, [1])", "mean(x)", "drop_path(2)",
           "linear(0)", "input", "def", "import \"nothing\""]
NUMBERS = ["0", "-3", "1", "7", "100000", "2.5", '"s"', "[1, 2]", "none"]


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(text))
        roll = rng.random()
        if roll < 0.3:
            text = text[:pos] + text[pos + rng.randint(1, 8):]
        elif roll < 0.6:
            text = text[:pos] + rng.choice(INSERTS) + text[pos:]
        elif roll < 0.8:
            numbers = [m.span() for m in re.finditer(r"\d+", text)]
            start, end = rng.choice(numbers)
            text = text[:start] + rng.choice(NUMBERS) + text[end:]
        else:
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@pytest.mark.parametrize("seed", range(8))
def test_edited_specs_compile_or_raise_spec_error(seed):
    rng = random.Random(seed)
    for _ in range(25):
        text = mutate(rng.choice(SOURCES), rng)
        models = re.findall(r"^model (\w+)", text, re.M)
        try:
            archsmith.compile(text, model=rng.choice(models) if models else None)
        except archsmith.SpecError as e:
            rendered = str(e)
            if e.line is not None:
                assert rendered.startswith(f"{e.path}:{e.line}:{e.column}: error: ")
