"""Diagrams: seqs as clusters, a layer with its norm and activation as one node, shapes on edges,
repeated blocks collapsed, and the inside of each block on request. DOT source needs no binary."""
from pathlib import Path

from archsmith.backends.graphviz import diagram
from archsmith.compiler import elaborate_models

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def dot(spec, **kwargs):
    (model,) = elaborate_models(spec)
    return diagram(model, **kwargs).source


def test_vgg_features_are_a_cluster_of_conv_bn_relu_nodes():
    source = dot("vgg16_bn")
    assert "label=features" in source and "label=classifier" in source
    assert source.count("conv 3x3, 512<BR/>batchnorm2d<BR/>relu") == 6
    assert source.count("max pool 2, /2") == 5
    assert 'label="[512, 7, 7]"' in source


def test_resnet_stages_collapse_runs_of_one_block_class():
    source = dot("resnet152")
    assert "Bottleneck ×35<BR/>[1024, 14, 14] → [1024, 14, 14]" in source
    assert source.count("Bottleneck + downsample") == 4
    assert "<B>conv1</B><BR/>conv 7x7, 64, /2<BR/>batchnorm2d<BR/>relu" in source


def test_expand_draws_each_distinct_block_once():
    source = dot(str(EXAMPLES / "tiny_resnet.arch"), expand=True)
    assert source.count("(as blocks.") == 1
    assert "Residual (as blocks.0)" in source
    assert "label=<+>" in source and "shape=circle" in source
    assert "(as " not in dot(str(EXAMPLES / "tiny_resnet.arch"))


def test_free_parameters_and_the_newer_ops_are_drawn():
    (model,) = elaborate_models(str(Path(__file__).resolve().parent / "fixtures" / "classes" / "vocabulary.arch"))
    dot = diagram(model, expand=True).source
    assert "<B>gamma</B><BR/>param [8, 1, 1]" in dot
    assert "conv 3x3, 8, /2<BR/>layernorm2d" in dot  # a norm after a conv is drawn in its node
    assert "\u2212" in dot and "\u00f7" in dot  # sub and div as symbols
