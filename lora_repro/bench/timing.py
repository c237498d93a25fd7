"""Round-robin timing and paired statistics: every benchmark of lora_repro.bench times its variants this way.

Every round runs every variant once, rotating the order, so machine noise falls on all of them alike. Ratios are the
median over rounds of the ratio within a round (two variants timed in the same round share its noise), with a 95%
confidence interval for that median (order statistics, no assumption on the noise's distribution). Times are wall
clock (synchronized) on CUDA and process CPU time on CPU: on a shared machine, wall time also counts the time other
processes held the core.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> Callable[[], float]:
    """CPU: this process's CPU time (with one thread, the work it did, not the time other workers took the core);
    CUDA: wall time after a synchronize."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def time_round_robin(fns: dict[str, Callable[[], None]], warmup: int, trials: int, device: torch.device
                     ) -> dict[str, list[float]]:
    """Seconds per call of each fn: `warmup` untimed rounds, then `trials` rounds, each running every fn once in an
    order rotated by one per round (so no variant always runs first, after the same neighbour)."""
    names, times, now = list(fns), {n: [] for n in fns}, clock(device)
    for i in range(warmup + trials):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            sync(device)
            start = now()
            fns[name]()
            sync(device)
            if i >= warmup:
                times[name].append(now() - start)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]: two variants timed in the same round share that round's machine noise."""
    return statistics.median(x / y for x, y in zip(a, b))


def median_ci(xs: list[float], level: float = 0.95) -> list[float]:
    """[x_(j), x_(n+1-j)], the narrowest order-statistic interval that covers the median with probability >= level
    (the sign test's: P(Binomial(n, 1/2) <= j - 1) <= (1 - level) / 2); the whole range when n is too small for it."""
    xs, n = sorted(xs), len(xs)
    j, tail = 1, 0.5 ** n  # tail = P(Binomial(n, 1/2) <= j - 1)
    while j < n and 2 * (tail + math.comb(n, j) * 0.5 ** n) <= 1 - level:
        tail += math.comb(n, j) * 0.5 ** n
        j += 1
    return [xs[j - 1], xs[n - j]] if 2 * tail <= 1 - level else [xs[0], xs[-1]]


def paired_ci(a: list[float], b: list[float]) -> list[float]:
    return median_ci([x / y for x, y in zip(a, b)])


def iqr(xs: list[float]) -> float:
    if len(xs) < 4:
        return 0.0
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]

