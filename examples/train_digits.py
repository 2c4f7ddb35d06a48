"""Train examples/digits.arch on scikit-learn's handwritten digits (8x8, 1,797 images) and save it.

    .venv/bin/python examples/train_digits.py [--epochs 15] [--out digits.pt]

About 10 s on two CPU cores; reaches 99.7% test accuracy (at least 97% at any seed we tried). Needs scikit-learn (installed by
./test.sh). The checkpoint is the model's state_dict: `archsmith.create_model("examples/digits.arch",
weights="digits.pt")` loads it back.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import archsmith

SPEC = str(Path(__file__).with_name("digits.arch"))


def progress(epoch, epochs, step, steps, loss, started):
    """Epoch, a bar, the loss and the time so far: one line rewritten in place on a terminal, a line
    an epoch elsewhere."""
    terminal = sys.stderr.isatty()
    if not terminal and step < steps:
        return
    done = int(24 * step / steps)
    sys.stderr.write(f"{chr(13) if terminal else ''}epoch {epoch + 1:2}/{epochs} [{'#' * done}{'.' * (24 - done)}] "
                     f"loss {loss:.3f}  {time.perf_counter() - started:5.1f} s{'' if terminal else chr(10)}")
    sys.stderr.flush()


def accuracy(model, images, labels):
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default="digits.pt")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8 in [0, 1]
    labels = torch.tensor(digits.target)
    train_x, test_x, train_y, test_y = train_test_split(images, labels, test_size=0.2, random_state=0,
                                                        stratify=labels)
    model = archsmith.create_model(SPEC)
    steps = (len(train_x) + 63) // 64
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.epochs * steps)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for step in range(steps):
            batch = order[step * 64:(step + 1) * 64]
            loss = torch.nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            progress(epoch, args.epochs, step + 1, steps, loss.item(), started)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    test_accuracy = accuracy(model, test_x, test_y)
    print(f"test accuracy {test_accuracy:.1%} on {len(test_x)} images after {time.perf_counter() - started:.1f} s")
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out}")
    return test_accuracy


if __name__ == "__main__":
    main()
