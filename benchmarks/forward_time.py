"""Generated models against torchvision's, forward pass in eval mode, measured in the same run.

    .venv/bin/python benchmarks/forward_time.py [resnet50 ...] [--batch 8] [--size 224] [--device cuda]

Prints median milliseconds per batch and the ratio generated / torchvision (1.00 = as fast).
"""
import argparse
import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
import torchvision  # noqa: E402

import archsmith  # noqa: E402
from timing import alternate, median_ms  # noqa: E402


def with_weights_of(reference, ours):
    """`ours` with `reference`'s parameters and buffers, so that both compute the same numbers."""
    ours.load_state_dict(reference.state_dict())
    return ours


def compare(reference, ours, x, repeat, rounds=3):
    """Median milliseconds per batch of each: `rounds` alternating medians of `repeat` runs."""
    return alternate(lambda: median_ms(reference, x, repeat), lambda: median_ms(ours, x, repeat), rounds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["resnet18", "resnet50", "vgg11_bn"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    print(f"device {args.device}, batch {args.batch}, {args.size}x{args.size}, median of {args.repeat}")
    for name in args.models:
        reference = getattr(torchvision.models, name)().eval().to(args.device)
        ours = with_weights_of(reference, archsmith.create_model(name).eval().to(args.device))
        r, o = compare(reference, ours, x, args.repeat)
        print(f"{name:12} torchvision {r:8.1f} ms   archsmith {o:8.1f} ms   ratio {o / r:.3f}")


if __name__ == "__main__":
    main()
