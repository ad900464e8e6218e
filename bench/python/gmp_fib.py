#!/usr/bin/env python3
"""GMP's time for fib(N) in decimal, to compare with `examples/fib_speed.rs`.

Usage: gmp_fib.py [N] [RUNS]   (defaults: N = 1000000, RUNS = 7)

Needs gmpy2 (`python3 -m venv /tmp/gmpvenv && /tmp/gmpvenv/bin/pip install gmpy2`, then run
it with /tmp/gmpvenv/bin/python). Prints one JSON line with the same keys as fib_speed
(no baseline): compute_ms for gmpy2.fib(N) (GMP's mpz_fib_ui), format_ms for str() of it
(mpz_get_str), total_ms for both in one run; each the minimum over RUNS runs.
"""

import json
import sys
import time

import gmpy2


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = max(1, int(sys.argv[2])) if len(sys.argv) > 2 else 7
    compute = format_ = total = float("inf")
    digits = ""
    for _ in range(runs):
        start = time.perf_counter()
        f_n = gmpy2.fib(n)
        computed = time.perf_counter()
        digits = str(f_n)
        done = time.perf_counter()
        compute = min(compute, computed - start)
        format_ = min(format_, done - computed)
        total = min(total, done - start)
    print(json.dumps({
        "n": n,
        "digits": len(digits),
        "compute_ms": round(compute * 1e3, 3),
        "format_ms": round(format_ * 1e3, 3),
        "total_ms": round(total * 1e3, 3),
        "runs": runs,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
