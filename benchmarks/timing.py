"""Measurement shared by the benchmarks: medians of repeated runs, alternating a reference with ours,
one training step, and the peak memory of a step in a fresh process."""
import json
import statistics
import subprocess
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


def seconds(run):
    """Wall seconds of one call of `run()`."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def alternate(measure_reference, measure_ours, runs):
    """Medians of `runs` measurements of each, taken reference, ours, reference, ours, ..., so that
    drift in a shared machine's speed hits both alike."""
    reference, ours = [], []
    for _ in range(runs):
        reference.append(measure_reference())
        ours.append(measure_ours())
    return statistics.median(reference), statistics.median(ours)


def training_step(model, optimizer, x, labels):
    """One step: forward, cross-entropy loss, backward, optimizer step, gradients cleared."""
    torch.nn.functional.cross_entropy(model(x), labels).backward()
    optimizer.step()
    optimizer.zero_grad()


def _reset_peak_rss():
    """Lower the kernel's high-water mark of this process's resident set to its current RSS (Linux
    4.0+); False where that is not allowed, and the mark keeps earlier peaks."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _rss():
    """This process's resident set and its high-water mark, in bytes. Not getrusage's ru_maxrss,
    which also keeps the mark of when any thread last exited, so that no reset lowers it."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}  # in kB


def peak_rss_rise(step, warm_up=False):
    """Run `step()` and return the process's peak resident set during it in bytes ("peak_rss") and
    how far that is above the RSS before it ("step_rss"). With `warm_up`, a first call goes before
    the one measured, and the rise is still over the RSS before that first call: memory freed by a
    step stays resident for the next, so a rise over the RSS between the two would miss it. Where the
    high-water mark cannot be reset ("reset": False), the peak may be an earlier one."""
    reset = _reset_peak_rss()
    before = _rss()["VmRSS"]
    if warm_up:
        step()
        _reset_peak_rss()
    step()
    peak = _rss()["VmHWM"]
    return {"peak_rss": peak, "step_rss": peak - before, "reset": reset}


def fresh_process(command):
    """Run `command`, a child that prints its figures as one JSON line last, and return them."""
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.splitlines()[-1])
