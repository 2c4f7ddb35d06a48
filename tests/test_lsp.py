"""The language server: its pure functions on real specs, then a scripted session with `archsmith lsp`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archsmith import lsp

ROOT = Path(__file__).resolve().parent.parent
RESNET = str(ROOT / "specs" / "resnet.arch")
BROKEN = "block B() {\n    return x | c: conv2d(8, 3, paddin=1)\n}\nmodel m = B() input [3, 8, 8]\n"
FIXED = BROKEN.replace("paddin", "padding")


def _at(text, needle, offset=0):
    """The LSP (line, character) of `needle`'s first occurrence, plus `offset` characters (ASCII lines)."""
    line = next(i for i, s in enumerate(text.split("\n")) if needle in s)
    return line, text.split("\n")[line].index(needle) + offset


def test_a_valid_spec_has_no_diagnostics():
    assert lsp.diagnostics(Path(RESNET).read_text(), RESNET) == []


def test_an_error_is_a_diagnostic_at_its_span_with_the_hint():
    [d] = lsp.diagnostics(BROKEN, "net.arch")
    assert d["range"] == {"start": {"line": 1, "character": 31}, "end": {"line": 1, "character": 39}}
    assert d["message"] == "`conv2d` has no parameter `paddin`\nhint: did you mean `padding`?"


def test_columns_are_utf16_code_units():
    # é is one UTF-16 code unit and 😀 two: `nope` is at character 20 in Python, 21 in UTF-16
    text = '# é😀: a comment\nmodel m = B("😀é", n=nope) input [3, 8, 8]\nblock B(name, n) { return x }\n'
    [d] = lsp.diagnostics(text, "net.arch")
    assert d["range"] == {"start": {"line": 1, "character": 21}, "end": {"line": 1, "character": 25}}
    text = text.replace("nope", "f(1)") + "fn f(n) {\n    return n\n}\n"
    assert lsp.definition(text, "net.arch", 1, 21)["range"]["start"] == {"line": 3, "character": 0}
    assert lsp.definition(text, "net.arch", 1, 20) is None


def test_an_error_in_an_import_goes_on_its_import_line(tmp_path):
    (tmp_path / "lib.arch").write_text("block L() {\n    return x | nope()\n}\n")
    text = '# uses lib\nimport "lib"\nmodel m = L() input [3, 8, 8]\n'
    [d] = lsp.diagnostics(text, str(tmp_path / "net.arch"))
    assert d["range"]["start"] == {"line": 1, "character": 0}
    assert "lib.arch:2:" in d["message"] and "nope" in d["message"]


def test_a_library_is_checked_like_archsmith_check():
    assert lsp.diagnostics('import "std"\nblock B() { return x | relu() }\n', "lib.arch") == []
    [d] = lsp.diagnostics("n = 1 +\n", "lib.arch")
    assert d["range"]["start"] == {"line": 0, "character": 7}


def test_hover_on_a_layer_gives_its_shape_and_parameters():
    text = FIXED
    assert lsp.hover(text, "net.arch", *_at(text, "conv2d")) == "`m.c`: output [8, 8, 8], 224 parameters"
    assert lsp.hover(text, "net.arch", *_at(text, "c:")) == "`m.c`: output [8, 8, 8], 224 parameters"


def test_hover_over_several_instances_lists_their_shapes():
    text = Path(RESNET).read_text()
    assert lsp.hover(text, RESNET, *_at(text, "maxpool:")) == "in 5 instances: [64, 56, 56]"
    assert lsp.hover(text, RESNET, *_at(text, "layer2:")) == "in 5 instances: [128, 28, 28], [512, 28, 28]"


def test_hover_on_a_block_instance_gives_its_class_and_arguments(tmp_path):
    text = "block Inner(w) {\n    return x | conv: conv2d(w, 1)\n}\nblock Outer() {\n    return x | inner: Inner(4)\n}\n" \
           "model m = Outer() input [3, 8, 8]\n"
    assert lsp.hover(text, "net.arch", *_at(text, "inner:")) == "`m.inner`: output [4, 8, 8], 16 parameters\n\n" \
                                                                 "`Inner(w=4)`"


def test_hover_on_a_block_name_gives_its_signature_and_doc():
    text = Path(RESNET).read_text()
    shown = lsp.hover(text, RESNET, *_at(text, "ResNet(BasicBlock", 1))
    assert shown.startswith("```\nblock ResNet(kind, layers, num_classes = 1000,")
    assert "A 7x7 stem" in shown
    assert lsp.hover(text, RESNET, 0, 0) is None


def test_definition_finds_blocks_here_and_in_std():
    text = Path(RESNET).read_text()
    here = lsp.definition(text, RESNET, *_at(text, "ResNet(BasicBlock", 2))
    assert here["uri"] == Path(RESNET).as_uri() and here["range"]["start"] == {"line": 15, "character": 0}
    there = lsp.definition(text, RESNET, *_at(text, "BasicBlock"))
    assert there["uri"].endswith("/std.arch")
    assert Path(there["uri"][len("file://"):]).read_text().split("\n")[there["range"]["start"]["line"]] \
        .startswith("block BasicBlock(")
    assert lsp.definition(text, RESNET, *_at(text, "conv1:")) is None


def test_formatting_is_one_edit_of_the_whole_document():
    [edit] = lsp.formatting("model   m = B() input [3,8,8]\n", "net.arch")
    assert edit["newText"] == "model m = B() input [3, 8, 8]\n"
    assert edit["range"] == {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    assert lsp.formatting("model m = B() input [3, 8, 8]\n", "net.arch") == []


class Client:
    """JSON-RPC over a subprocess's pipes, framed with Content-Length headers."""

    def __init__(self, process):
        self.process, self.next_id = process, 0

    def send(self, method, params, request=False):
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()
        return message.get("id")

    def receive(self):
        length = None
        while (line := self.process.stdout.readline().strip()):
            name, value = line.split(b":", 1)
            if name.lower() == b"content-length":
                length = int(value)
        return json.loads(self.process.stdout.read(length))

    def wait(self, method=None, id=None):
        """The next message that is the notification `method` or the response to `id`."""
        while True:
            message = self.receive()
            if (method and message.get("method") == method) or (id and message.get("id") == id):
                return message

    def request(self, method, params):
        return self.wait(id=self.send(method, params, request=True))["result"]


def test_a_session_with_archsmith_lsp(tmp_path):
    pytest.importorskip("pygls")
    path = tmp_path / "net.arch"
    uri = path.as_uri()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "archsmith", "lsp"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=env)
    try:
        client = Client(process)
        assert "hoverProvider" in client.request("initialize", {"processId": None, "rootUri": None,
                                                               "capabilities": {}})["capabilities"]
        client.send("initialized", {})
        client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "arch", "version": 1,
                                                              "text": BROKEN}})
        published = client.wait("textDocument/publishDiagnostics")["params"]
        assert published["uri"] == uri
        assert [d["range"] for d in published["diagnostics"]] == [
            {"start": {"line": 1, "character": 31}, "end": {"line": 1, "character": 39}}]
        client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                               "contentChanges": [{"text": FIXED}]})
        assert client.wait("textDocument/publishDiagnostics")["params"]["diagnostics"] == []
        line, character = _at(FIXED, "conv2d")
        position = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        assert "output [8, 8, 8]" in client.request("textDocument/hover", position)["contents"]["value"]
        line, character = _at(FIXED, "B()")
        position["position"] = {"line": line, "character": character}
        found = client.request("textDocument/definition", position)
        assert found["uri"] == uri and found["range"]["start"] == {"line": 0, "character": 0}
        assert client.request("shutdown", None) is None
        client.send("exit", None)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.stdout.close()
        process.stdin.close()


def test_lsp_without_pygls_is_a_one_line_error(tmp_path):
    (tmp_path / "pygls.py").write_text("raise ImportError('no pygls here')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    result = subprocess.run([sys.executable, "-m", "archsmith", "lsp"], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr == "error: the language server needs pygls: pip install 'archsmith[lsp]'\n"
