"""The bundled Inception v3 is torchvision's: the same state_dict keys in the same order, the same
outputs with its weights in eval (the main logits) and in training (logits and the auxiliary logits,
dropout included, under the same seed), with and without its options."""
import warnings

import pytest
import torch

import archsmith

torchvision = pytest.importorskip("torchvision")

from test_equivalence import randomize_batchnorm, relative_error  # noqa: E402

# The auxiliary head pools 5x5 at stride 3, then convolves 5x5: the last 17x17 grid must be 17x17,
# which only a 299x299 (or 300x300) input gives. Without the head, torchvision's smallest is 75x75.
SMALLEST = 75


def reference(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about its init_weights default
        model = torchvision.models.inception_v3(init_weights=False, **kwargs)
    randomize_batchnorm(model)
    return model


def loaded(ref, size, **kwargs):
    ours = archsmith.create_model("inception_v3", input_shape=[3, size, size], **kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert all(v.shape == ref.state_dict()[k].shape for k, v in ours.state_dict().items())
    ours.load_state_dict(ref.state_dict())
    return ours


def test_eval_and_training_outputs_are_torchvisions_at_299():
    torch.manual_seed(0)
    ref = reference()
    ours = loaded(ref, 299)
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        assert relative_error(ours.eval()(x), ref.eval()(x)) < 1e-4
        ref.train(), ours.train()
        torch.manual_seed(1)
        expected = ref(x)
        torch.manual_seed(1)  # dropout 0.5 draws the same mask
        actual = ours(x)
    assert type(expected).__name__ == "InceptionOutputs" and isinstance(actual, tuple) and len(actual) == 2
    for got, want in zip(actual, expected):  # (logits, aux_logits)
        assert got.shape == want.shape == (2, 1000)
        assert relative_error(got, want) < 1e-4


def test_without_the_auxiliary_head_at_the_smallest_input():
    torch.manual_seed(0)
    ref = reference(aux_logits=False, num_classes=10)
    ours = loaded(ref, SMALLEST, aux_logits=False, num_classes=10)
    assert ours.AuxLogits is None
    x = torch.randn(2, 3, SMALLEST, SMALLEST)
    with torch.no_grad():
        assert relative_error(ours.eval()(x), ref.eval()(x)) < 1e-4
        torch.manual_seed(1)
        expected = ref.train()(x)
        torch.manual_seed(1)
        out = ours.train()(x)
    assert isinstance(out, torch.Tensor) and relative_error(out, expected) < 1e-4


def test_transform_input_renormalizes_as_torchvision():
    torch.manual_seed(0)
    ref = reference(aux_logits=False, transform_input=True)
    ours = loaded(ref, SMALLEST, aux_logits=False, transform_input=True)
    x = torch.randn(2, 3, SMALLEST, SMALLEST)
    with torch.no_grad():
        assert relative_error(ours.eval()(x), ref.eval()(x)) < 1e-4


def test_the_auxiliary_head_is_shape_checked_though_eval_never_runs_it():
    with pytest.raises(archsmith.SpecError, match="avgpool2d window 5"):
        archsmith.compile("inception_v3", input_shape=[3, SMALLEST, SMALLEST])
    archsmith.compile("inception_v3", input_shape=[3, SMALLEST, SMALLEST], aux_logits=False)


def test_published_figures_at_compile_time():
    """shared/REFERENCE.md: 27,161,264 parameters (the auxiliary head included), 580 state_dict
    entries, 5.713 GMACs at 299x299 (eval: the head does not run)."""
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models("inception_v3")
    assert model.input_shape == (3, 299, 299) and model.output_shape == (1000,)
    assert parameter_count(model.graph) == 27_161_264
    assert state_dict_size(model.graph) == 580
    assert mac_count(model.graph) / 1e9 == pytest.approx(5.713, abs=5e-4)
    assert [t.shape for t in model.root.training_output[0]] == [(1000,), (1000,)]


def test_factorized_convolutions_and_the_head_in_the_generated_source():
    source = archsmith.compile("inception_v3")
    assert "        self.branch7x7_2 = conv1xn(c7, c7, 7)\n        self.branch7x7_3 = convnx1(c7, 192, 7)\n" in source
    assert "    return BasicConv2d(in_channels, out, kernel=[1, n], padding=[0, n // 2])\n" in source
    assert ("        x = self.Mixed_6e(x)\n"
            "        if self.AuxLogits is not None:\n"
            "            if self.training:\n"
            "                aux = self.AuxLogits(x)\n"
            "        x = self.Mixed_7a(x)\n") in source
    assert "                return x, aux\n        return x\n" in source
