"""Golden files: the generated source of a few models, byte for byte. After an intended change to
the code generator, regenerate them with ARCHSMITH_UPDATE_GOLDEN=1 and review the diff."""
import os
from pathlib import Path

import pytest

import archsmith

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
CASES = {"resnet18": "resnet18", "resnet50": "resnet50", "vgg11_bn": "vgg11_bn",
         "tiny_resnet": str(ROOT / "examples" / "tiny_resnet.arch")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_source_matches_golden_file(name):
    source = archsmith.compile(CASES[name])
    path = GOLDEN / f"{name}.py"
    if os.environ.get("ARCHSMITH_UPDATE_GOLDEN"):
        path.write_text(source)
    assert source == path.read_text()
