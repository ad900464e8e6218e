//! Measures fib(N) in decimal: `cargo run --release --example fib_speed -- [N] [RUNS]`
//! (defaults: N = 1,000,000, RUNS = 7).
//!
//! Prints one JSON line, each time the minimum over RUNS runs, in milliseconds:
//! `compute_ms` for `fib(N)` (binary), `format_ms` for `to_decimal` of the result, `total_ms`
//! for `fib_decimal(N)` (what the server does: fib(N) computed in decimal, no conversion), and
//! `baseline_total_ms` for the algorithm this crate had first (fast doubling with three
//! products per bit, then `num-bigint`'s `to_string`), kept below as a private copy. Exits
//! with status 1 if the digits differ from the baseline's, or for N = 1,000,000 from the known
//! length and first digits. Compare with `bench/python/gmp_fib.py` (GMP through gmpy2) on the
//! same machine.

use std::process::ExitCode;
use std::time::Instant;

use fib_rpc::{fib, fib_decimal, to_decimal};
use num_bigint::BigUint;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: u64| {
        args.next()
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let n = arg(1_000_000);
    let runs = arg(7).max(1);

    let (mut compute, mut format, mut total, mut baseline) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let (mut digits, mut expected) = (String::new(), String::new());
    for _ in 0..runs {
        let start = Instant::now();
        let f_n = fib(n);
        compute = compute.min(ms(start));
        let start = Instant::now();
        let text = to_decimal(&f_n);
        format = format.min(ms(start));
        let start = Instant::now();
        digits = fib_decimal(n);
        total = total.min(ms(start));
        let start = Instant::now();
        expected = old_fib(n).to_string();
        baseline = baseline.min(ms(start));
        if text != digits {
            eprintln!("to_decimal(fib({n})) differs from fib_decimal({n})");
            return ExitCode::FAILURE;
        }
    }
    if digits != expected
        || n == 1_000_000
            && (digits.len() != 208_988 || !digits.starts_with("19532821287077577316"))
    {
        eprintln!("wrong digits for fib({n})");
        return ExitCode::FAILURE;
    }
    println!(
        "{{\"n\":{n},\"digits\":{},\"compute_ms\":{compute:.3},\"format_ms\":{format:.3},\
         \"total_ms\":{total:.3},\"baseline_total_ms\":{baseline:.3},\"runs\":{runs}}}",
        digits.len()
    );
    ExitCode::SUCCESS
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// The crate's earlier fib: fast doubling on (F(k), F(k+1)), three products per bit.
fn old_fib(n: u64) -> BigUint {
    let (mut a, mut b) = (BigUint::ZERO, BigUint::from(1u8));
    for bit in (0..u64::BITS - n.leading_zeros()).rev() {
        let doubled = &a * ((&b << 1u8) - &a);
        let odd = &a * &a + &b * &b;
        (a, b) = if (n >> bit) & 1 == 1 {
            (odd.clone(), doubled + odd)
        } else {
            (doubled, odd)
        };
    }
    a
}
