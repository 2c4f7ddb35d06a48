#!/usr/bin/env python
"""A long fuzzing run of the compiler: mutated specs, each compiled once, classified, counted.

    python scripts/soak.py --cases 100000 --seed 1 --jobs 2        # the soak; exit status 1 on a failure
    python scripts/soak.py --seed 1 --case 4711                     # replay one case, print its text
    python scripts/soak.py --cases 20000 --seed 1 --minimize        # and shrink one case per failure

Case i of seed s is the same on any machine (tests/fuzzing.py `make_case`), so a failure is replayed
by its number. Outcomes: ok, located (a SpecError at path:line:column), unlocated (a SpecError without
a place; `model=` naming a model the text lacks is allowed), crash (any other exception, or a worker
killed by a signal), slow (past max(1 s, 3x the unmutated source's compile), confirmed by a second
run, or still running at --timeout). Every case neither ok nor located is written to --out as an
.arch file whose header comment gives its classification, traceback and replay command; --out also
gets summary.json. Each worker limits its memory (--mem-limit-gb), so a runaway case fails alone.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import fuzzing  # noqa: E402

CHUNK = 25


def _limit_memory(gigabytes: float):
    if gigabytes:
        import resource
        limit = int(gigabytes * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker(conn, current, started, seed, mutators, mem_limit, timeout):
    _limit_memory(mem_limit)
    fuzzing.HARD_TIMEOUT = timeout
    sys.setrecursionlimit(sys.getrecursionlimit())  # as the compiler finds it: unchanged
    while True:
        chunk = conn.recv()
        if chunk is None:
            return
        for index in chunk:
            current.value, started.value = index, time.time()
            case = fuzzing.make_case(seed, index, mutators)
            try:
                outcome = fuzzing.run(case)
            except MemoryError as e:  # raised outside run_case's own handling
                outcome = fuzzing.Outcome("crash", 0.0, "MemoryError", str(e))
            current.value = -1
            conn.send((index, outcome))
        conn.send(None)


class Worker:
    def __init__(self, ctx, args, mutators):
        self.ctx, self.args, self.mutators = ctx, args, mutators
        self.chunk: list = []
        self.start()

    def start(self):
        self.conn, child = self.ctx.Pipe()
        self.current = self.ctx.Value("q", -1)
        self.started = self.ctx.Value("d", 0.0)
        self.proc = self.ctx.Process(target=_worker, args=(child, self.current, self.started, self.args.seed,
                                                           self.mutators, self.args.mem_limit_gb, self.args.timeout),
                                     daemon=True)
        self.proc.start()
        child.close()
        self.chunk = []

    def send(self, chunk):
        self.chunk = list(chunk)
        self.conn.send(chunk)

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


def soak(args) -> int:
    mutators = args.mutators.split(",") if args.mutators else None
    fuzzing.check_import()
    fuzzing.sources()  # read once, before the workers fork
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("fork")
    indexes = list(range(args.start, args.start + args.cases))
    pending = collections.deque(indexes[i:i + CHUNK] for i in range(0, len(indexes), CHUNK))
    workers = [Worker(ctx, args, mutators) for _ in range(args.jobs)]
    busy: dict = {}  # worker -> True while it holds a chunk
    counts = collections.Counter()
    failures: dict = {}  # signature -> [(index, outcome)]
    done = 0
    t0 = last = time.time()

    def record(index, outcome):
        nonlocal done
        done += 1
        kind = outcome.kind + (" (allowed)" if outcome.kind == "unlocated" and outcome.allowed else "")
        counts[kind] += 1
        if outcome.kind not in ("ok", "located"):
            failures.setdefault(outcome.signature, []).append((index, outcome))
            _write_case(out, fuzzing.make_case(args.seed, index, mutators), outcome)

    try:
        while pending or busy:
            for w in workers:
                if w not in busy and pending:
                    w.send(pending.popleft())
                    busy[w] = True
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
            for w in list(busy):
                if w.conn in ready:
                    try:
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg is None:
                                del busy[w]
                                break
                            index, outcome = msg
                            w.chunk.remove(index)
                            record(index, outcome)
                    except (EOFError, OSError):
                        pass
                if w in busy and (not w.proc.is_alive() or time.time() - w.started.value > args.timeout + 30
                                  and w.current.value >= 0):
                    try:  # what it sent before it died
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg is not None:
                                w.chunk.remove(msg[0])
                                record(*msg)
                    except (EOFError, OSError):
                        pass
                    index = w.current.value
                    hung = w.proc.is_alive()
                    w.kill()
                    if index >= 0 and index in w.chunk:
                        how = (f"hung: still running {args.timeout + 30:g} s after it started (not stopped by SIGALRM)"
                               if hung else f"worker died with exit code {w.proc.exitcode}")
                        outcome = fuzzing.Outcome("slow" if hung else "crash", 0.0, "hung" if hung else "WorkerDied",
                                                  how, None, detail=how)
                        w.chunk.remove(index)
                        record(index, outcome)
                    if w.chunk:
                        pending.appendleft(w.chunk)
                    del busy[w]
                    w.start()
            now = time.time()
            if now - last >= args.progress:
                last = now
                print(f"[{done}/{args.cases}] {done / (now - t0):.1f} cases/s  " + _counts(counts), flush=True)
    finally:
        for w in workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
            w.proc.join(timeout=5)
            w.kill()
    elapsed = time.time() - t0
    return _summary(args, out, counts, failures, elapsed, mutators)


def _counts(counts) -> str:
    order = ["ok", "located", "unlocated (allowed)", "unlocated", "crash", "slow"]
    return "  ".join(f"{k}={counts[k]}" for k in order if counts[k])


def _summary(args, out, counts, failures, elapsed, mutators) -> int:
    total = sum(counts.values())
    print(f"\nseed {args.seed}, cases {args.start}..{args.start + total - 1}: {total} cases in {elapsed:.0f} s, "
          f"{total / max(elapsed, 1e-9):.1f} cases/s, {args.jobs} job(s)")
    for kind in ["ok", "located", "unlocated (allowed)", "unlocated", "crash", "slow"]:
        print(f"  {kind:20} {counts[kind]}")
    bad = {sig: items for sig, items in failures.items() if items[0][1].failure}
    print(f"{sum(len(v) for v in bad.values())} failing cases, {len(bad)} distinct failures"
          + (f", written to {out}/" if bad else ""))
    minimized = {}
    for sig, items in sorted(bad.items(), key=lambda kv: -len(kv[1])):
        cases = [(fuzzing.make_case(args.seed, i, mutators), o) for i, o in items]
        case, outcome = min(cases, key=lambda co: len(co[0].text))
        print(f"  {len(items):6} x {sig}\n         {outcome.message[:160]}\n         e.g. {case.replay}"
              f"  ({case.source}, {case.ops}, {case.mode})")
        if args.minimize:
            text = fuzzing.minimize_case(case, outcome, budget=args.minimize_budget)
            name = f"min-{len(minimized):03d}.arch"
            _write_case(out, case, outcome, text=text, name=name)
            minimized[sig] = {"file": name, "text": text if isinstance(text, str) else repr(text)}
            shown = text if isinstance(text, str) and len(text) < 600 else f"<{len(text)} chars>"
            print("         minimized:\n" + "\n".join("           | " + line for line in str(shown).split("\n")))
    summary = {
        "seed": args.seed, "start": args.start, "cases": total, "seconds": round(elapsed, 1),
        "cases_per_second": round(total / max(elapsed, 1e-9), 1), "jobs": args.jobs, "mutators": mutators,
        "counts": dict(counts),
        "failures": [{"signature": sig, "count": len(items), "message": items[0][1].message,
                      "cases": [i for i, _ in items[:50]], "minimized": minimized.get(sig)}
                     for sig, items in sorted(bad.items(), key=lambda kv: -len(kv[1]))],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=True))
    return 1 if bad else 0


def _escape(line: str) -> str:
    return "".join(c if c.isprintable() or c == "\t" else ascii(c)[1:-1] for c in line)


def _write_case(out: Path, case, outcome, text=None, name=None):
    text = case.text if text is None else text
    header = [f"# archsmith fuzz case {case.index} of seed {case.seed}: {outcome.kind}",
              f"# {outcome.error} at {outcome.frame}: {_escape(outcome.message[:300])}",
              f"# detail: {_escape(outcome.detail)}" if outcome.detail else None,
              f"# source {case.source}, mutations {case.ops}, mode {case.mode}, model {case.model}, "
              f"{outcome.seconds:.2f} s",
              f"# replay: {case.replay}"]
    if outcome.traceback:
        header.append("# traceback:")
        header += ["#   " + _escape(line) for line in outcome.traceback.rstrip("\n").split("\n")[-40:]]
    header.append("# ---- the case's text follows (its line 1 is the next line) ----")
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    name = name or f"{case.index:07d}-{outcome.kind}.arch"
    (out / name).write_bytes("\n".join(h for h in header if h is not None).encode("utf-8") + b"\n" + data)


def replay(args) -> int:
    mutators = args.mutators.split(",") if args.mutators else None
    fuzzing.check_import()
    fuzzing.HARD_TIMEOUT = args.timeout
    case = fuzzing.make_case(args.seed, args.case, mutators)
    outcome = fuzzing.run(case)
    text = case.text
    print(f"case {case.index} of seed {case.seed}: {case.source}, mutations {case.ops}, mode {case.mode}, "
          f"model {case.model}")
    print(f"text ({len(text)} chars):")
    print(repr(text) if len(text) < 4000 else repr(text[:4000]) + " ...")
    print(f"\noutcome: {outcome.kind} in {outcome.seconds:.2f} s: {outcome.error} at {outcome.frame}: {outcome.message}")
    if outcome.detail:
        print(f"detail: {outcome.detail}")
    if outcome.traceback:
        print(outcome.traceback)
    if args.minimize and outcome.failure:
        small = fuzzing.minimize_case(case, outcome, budget=args.minimize_budget)
        print("minimized:\n" + (small if isinstance(small, str) else repr(small)))
    return 1 if outcome.failure else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="the first case's index")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="soak-failures")
    p.add_argument("--mutators", help="comma-separated names of tests/fuzzing.py MUTATORS to restrict to")
    p.add_argument("--case", type=int, help="replay this one case")
    p.add_argument("--minimize", action="store_true", help="shrink one case of each distinct failure")
    p.add_argument("--minimize-budget", type=float, default=60.0, help="seconds per minimized case")
    p.add_argument("--timeout", type=float, default=fuzzing.HARD_TIMEOUT, help="hard limit of one case, s")
    p.add_argument("--mem-limit-gb", type=float, default=4.0, help="address space of each worker (0: none)")
    p.add_argument("--progress", type=float, default=15.0, help="seconds between progress lines")
    args = p.parse_args(argv)
    if args.case is not None:
        return replay(args)
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
