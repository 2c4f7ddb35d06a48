"""A non-editable install ships the grammar and the bundled specs, and compiles from them."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if result.returncode != 0 and "No module named setuptools" in result.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("archsmith-*.whl")
    return path


def test_wheel_contains_grammar_and_specs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "archsmith/grammar/arch.lark" in names
    assert {"archsmith/specs/std.arch", "archsmith/specs/resnet.arch", "archsmith/specs/vgg.arch"} <= names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_compiles_bundled_models(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = "import archsmith; print(archsmith.__file__); print(archsmith.list_models()); archsmith.compile('resnet50')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout.splitlines()[0]
    assert "'vgg19_bn'" in result.stdout
