"""The bundled GoogLeNet is torchvision's: the same state_dict keys in the same order, the same
outputs with its weights in eval (the main logits) and in training (logits and both auxiliary
logits, dropout included, under the same seed), with and without its options."""
import warnings

import pytest
import torch

import archsmith

torchvision = pytest.importorskip("torchvision")

from test_equivalence import randomize_batchnorm, relative_error  # noqa: E402

SIZE = 64  # the auxiliary heads pool adaptively, so the model runs at sizes down to 15x15


def reference(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about its init_weights default
        model = torchvision.models.googlenet(init_weights=False, **kwargs)
    randomize_batchnorm(model)
    return model


def loaded(ref, **kwargs):
    ours = archsmith.create_model("googlenet", **kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert all(v.shape == ref.state_dict()[k].shape for k, v in ours.state_dict().items())
    ours.load_state_dict(ref.state_dict())
    return ours


def test_eval_and_training_outputs_are_torchvisions():
    torch.manual_seed(0)
    ref = reference()
    ours = loaded(ref)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert relative_error(ours.eval()(x), ref.eval()(x)) < 1e-4
        ref.train(), ours.train()
        torch.manual_seed(1)
        expected = ref(x)
        torch.manual_seed(1)  # dropout 0.2 and 0.7 draw the same masks in the same order
        actual = ours(x)
    assert type(expected).__name__ == "GoogLeNetOutputs" and isinstance(actual, tuple) and len(actual) == 3
    for got, want in zip(actual, expected):  # (logits, aux_logits2, aux_logits1)
        assert got.shape == want.shape == (2, 1000)
        assert relative_error(got, want) < 1e-4
    assert relative_error(actual[1], actual[2]) > 1e-2  # the two heads are not the same one


def test_without_auxiliary_classifiers_training_returns_the_logits():
    torch.manual_seed(0)
    ref = reference(aux_logits=False, num_classes=10, dropout=0.0)
    ours = loaded(ref, aux_logits=False, num_classes=10, dropout=0.0)
    assert ours.aux1 is None and ours.aux2 is None
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = ours.train()(x)
        assert isinstance(out, torch.Tensor) and relative_error(out, ref.train()(x)) < 1e-4


def test_transform_input_renormalizes_as_torchvision():
    torch.manual_seed(0)
    ref = reference(transform_input=True)
    ours = loaded(ref, transform_input=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert relative_error(ours.eval()(x), ref.eval()(x)) < 1e-4


def test_the_smallest_input_torchvision_publishes():
    torch.manual_seed(0)
    ref = reference()
    ours = loaded(ref)
    x = torch.randn(2, 3, 15, 15)
    with torch.no_grad():
        assert relative_error(ours.eval()(x), ref.eval()(x)) < 1e-4
        torch.manual_seed(1)
        expected = ref.train()(x)
        torch.manual_seed(1)
        assert all(relative_error(a, b) < 1e-4 for a, b in zip(ours.train()(x), expected))


def test_published_figures_at_compile_time():
    """shared/REFERENCE.md: 13,004,888 parameters (auxiliary heads included), 364 state_dict entries,
    1.498 GMACs at 224x224 (eval: the heads do not run)."""
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models("googlenet")
    assert model.input_shape == (3, 224, 224) and model.output_shape == (1000,)
    assert parameter_count(model.graph) == 13_004_888
    assert state_dict_size(model.graph) == 364
    assert mac_count(model.graph) / 1e9 == pytest.approx(1.498, abs=5e-4)
    assert [t.shape for t in model.root.training_output[0]] == [(1000,), (1000,), (1000,)]
    (plain,) = elaborate_models("googlenet", aux_logits=False)
    assert parameter_count(plain.graph) == 6_624_904  # torchvision's published figure, without the heads
    assert mac_count(plain.graph) == mac_count(model.graph)


def test_the_generated_forward_reads_like_torchvisions():
    source = archsmith.compile("googlenet")
    assert ("        x = self.inception4a(x)\n"
            "        if self.aux1 is not None:\n"
            "            if self.training:\n"
            "                aux1 = self.aux1(x)\n") in source
    assert ("        if self.aux_logits:\n"
            "            if self.training:\n"
            "                return x, aux2, aux1\n"
            "        return x\n") in source
    # the heads are built after the last module, as torchvision's are (their place in the checkpoint)
    assert ("        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, c5_kernel=c5_kernel)\n"
            "        if aux_logits:\n"
            "            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)\n"
            "            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)\n"
            "        else:\n"
            "            self.aux1 = None\n"
            "            self.aux2 = None\n"
            "        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))\n") in source
