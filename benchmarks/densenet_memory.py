"""Peak training memory of densenet121 with and without `memory_efficient`, the generated model and
torchvision's measured in the same run, each in a fresh process.

    .venv/bin/python benchmarks/densenet_memory.py [--batch 16] [--size 224] [--model densenet121]
    .venv/bin/python benchmarks/densenet_memory.py --device cuda     # torch.cuda.max_memory_allocated

On the CPU the figure is the process's peak resident set (the kernel's VmHWM): its total, and how
much one training step (forward, backward) raised it above the resident set just before the step,
when the model and the input already existed (`timing.peak_rss_rise`). On CUDA it is the
allocator's peak during the step, over what was allocated before it. The ratio is memory-efficient
/ plain (lower is better).
"""
import argparse
import json
import sys
import types

from timing import fresh_process, peak_rss_rise

MiB = 1024 * 1024


def measure(source: str, efficient: bool, model: str, batch: int, size: int, device: str) -> dict:
    """One training step of one model, in this process (which must be fresh): its memory figures."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torch
    torch.manual_seed(0)
    if source == "archsmith":
        import archsmith
        net = archsmith.create_model(model, memory_efficient=efficient)
    else:
        import torchvision
        net = getattr(torchvision.models, model)(memory_efficient=efficient)
    net.to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    out = peak_rss_rise(lambda: net(x).logsumexp(1).sum().backward())
    if device == "cuda":
        torch.cuda.synchronize()
        out["step_cuda"] = torch.cuda.max_memory_allocated() - before
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=2, metavar=("SOURCE", "EFFICIENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: measure one configuration and print it
        source, efficient = args.one[0], args.one[1] == "1"
        print(json.dumps(measure(source, efficient, args.model, args.batch, args.size, args.device)))
        return
    print(f"{args.model}, one training step at batch {args.batch}, {args.size}x{args.size}, {args.device}; "
          f"each in a fresh process")
    key = "step_cuda" if args.device == "cuda" else "step_rss"
    what = "peak allocated in the step" if args.device == "cuda" else "step raised peak RSS by"
    for source in ("archsmith", "torchvision"):
        figures = {}
        for efficient in (False, True):
            command = [sys.executable, __file__, "--one", source, str(int(efficient)), "--model", args.model,
                       "--batch", str(args.batch), "--size", str(args.size), "--device", args.device]
            figures[efficient] = fresh_process(command)
            f = figures[efficient]
            print(f"  {source:11} memory_efficient={str(efficient):5}  peak RSS {f['peak_rss'] / MiB:8.0f} MiB   "
                  f"{what} {f[key] / MiB:8.0f} MiB")
        print(f"  {source:11} ratio efficient / plain:  peak RSS {figures[True]['peak_rss'] / figures[False]['peak_rss']:.2f}"
              f"   {what} {figures[True][key] / figures[False][key]:.2f}")


if __name__ == "__main__":
    main()
