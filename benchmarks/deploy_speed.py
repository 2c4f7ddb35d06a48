"""The deploy pass's speedup: each model's inference network (`archsmith.deploy`) against the model it
came from, in eval mode, measured in the same run, and the anchors it is to beat: timm's
`reparameterize_model` on timm's repvgg_a0 and torch.fx's `fuse` on torchvision's resnet50.

    .venv/bin/python benchmarks/deploy_speed.py [repvgg_a0 resnet50 ...] [--batch 4] [--size 224]

Prints median milliseconds per batch and the speedup original / deployed (higher is better). Runs of
the two alternate, so that drift in a shared machine's speed hits both alike.
"""
import argparse
import copy
import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402

import archsmith  # noqa: E402
from timing import alternate, median_ms  # noqa: E402


def compare(label, original, faster, x, repeat, rounds=5):
    """Alternating medians of the two; prints and returns the speedup."""
    b, a = alternate(lambda: median_ms(original, x, repeat), lambda: median_ms(faster, x, repeat), rounds)
    print(f"{label:36} {b:8.1f} ms -> {a:8.1f} ms   speedup {b / a:.2f}x", flush=True)
    return b / a


def randomize(model):
    """Trained-looking weights: torchvision's initialization (He, fan-out) and batchnorm statistics.
    PyTorch's default initialization shrinks a deep network's activations layer after layer into
    denormal floats, which CPUs compute many times slower (densenet121 took 1.8 s instead of 0.2):
    timing that would measure the initialization, not the network."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return model.eval()


def anchors(x, repeat):
    import timm
    import torchvision
    from timm.utils.model import reparameterize_model
    from torch.fx.experimental.optimization import fuse
    model = randomize(timm.create_model("repvgg_a0"))
    compare("anchor: timm reparameterize_model, repvgg_a0", model, reparameterize_model(copy.deepcopy(model)), x, repeat)
    model = randomize(torchvision.models.resnet50())
    compare("anchor: torch.fx fuse, resnet50 (batch 8)", model, fuse(model), torch.cat([x, x]), repeat)
    model = randomize(archsmith.create_model("resnet50"))
    compare("archsmith deploy, resnet50 (batch 8)", model, archsmith.deploy(model), torch.cat([x, x]), repeat)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["repvgg_a0", "resnet50", "efficientnet_b0", "densenet121"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-anchors", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    print(f"CPU, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}x{args.size}, "
          f"median of {args.repeat} per round, 5 alternating rounds")
    for name in args.models:
        model = randomize(archsmith.create_model(name))
        deployed = archsmith.deploy(model)
        with torch.no_grad():
            error = ((deployed(x) - model(x)).abs().max() / model(x).abs().max()).item()
        compare(f"archsmith deploy, {name}", model, deployed, x, args.repeat)
        print(f"{'':36} relative error {error:.1e}; parameters {sum(p.numel() for p in model.parameters()):,} -> "
              f"{sum(p.numel() for p in deployed.parameters()):,}")
    if not args.no_anchors:
        anchors(x, args.repeat)


if __name__ == "__main__":
    main()
