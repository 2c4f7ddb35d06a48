"""Train examples/digits.arch with PyTorch's DistributedDataParallel: one process per GPU (or, on a
machine without one, per share of the CPU), each on its part of every batch, the gradients averaged.

    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py [--epochs 5] [--out digits_ddp.pt]

A generated model is an ordinary `nn.Module`, so nothing here is particular to archsmith but the line
that builds it. With CUDA each process takes one GPU (NCCL) and the batchnorms become SyncBatchNorm,
so that they normalize over the global batch; PyTorch's SyncBatchNorm does not run on the CPU, so
there (Gloo) each process normalizes its own part of the batch, as plain DDP does. Rank 0 saves the
checkpoint: the model's own state_dict, without DDP's `module.` prefix, which
`archsmith.create_model("examples/digits.arch", weights="digits_ddp.pt")` loads. Needs scikit-learn
(installed by ./test.sh) for the digits.
"""
import argparse
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import archsmith

SPEC = str(Path(__file__).with_name("digits.arch"))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="the global batch, split among the processes")
    parser.add_argument("--out", default="digits_ddp.pt")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")  # rank and world size come from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the processes share the cores

    torch.manual_seed(0)  # DDP copies rank 0's initial weights to every process anyway
    model = archsmith.create_model(SPEC)
    if cuda:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = DistributedDataParallel(model.to(device), device_ids=[device] if cuda else None)

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8 in [0, 1]
    data = TensorDataset(images, torch.tensor(digits.target))
    sampler = DistributedSampler(data, shuffle=True, seed=0)  # each process its own part of each epoch
    loader = DataLoader(data, batch_size=args.batch // world, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    started = time.perf_counter()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients of all processes here
            optimizer.step()
        total = torch.tensor([loss.item()], device=device)
        dist.all_reduce(total)
        if rank == 0:
            print(f"epoch {epoch + 1}/{args.epochs}: loss {total.item() / world:.3f}, "
                  f"{time.perf_counter() - started:.1f} s, {world} processes")

    if rank == 0:  # SyncBatchNorm has BatchNorm2d's keys: the checkpoint loads into the generated class
        torch.save(model.module.state_dict(), args.out)
        print(f"saved {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
