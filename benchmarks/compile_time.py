"""`archsmith compile MODEL` wall time against `python -c "import torch"`, measured in the same run.

    .venv/bin/python benchmarks/compile_time.py [resnet50 ...] [--repeat 5]
"""
import argparse
import statistics
import subprocess
import sys
import time


def wall(cmd, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["resnet50", "resnet152", "vgg16_bn"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch_import = wall([sys.executable, "-c", "import torch"], args.repeat)
    label = 'python -c "import torch"'
    print(f"{label:32} {torch_import:6.3f} s  (reference)")
    for model in args.models:
        t = wall([sys.executable, "-m", "archsmith", "compile", model], args.repeat)
        print(f"{'archsmith compile ' + model:32} {t:6.3f} s  ratio {t / torch_import:.2f}")


if __name__ == "__main__":
    main()
