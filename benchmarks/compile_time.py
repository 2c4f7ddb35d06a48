"""`archsmith compile MODEL` wall time against `python -c "import torch"`, measured in the same run.

    .venv/bin/python benchmarks/compile_time.py [resnet50 ...] [--repeat 5]
"""
import argparse
import subprocess
import sys

from timing import alternate, seconds

TORCH_IMPORT = [sys.executable, "-c", "import torch"]


def compare(model, repeat):
    """Median wall seconds of `import torch` and of `archsmith compile model`, runs alternating."""
    def wall(command):
        return seconds(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL))
    compile_model = [sys.executable, "-m", "archsmith", "compile", model]
    return alternate(lambda: wall(TORCH_IMPORT), lambda: wall(compile_model), repeat)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["resnet50", "resnet152", "vgg16_bn"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for model in args.models:
        torch_import, t = compare(model, args.repeat)
        print(f"{'archsmith compile ' + model:32} {t:6.3f} s  ratio {t / torch_import:.2f} "
              f"(python -c \"import torch\" {torch_import:.3f} s)")


if __name__ == "__main__":
    main()
