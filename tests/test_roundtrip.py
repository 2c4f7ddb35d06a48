"""Determinism and round trip of the bundled models.

* Determinism: identical output bytes across runs, machines and PYTHONHASHSEED values. Two processes
  with different hash seeds, working directories and locales, one compiling the bundled spec files
  where they are and the other copies of them in another directory, give the same sha256 for every
  spec file's source (plain and deploy), for the DOT text of the diagrams of a handful of models
  and for their summary tables (text and JSON).
* Round trip: for every bundled model, `archsmith.build(name)` and the factory of the executed
  `archsmith.compile(name)` have the same state_dict keys, in the same order, with the same shapes,
  and with the same weights compute the same eval-mode output, bit for bit.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import archsmith
from archsmith.loader import bundled_dir

from test_deploy import randomize

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------- determinism

DIAGRAMS = ["resnet50", "inception_v3", "densenet121", "dpn68", "efficientnet_b0", "resnest14d", "repvgg_a0"]

HASH_OUTPUTS = r'''
import hashlib, json, sys
from pathlib import Path
import archsmith

def sha(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

specs, diagrams = Path(sys.argv[1]), sys.argv[2].split(",")
out = {}
for path in sorted(specs.glob("*.arch")):
    if "\nmodel " not in "\n" + path.read_text():
        continue  # a library (std.arch)
    out[path.name] = sha(archsmith.compile(str(path)))
    out[path.name + " deploy"] = sha(archsmith.compile(str(path), deploy=True))
for name in diagrams:
    out["diagram " + name] = sha(archsmith.diagram(name, depth=2).source)
    out["diagram1 " + name] = sha(archsmith.diagram(name).source)
    table = archsmith.summary(name, depth=2)
    out["summary " + name] = sha(str(table))
    out["summary json " + name] = sha(json.dumps(table.to_json(), sort_keys=True))
json.dump(out, sys.stdout)
'''


def test_outputs_are_the_same_bytes_across_hash_seeds_directories_and_locales(tmp_path):
    started = time.perf_counter()
    copies = tmp_path / "elsewhere" / "specs"
    shutil.copytree(bundled_dir(), copies)  # another machine's checkout: other absolute paths
    runs = [("0", bundled_dir(), ROOT, "C"), ("12345", copies, tmp_path, "C.UTF-8")]
    processes = []
    for seed, specs, cwd, locale in runs:
        env = dict(os.environ, PYTHONHASHSEED=seed, LC_ALL=locale, LANG=locale, TZ="Pacific/Kiritimati",
                   PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        processes.append(subprocess.Popen([sys.executable, "-c", HASH_OUTPUTS, str(specs), ",".join(DIAGRAMS)],
                                          cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    outputs = []
    for p in processes:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    first, second = outputs
    files = {p.name for p in bundled_dir().glob("*.arch")} - {"std.arch"}
    assert {k for k in first if k.endswith(".arch")} == files
    assert len(first) == 2 * len(files) + 4 * len(DIAGRAMS)
    differ = sorted(k for k in first if first[k] != second.get(k))
    assert differ == [] and first.keys() == second.keys(), f"outputs that differ: {differ}"
    assert time.perf_counter() - started < 120


# ------------------------------------------------------------------------------------- round trip

# The smallest input each model takes where 32x32 is too small (an 8x8 map before Inception's last
# 8x8 pool): in eval, Inception v3 has no aux head.
INPUT_SIZE = {"inception_v3": 75, "inception_v4": 75, "inception_resnet_v2": 75}


@pytest.mark.parametrize("name", archsmith.list_models())
def test_build_and_the_compiled_source_are_the_same_module(name):
    torch.manual_seed(0)
    built = randomize(archsmith.build(name))  # non-trivial batchnorm statistics, eval mode
    namespace = {}
    exec(compile(archsmith.compile(name), f"<{name}>", "exec"), namespace)
    with torch.device("meta"):  # its weights come from `built`: no time spent initializing them
        compiled = namespace[name]()
    assert type(compiled).__name__ == type(built).__name__
    expected = [(k, tuple(v.shape)) for k, v in built.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in compiled.state_dict().items()] == expected
    compiled.load_state_dict(built.state_dict(), assign=True)
    compiled.eval()
    size = INPUT_SIZE.get(name, 32)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ours, theirs = compiled(x), built(x)
    assert theirs.dim() == 2 and theirs.shape[0] == 1 and torch.isfinite(theirs).all()
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
