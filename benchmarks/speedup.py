"""Stability of `check.speedup` on CPU: a deliberately slow softmax against a fast one.

fast: `torch.softmax` (one fused, vectorized pass). slow: the same softmax unfused and in float64
(cast, max, subtract, exp, sum, divide, cast back: seven passes and six temporaries). Both run on
one intra-op thread by default, as the examples' CPU timings do: a thread pool's times on a shared
machine swing with the other cores' load. `speedup(fast, slow)` is taken several times, each a
fresh measurement (warm-up, alternating calls, rotated input sets, caches flushed between calls);
the ratios, their median and their spread (max / min, and the coefficient of variation) are
printed. Target: every ratio above 1 (the expected order) and a spread under 1.5x.
Usage: python benchmarks/speedup.py [--runs 7] [--repeats 20] [--shape 256 1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys

import torch

from pytest_upskill.check import speedup


def fast(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def slow(x: torch.Tensor) -> torch.Tensor:
    wide = x.double()
    shifted = wide - wide.max(dim=-1, keepdim=True).values
    exps = shifted.exp()
    return (exps / exps.sum(dim=-1, keepdim=True)).float()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator() -> None:
    """glibc's adaptive mmap threshold gave the slow function's 2 MB temporaries fresh pages on
    some runs and reused heap on others (1.2 ms against 5 ms a call, run to run): fixed
    thresholds keep the allocator's mood out of the ratio."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=2, default=(256, 1024))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steady_allocator()
    shape = tuple(args.shape)

    def make_inputs(shape: tuple[int, int]) -> tuple[torch.Tensor]:
        return (torch.randn(*shape) * 4,)

    (x,) = make_inputs(shape)
    torch.testing.assert_close(fast(x), slow(x))  # the same softmax, only slower
    ratios = []
    print(f"shape {shape}, {args.threads} thread(s), {args.repeats} timed calls each per run")
    print(f"{'run':>3}  {'fast (us)':>10}  {'slow (us)':>10}  {'speedup':>8}")
    for run in range(args.runs):
        result = speedup(fast, slow, make_inputs, shape, repeats=args.repeats)
        ratios.append(result.ratio)
        print(
            f"{run:>3}  {result.kernel_s * 1e6:>10.1f}  {result.reference_s * 1e6:>10.1f}  "
            f"{result.ratio:>7.2f}x"
        )
    median = statistics.median(ratios)
    spread = max(ratios) / min(ratios)
    variation = statistics.stdev(ratios) / statistics.mean(ratios) if len(ratios) > 1 else 0.0
    order = "fast is faster in every run" if min(ratios) > 1 else "ORDER WRONG in some run"
    print(
        f"median {median:.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x, "
        f"spread {spread:.2f}x, coefficient of variation {variation:.1%}; {order}"
    )


if __name__ == "__main__":
    main()
