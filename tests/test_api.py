"""The Python API as timm's: `create_model` by bundled name or spec file with keyword arguments,
input channels and weights; generated factories taking the class's keyword arguments;
`list_models` with a glob, sorted naturally."""
import os
import sys

import pytest
import torch

import archsmith

torchvision = pytest.importorskip("torchvision")


def test_generated_factories_take_keyword_arguments():
    module = sys.modules[type(archsmith.create_model("wide_resnet50_2")).__module__]
    assert module.wide_resnet50_2(num_classes=7).fc.out_features == 7
    # the model's own keyword is a parameter of the factory, with the model's value as its default
    narrow = module.wide_resnet50_2(width_per_group=64)
    assert sum(p.numel() for p in narrow.parameters()) == sum(p.numel() for p in torchvision.models.resnet50().parameters())
    with pytest.raises(TypeError):
        module.wide_resnet50_2(no_such_argument=1)


def test_create_model_takes_a_spec_file_and_picks_a_model(tmp_path):
    spec = tmp_path / "nets.arch"
    spec.write_text("block Net(width = 4) {\n    return x | conv: conv2d(width, 3) | mean() | fc: linear(3)\n}\n"
                    "model small = Net() input [1, 8, 8]\nmodel wide = Net(width=16) input [1, 8, 8]\n")
    model = archsmith.create_model(str(spec), model="wide")
    assert model.conv.out_channels == 16
    assert archsmith.create_model(str(spec), model="small", width=5).conv.out_channels == 5
    assert archsmith.create_model(str(spec), model="small", in_chans=2).conv.in_channels == 2
    with pytest.raises(ValueError, match="several models"):
        archsmith.create_model(str(spec))


def test_in_chans_changes_the_stem_only():
    model = archsmith.create_model("resnet18", in_chans=1, num_classes=10)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("as_url", [False, True])
def test_weights_load_a_torchvision_checkpoint(tmp_path, monkeypatch, as_url):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # torch.hub's cache, not the user's
    reference = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / f"resnet18_{as_url}.pth"
    torch.save(reference.state_dict(), path)
    weights = path.as_uri() if as_url else str(path)
    model = archsmith.create_model("resnet18", num_classes=10, weights=weights).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    if as_url:
        assert (tmp_path / "hub" / "hub" / "checkpoints" / path.name).exists()


def test_list_models_filters_by_glob_and_sorts_naturally():
    assert archsmith.list_models("resnet*")[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert archsmith.list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert archsmith.list_models("nothing*") == []
    assert set(archsmith.list_models()) >= {"resnet50", "densenet121"}


def test_an_unknown_model_names_the_api():
    with pytest.raises(archsmith.SpecError, match="resnet5") as e:
        archsmith.create_model("resnet5")
    assert "list_models" in str(e.value) or "resnet50" in str(e.value)


def test_the_index_of_bundled_models_is_what_parsing_their_files_finds():
    from archsmith.loader import Loader, bundled_dir, bundled_index
    loader = Loader()
    parsed = {name: path for path in sorted(bundled_dir().glob("*.arch")) for name in loader.load_path(path).models}
    assert bundled_index() == parsed
    assert list(bundled_index()) == list(parsed)  # file by file, in each file's order


def test_building_again_reuses_the_source_until_a_file_it_read_changes(tmp_path):
    spec = tmp_path / "net.arch"
    spec.write_text("block Net(w = 4) {\n    return x | c: conv2d(w, 1)\n}\nmodel net = Net() input [3, 8, 8]\n")
    assert archsmith.build(str(spec)).c.out_channels == 4
    assert archsmith.build(str(spec), w=6).c.out_channels == 6
    spec.write_text("block Net(w = 5) {\n    return x | c: conv2d(w, 1)\n}\nmodel net = Net() input [3, 8, 8]\n")
    os.utime(spec, ns=(1, 1))  # a change within the file system's time resolution is still a new stamp
    assert archsmith.build(str(spec)).c.out_channels == 5
