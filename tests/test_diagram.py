"""Diagrams: stages and blocks as nested clusters as deep as `depth` asks, identical blocks and ops in
a row drawn once with their count, shapes on edges, merges with shapes of their own and a legend,
and the command's errors. The DOT source needs no binary; the SVG checks need Graphviz's `dot`."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import archsmith

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")


def dot(spec, **kwargs):
    return archsmith.diagram(spec, **kwargs).source


def clusters(source):
    return re.findall(r"subgraph cluster_\w+", source)


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "archsmith", *args], capture_output=True, text=True, env=env)


def test_vgg_runs_of_conv_bn_relu_are_drawn_once_with_their_count():
    source = dot("vgg16_bn")
    assert "conv 3x3, 512 · batchnorm2d · relu <B>×3</B>" in source
    assert source.count("conv 3x3, 512 · batchnorm2d · relu") == 2  # [256→512] ×3 and [512→512] ×3
    assert "[256, 28, 28] → [512, 28, 28]" in source
    assert source.count("max pool 2, /2") == 5
    assert "<B>features</B>" in source and "<B>classifier</B>" in source
    assert 'label="[512, 7, 7]"' in source


def test_resnet_stages_are_clusters_of_blocks_with_what_tells_them_apart():
    source = dot("resnet152")
    assert len(clusters(source)) == 4  # layer1..layer4
    assert "Bottleneck ×35<BR/>planes=256, stride=1<BR/>[1024, 14, 14] → [1024, 14, 14]<BR/>39.1M params" \
        in source
    assert source.count("Bottleneck + downsample<BR/>") == 4
    assert "planes=128, stride=2" in source
    assert "<B>conv1</B><BR/>conv 7x7, 64, /2 · batchnorm2d · relu" in source
    assert "N identical in a row, drawn once" in source  # the legend explains ×N


def test_depth_chooses_how_far_the_model_opens():
    zero, one, two = (dot("resnet50", depth=d) for d in (0, 1, 2))
    assert clusters(zero) == [] and clusters(one) and len(clusters(two)) > len(clusters(one))
    assert "<B>layer3</B><BR/>Bottleneck + downsample, Bottleneck ×5" in zero  # a stage as one node
    assert "conv 3x3, 256, /2 · batchnorm2d · relu" in two and "conv 3x3" not in one
    assert "label=<+>" in two and "label=<+>" not in one
    assert "N identical in a row, drawn once" in two  # Bottleneck ×5, opened
    assert dot("resnet50", depth=5) == dot("resnet50", depth=3)  # nothing deeper to open


def test_merges_have_shapes_of_their_own_and_a_legend():
    add = dot("resnet18", depth=2)
    assert re.search(r"label=<\+> [^]]*shape=circle", add) and "add: residual or summed branches" in add
    concat = dot("inception_v3")
    assert re.search(r"label=<concat> [^]]*shape=invtrapezium", concat)
    assert "concatenate branches" in concat and "add: residual" not in concat  # only what is drawn
    gate = dot("seresnet50", depth=3)
    assert re.search(r"label=<×> fillcolor=\"#fcd5b0\"[^]]*shape=circle", gate)  # not an add's colour
    assert "multiply: a gate" in gate
    split = dot("dpn68", depth=2)
    assert re.search(r"label=<split> [^]]*shape=trapezium", split)


def test_blocks_that_differ_in_a_rate_are_one_run_with_its_range():
    source = dot("resnet50", drop_path_rate=0.1)  # timm's schedule: each block a higher rate
    assert "Bottleneck ×5<BR/>planes=256, stride=1, drop_path_rate=0.0533…0.08<BR/>" in source


def test_dense_layers_collapse_and_their_outputs_share_one_edge():
    source = dot("densenet121", depth=2)
    assert "<B>denselayer1–24</B><BR/>DenseLayer ×24" in source
    assert 'label="[32, 14, 14] ×24"' in source  # the 24 new feature maps, into the block's concat


def test_labels_say_each_thing_once():
    source = dot(str(EXAMPLES / "tiny_resnet.arch"), depth=2)
    assert "relu<BR/>relu" not in source and "<B>relu</B>" not in source
    assert "<B>stem</B><BR/>conv 3x3, 16 · relu" in source
    assert "Residual ×3" in source


def test_a_chain_of_ops_is_one_node_before_or_after_its_layer():
    resnet = dot("resnet50", depth=2)
    assert "<B>downsample</B><BR/>conv 1x1, 512, /2 · batchnorm2d<BR/>132.1K params" in resnet  # a seq, not a cluster
    dpn = dot("dpn92", depth=2)  # pre-activation: the node is named after its conv
    assert "<B>c3x3_b</B><BR/>BnActConv<BR/>batchnorm2d · relu · conv 3x3, 96, groups 32<BR/>2.8K params" in dpn
    inception = dot("inception_v3")  # a block of one conv, norm and activation is a node, never a cluster
    assert ("<B>Conv2d_1a_3x3</B><BR/>BasicConv2d<BR/>conv 3x3, 32, /2 · batchnorm2d · relu<BR/>928 params"
            in inception)
    assert "label=<avg pool 3>" in inception  # a stride of 1 goes unsaid


def test_auxiliary_heads_lead_to_what_training_returns():
    source = dot("googlenet")
    aux = re.search(r"(n\d+) \[label=<returned in training> [^]]*style=dashed", source).group(1)
    assert len(re.findall(rf'-> {aux} \[label="\[1000\]"\]', source)) == 2  # aux1 and aux2, not the main output


def test_the_source_is_the_same_in_every_process():
    code = "import archsmith, sys; sys.stdout.write(archsmith.diagram('inception_v3', depth=2).source)"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outputs) == 1


@needs_dot
def test_svg_has_the_clusters_and_the_counts():
    svg = archsmith.diagram("resnet50")._repr_svg_()
    assert svg.count('class="cluster"') == 4
    assert "Bottleneck" in svg and "×5" in svg and "[1024, 14, 14]" in svg


@needs_dot
def test_the_extension_picks_the_format_in_any_case(tmp_path):
    result = run("diagram", "resnet18", "-o", str(tmp_path / "r.PNG"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.PNG").read_bytes().startswith(b"\x89PNG")


def test_an_unknown_format_is_a_one_line_error(tmp_path):
    result = run("diagram", "resnet18", "-o", str(tmp_path / "r.xyz"))
    assert result.returncode == 1
    assert result.stderr == f"error: cannot draw `{tmp_path / 'r.xyz'}`: name a .svg, .png, .pdf or .dot file\n"
    assert os.listdir(tmp_path) == []


def test_a_bad_depth_is_refused():
    result = run("diagram", "resnet18", "--depth", "-1", "-o", "r.svg")
    assert result.returncode == 2 and "takes a number of levels, 0 or more" in result.stderr


def test_without_dot_the_source_is_written_and_the_way_to_images_told(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path / "nothing")}  # no `dot` to be found
    result = run("diagram", "resnet18", "-o", str(tmp_path / "r.svg"), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "`dot` is not installed" in result.stderr and f"dot -Tsvg {tmp_path / 'r.dot'}" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["r.dot"]
    assert (tmp_path / "r.dot").read_text() == dot("resnet18")


def test_without_dot_jupyter_gets_no_svg_but_the_source_is_there(monkeypatch):
    monkeypatch.setenv("PATH", "")
    drawn = archsmith.diagram("resnet18")
    assert drawn._repr_svg_() is None and drawn.source.startswith("digraph resnet18")


def test_free_parameters_and_the_newer_ops_are_drawn():
    source = dot(str(Path(__file__).resolve().parent / "fixtures" / "classes" / "vocabulary.arch"), depth=3)
    assert "<B>gamma</B><BR/>param [8, 1, 1]" in source
    assert "conv 3x3, 8, /2 · layernorm2d" in source  # a norm after a conv is drawn in its node
    assert "\u2212" in source and "\u00f7" in source  # sub and div as symbols
