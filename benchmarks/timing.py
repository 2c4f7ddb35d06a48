"""Timing shared by the benchmarks: the median of repeated runs, after a warm-up."""
import statistics
import time

import torch


def median_ms(model, x, repeat, warmup=3):
    """Median milliseconds of `model(x)` in inference mode (synchronizing a GPU around each run)."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeat):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
