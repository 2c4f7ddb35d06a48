"""A generated model loads a torchvision checkpoint unmodified, and computes what torchvision's does.

    .venv/bin/python examples/load_torchvision_weights.py [resnet50] [--weights resnet50.pth]

Without --weights it saves a randomly initialized torchvision model first (this machine has no
internet); with a real checkpoint (torchvision's ImageNet weights, e.g. from
https://download.pytorch.org/models/resnet50-11ad3fa6.pth) it checks the claim on trained weights.
`weights=` also takes a URL, fetched once into torch.hub's cache.
"""
import argparse
import sys
import tempfile
import types
from pathlib import Path

import torch

import archsmith

# torchvision's compiled ops need a CUDA-matched build; its model code does not
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torchvision  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="resnet50")
    parser.add_argument("--weights", help="a torchvision state_dict (.pth); default: a random one")
    args = parser.parse_args(argv)
    reference = getattr(torchvision.models, args.model)()
    weights = args.weights
    if weights is None:
        weights = str(Path(tempfile.mkdtemp()) / f"{args.model}.pth")
        torch.save(reference.state_dict(), weights)
    reference.load_state_dict(torch.load(weights, map_location="cpu"))
    ours = archsmith.create_model(args.model, weights=weights)  # the same keys: loads unmodified
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"{args.model}: {len(ours.state_dict())} state_dict entries loaded from {weights}; "
          f"max relative difference from torchvision {error:.1e}")
    return error


if __name__ == "__main__":
    main()
