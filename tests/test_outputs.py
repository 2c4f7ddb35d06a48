"""Nothing is lost: outputs are written whole or not at all, with the permissions a plain write
gives; a failed or interrupted run leaves what was there; a spec is never overwritten by its output;
`build` replaces its directory in one step. The command line exits 1 for a spec's mistake, 2 for the
command line's, 130 on Ctrl-C, and prints no traceback."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archsmith import cli

NET = "block Net() {\n    return x | c: conv2d(4, 1)\n}\nmodel net = Net() input [3, 8, 8]\n"
BROKEN = NET.replace("conv2d(4, 1)", "conv2d(4, 1, nope=1)")


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "net.arch"
    path.write_text(NET)
    return path


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "archsmith", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_the_output_can_never_be_the_spec(spec, tmp_path):
    for output in (spec, tmp_path / "other.arch"):
        result = run("compile", spec, "-o", output)
        assert result.returncode == 2 and "would overwrite a spec" in result.stderr
    (tmp_path / "link.py").symlink_to(spec)
    result = run("compile", spec, "-o", tmp_path / "link.py")
    assert result.returncode == 2 and "would overwrite a spec" in result.stderr
    assert spec.read_text() == NET


def test_a_failed_compile_leaves_the_old_output(spec, tmp_path):
    out = tmp_path / "net.py"
    out.write_text("# the old output\n")
    spec.write_text(BROKEN)
    result = run("compile", spec, "-o", out)
    assert result.returncode == 1 and "net.arch:2:" in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == "# the old output\n"
    assert sorted(os.listdir(tmp_path)) == ["net.arch", "net.py"]  # no temporary file left


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_output_has_the_mode_a_plain_write_gives(spec, tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert cli.main(["compile", str(spec), "-o", str(tmp_path / "net.py")]) == 0
        assert cli.main(["diagram", str(spec), "-o", str(tmp_path / "net.dot")]) == 0
    finally:
        os.umask(previous)
    for name in ("net.py", "net.dot"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_replaced_output_keeps_its_mode(spec, tmp_path):
    out = tmp_path / "net.py"
    out.write_text("old\n")
    out.chmod(0o640)
    assert cli.main(["compile", str(spec), "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o640 and "class Net" in out.read_text()


def test_an_unwritable_output_names_the_path_given(spec):
    result = run("compile", spec, "-o", "/proc/archsmith-test/net.py")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot write /proc/archsmith-test/net.py:")


def test_exit_statuses(spec, capsys, monkeypatch):
    assert cli.main(["check", str(spec)]) == 0
    spec.write_text(BROKEN)
    assert cli.main(["check", str(spec)]) == 1
    with pytest.raises(SystemExit) as usage:
        cli.main(["check", str(spec), "--set", "=3"])
    assert usage.value.code == 2

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli._COMMANDS, "check", interrupted)
    assert cli.main(["check", str(spec)]) == 130
    assert "interrupted" in capsys.readouterr().err

    def broken(args):
        raise KeyError("a bug")
    monkeypatch.setitem(cli._COMMANDS, "check", broken)
    assert cli.main(["check", str(spec)]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "KeyError" in err and "Traceback" not in err
    with pytest.raises(KeyError):
        cli.main(["--debug", "check", str(spec)])


def digest(directory: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_build_replaces_its_directory_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    first = run("build", "-o", out, "--no-diagrams")
    assert first.returncode == 0, first.stderr
    built = digest(out)
    assert "resnet50.py" in built and "summary.md" in built and ".archsmith-build" in built
    (out / "resnet50.py").write_text("# changed since\n")
    built = digest(out)
    # interrupted once it has written some models: the old build stays, whole, and nothing is left beside it
    process = subprocess.Popen([sys.executable, "-m", "archsmith", "build", "-o", str(out), "--no-diagrams"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(5):
        process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert digest(out) == built
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_build_refuses_a_directory_it_did_not_make(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.doc").write_text("keep me")
    result = run("build", "-o", mine, "--no-diagrams")
    assert result.returncode == 2 and "did not write" in result.stderr
    assert os.listdir(mine) == ["notes.doc"]


def test_stdin_is_a_spec(spec):
    result = subprocess.run([sys.executable, "-m", "archsmith", "check", "-"], input=NET, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "net: ok" in result.stdout
    result = subprocess.run([sys.executable, "-m", "archsmith", "check", "-"], input=BROKEN, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("<stdin>:2:")


def test_ctrl_c_while_compiling_prints_no_traceback(tmp_path):
    slow = tmp_path / "slow.arch"
    slow.write_text("block Net() {\n    for i in range(40000) { x = x | relu() }\n    return x\n}\n"
                    "model net = Net() input [3, 8, 8]\n")
    process = subprocess.Popen([sys.executable, "-m", "archsmith", "compile", str(slow), "-o", str(tmp_path / "o.py")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode in (0, 130) and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == (["o.py", "slow.arch"] if process.returncode == 0 else ["slow.arch"])
