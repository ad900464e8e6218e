//! Exact Fibonacci numbers of any size, by fast doubling with two squarings per bit.
//!
//! The bits of `n` are walked from the top, keeping the pair (F(k), F(k−1)) and using
//!
//! ```text
//! F(2k−1) = F(k)² + F(k−1)²
//! F(2k+1) = 4·F(k)² − F(k−1)² + 2·(−1)ᵏ
//! F(2k)   = F(2k+1) − F(2k−1)
//! ```
//!
//! so each bit costs two squarings (`num-bigint` squares no faster than it multiplies, so the
//! count of products is what matters); the last bit, where only F(n) is wanted, costs one
//! product:
//!
//! ```text
//! F(2k)   = F(k) · (F(k) + 2·F(k−1))
//! F(2k+1) = (2·F(k) + F(k−1)) · (2·F(k) − F(k−1)) + 2·(−1)ᵏ
//! ```
//!
//! On more than one core, the two squarings of a step run on two threads once the numbers are
//! large, and so do the two halves of the last product. The result never overflows: it is a
//! [`BigUint`]. [`fib_decimal`] also formats it, with a faster decimal conversion than
//! `to_string` for large results.

use num_bigint::BigUint;

use super::base10::Decimal;
use super::{decimal, ntt, parallel};

/// From this many bits on, the two squarings of a doubling step run on two threads: each then
/// takes about 55 µs or more, a thread about 20 µs. Squarings that long come in fib(n) from
/// n ≈ 189,000 (the last step squares numbers of a quarter of fib(n)'s bits).
const PARALLEL_BITS: u64 = 1 << 15;

/// Returns the `n`th Fibonacci number (`fib(0) = 0`, `fib(1) = 1`), exactly.
///
/// Time grows a little faster than the size of the result (about 0.694·n bits); fib(10⁶), a
/// 208,988-digit number, takes a few milliseconds.
///
/// ```
/// use fib_rpc::fib;
/// assert_eq!(fib(10).to_string(), "55");
/// assert_eq!(fib(100).to_string(), "354224848179261915075");
/// ```
pub fn fib(n: u64) -> BigUint {
    fib_on(n, true)
}

/// log10 of the golden ratio: fib(n) < φ^n has at most n·LOG10_PHI + 1 digits.
const LOG10_PHI: f64 = 0.208_987_640_249_978_73;

/// Returns the `n`th Fibonacci number in decimal: the same as `fib(n).to_string()`, faster.
///
/// For large `n`, converting fib(n) from binary to decimal would be the slow part
/// (`to_string` of fib(10⁶) takes several times as long as computing it), so from
/// n = 20,000 on this function computes in decimal: the same doubling steps as [`fib`], on
/// numbers in base 10^7 (base 10^6 beyond n ≈ 3 million), whose limbs are the digits to
/// print. On two or more cores the large products run on two threads.
///
/// ```
/// use fib_rpc::{fib, fib_decimal};
/// assert_eq!(fib_decimal(10), "55");
/// assert_eq!(fib_decimal(100), "354224848179261915075");
/// assert_eq!(fib_decimal(60_000), fib(60_000).to_string());
/// ```
pub fn fib_decimal(n: u64) -> String {
    String::from_utf8(fib_ascii(n)).expect("decimal digits are ASCII")
}

/// From this `n` on, [`fib_decimal`] computes in base 10^D ([`Decimal`]); below, fib(n) has
/// fewer than 4,200 digits and `to_string` of the binary result is as fast.
const DECIMAL_MIN_N: u64 = 20_000;

/// [`fib_in_decimal`] starts from (F(k), F(k−1)) computed in binary and converted, with k at
/// least this: about 420 digits, where products by transforms start to pay.
const DECIMAL_START_K: u64 = 2_000;

/// From this many digits on, the two squarings of a doubling step in base 10^D run on two
/// threads, and so do the transforms of the last product.
const DECIMAL_PARALLEL_DIGITS: usize = 9_800;

/// [`fib_decimal`]'s digits as bytes, ready to be a reply body.
pub(crate) fn fib_ascii(n: u64) -> Vec<u8> {
    if n >= DECIMAL_MIN_N {
        let decimal = match digits_per_limb(n) {
            7 => fib_in_decimal::<7>(n),
            6 => fib_in_decimal::<6>(n),
            _ => fib_in_decimal::<5>(n),
        };
        if let Some(digits) = decimal {
            return digits;
        }
    }
    decimal::to_decimal(&fib(n)).into_bytes()
}

/// The most digits per limb (7, 6 or 5) with which [`fib_in_decimal`] computes fib(`n`):
/// those that keep its longest product exact. The last step's factors are below F(k+3),
/// k = n/2, so they have at most (k+3)·LOG10_PHI + 1 digits.
fn digits_per_limb(n: u64) -> u32 {
    let factor_digits = ((n / 2 + 3) as f64 * LOG10_PHI) as usize + 1;
    if factor_digits.div_ceil(7) <= Decimal::<7>::max_product_limbs() {
        7
    } else if factor_digits.div_ceil(6) <= Decimal::<6>::max_product_limbs() {
        6
    } else {
        5
    }
}

/// fib(`n`) in ASCII decimal, computed in base 10^`DIGITS`: the same doubling steps as
/// [`fib_pair`] and [`last_step`], from (F(k), F(k−1)) for a small k. `None` if a product
/// is too long for the transform to be exact in this base.
fn fib_in_decimal<const DIGITS: u32>(n: u64) -> Option<Vec<u8>> {
    let k = n >> 1;
    let mut steps = 0;
    while k >> (steps + 1) >= DECIMAL_START_K {
        steps += 1;
    }
    let (f, f_prev) = fib_pair(k >> steps, false);
    let (mut f, mut f_prev): (Decimal<DIGITS>, Decimal<DIGITS>) =
        (Decimal::from_biguint(&f), Decimal::from_biguint(&f_prev));
    let two_cores = parallel::cores() > 1;
    let parallel =
        |f: &Decimal<DIGITS>| two_cores && f.len() * DIGITS as usize >= DECIMAL_PARALLEL_DIGITS;
    for bit in (0..steps).rev() {
        // j = k >> (bit + 1); (F(j), F(j−1)) -> (F(2j), F(2j−1)) or (F(2j+1), F(2j)).
        let j_odd = (k >> (bit + 1)) & 1 == 1;
        let (square, square_prev) =
            parallel::join(parallel(&f), || f.square(false), || f_prev.square(false));
        let (square, square_prev) = (square?, square_prev?);
        let f_2j_minus_1 = square.add(&square_prev);
        let mut f_2j_plus_1 = square.mul_small(4).sub(&square_prev);
        if j_odd {
            f_2j_plus_1.sub_small(2);
        } else {
            f_2j_plus_1.add_small(2);
        }
        let f_2j = f_2j_plus_1.sub(&f_2j_minus_1);
        (f, f_prev) = if (k >> bit) & 1 == 1 {
            (f_2j_plus_1, f_2j)
        } else {
            (f_2j, f_2j_minus_1)
        };
    }
    let parallel = parallel(&f);
    let f_n = if n & 1 == 0 {
        // F(2k) = F(k)·(F(k) + 2F(k−1))
        f.mul(&f.add(&f_prev.mul_small(2)), parallel)?
    } else {
        // F(2k+1) = (2F(k) + F(k−1))(2F(k) − F(k−1)) + 2(−1)ᵏ
        let twice = f.mul_small(2);
        let mut product = twice.add(&f_prev).mul(&twice.sub(&f_prev), parallel)?;
        if k & 1 == 0 {
            product.add_small(2);
        } else {
            product.sub_small(2);
        }
        product
    };
    Some(f_n.to_ascii())
}

/// Returns `x` in decimal: the same as `x.to_string()`, faster from 20,000 digits on when
/// there are two cores (1.7 times for fib(10⁶)), as the two halves of the number are then
/// formatted on two threads. Otherwise it is `to_string`.
///
/// ```
/// use fib_rpc::{fib, to_decimal};
/// let x = fib(100_000) * 1_000_000_007u64;
/// assert_eq!(to_decimal(&x), x.to_string());
/// ```
pub fn to_decimal(x: &BigUint) -> String {
    decimal::to_decimal(x)
}

/// fib(`n`), using a second thread for large products only if `threads` and there is a
/// second core.
fn fib_on(n: u64, threads: bool) -> BigUint {
    if n < 2 {
        return BigUint::from(n);
    }
    let (f_k, f_k_minus_1) = fib_pair(n >> 1, threads);
    let parallel = threads && f_k.bits() >= PARALLEL_BITS && parallel::cores() > 1;
    last_step(n, f_k, f_k_minus_1, parallel)
}

/// Returns F(n) from (F(k), F(k−1)), k = n >> 1 ≥ 1: one product, on two threads if
/// `parallel`.
fn last_step(n: u64, f_k: BigUint, f_k_minus_1: BigUint, parallel: bool) -> BigUint {
    let k = n >> 1;
    if n & 1 == 0 {
        // F(2k) = F(k)·(F(k) + 2F(k−1))
        let lucas = &f_k + (f_k_minus_1 << 1u8);
        ntt::mul(&f_k, &lucas, parallel)
    } else {
        // F(2k+1) = (2F(k) + F(k−1))(2F(k) − F(k−1)) + 2(−1)ᵏ; 2F(k) ≥ F(k−1) as k ≥ 1.
        let twice = f_k << 1u8;
        let product = ntt::mul(&(&twice + &f_k_minus_1), &(twice - f_k_minus_1), parallel);
        if k & 1 == 0 {
            product + 2u8
        } else {
            product - 2u8
        }
    }
}

/// Returns (F(k), F(k−1)) for `k` ≥ 1.
fn fib_pair(k: u64, threads: bool) -> (BigUint, BigUint) {
    debug_assert!(k >= 1);
    let mut f = BigUint::from(1u8); // F(j), starting at j = 1, the top bit of k
    let mut f_prev = BigUint::ZERO; // F(j−1)
    let top = u64::BITS - 1 - k.leading_zeros();
    for bit in (0..top).rev() {
        // j = k >> (bit + 1); (F(j), F(j−1)) -> (F(2j), F(2j−1)) or (F(2j+1), F(2j)).
        let j_odd = (k >> (bit + 1)) & 1 == 1;
        let parallel = threads && f.bits() >= PARALLEL_BITS && parallel::cores() > 1;
        let (square, square_prev) = parallel::join(
            parallel,
            || ntt::square(&f, false),
            || ntt::square(&f_prev, false),
        );
        let f_2j_minus_1 = &square + &square_prev;
        // 4F(j)² − F(j−1)² ≥ 3F(j)² ≥ 3, so the −2 for odd j cannot underflow.
        let mut f_2j_plus_1 = (square << 2u8) - square_prev;
        if j_odd {
            f_2j_plus_1 -= 2u8;
        } else {
            f_2j_plus_1 += 2u8;
        }
        let f_2j = &f_2j_plus_1 - &f_2j_minus_1;
        (f, f_prev) = if (k >> bit) & 1 == 1 {
            (f_2j_plus_1, f_2j)
        } else {
            (f_2j, f_2j_minus_1)
        };
    }
    (f, f_prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_n_match_iteration() {
        let (mut a, mut b) = (BigUint::ZERO, BigUint::from(1u8));
        for n in 0..=500u64 {
            assert_eq!(fib(n), a, "fib({n})");
            let next = &a + &b;
            a = std::mem::replace(&mut b, next);
        }
    }

    #[test]
    fn fib_1000_exactly() {
        assert_eq!(
            fib(1000).to_string(),
            "43466557686937456435688527675040625802564660517371780402481729089536555417949051\
             89040387984007925516929592259308032263477520968962323987332247116164299644090653\
             3187938298969649928516003704476137795166849228875"
        );
    }

    #[test]
    fn fits_u64_up_to_fib_93() {
        assert_eq!(fib(93), BigUint::from(12_200_160_415_121_876_738u64));
        assert!(fib(94) > BigUint::from(u64::MAX));
    }

    /// Cassini: F(n−1)·F(n+1) − F(n)² = (−1)ⁿ, checked on numbers far past any fixed width.
    #[test]
    fn cassini_identity_on_large_n() {
        for n in [1_000u64, 4_097, 65_536, 100_001] {
            let (f_n, f_prev) = fib_pair(n, true);
            let f_next = &f_n + &f_prev;
            let lhs = &f_prev * &f_next;
            let square = &f_n * &f_n;
            if n % 2 == 0 {
                assert_eq!(lhs, square + 1u8, "n = {n}");
            } else {
                assert_eq!(lhs + 1u8, square, "n = {n}");
            }
        }
    }

    /// Addition law: F(m+n) = F(m)·F(n+1) + F(m−1)·F(n), tying separately computed values.
    #[test]
    fn addition_law_on_large_n() {
        for (m, n) in [(30_000u64, 20_011u64), (77_777, 3), (123_456, 54_321)] {
            let f_m_prev = fib(m - 1);
            let (f_n, f_n_prev) = fib_pair(n, true);
            let f_n_next = &f_n + f_n_prev;
            assert_eq!(
                fib(m + n),
                fib(m) * f_n_next + f_m_prev * f_n,
                "m={m} n={n}"
            );
        }
    }

    /// Around the sizes where the last step's product runs on two threads (F(k) of
    /// PARALLEL_BITS bits: n ≈ 94,400) and where the squarings do too (n ≈ 188,800), for n
    /// of each residue mod 4 (both parities of n and of k = n/2): the threaded and one-thread
    /// paths agree, F(n) = F(n−1) + F(n−2), and the decimal is `to_string`'s.
    #[test]
    fn across_parallel_thresholds() {
        for middle in [94_400u64, 188_800] {
            for n in middle - 2..=middle + 2 {
                let f_n = fib(n);
                assert_eq!(f_n, fib_on(n, false), "n = {n}");
                assert_eq!(f_n, fib(n - 1) + fib(n - 2), "n = {n}");
                assert_eq!(fib_decimal(n), f_n.to_string(), "n = {n}");
            }
        }
    }

    #[test]
    fn small_decimals() {
        for n in 0..=300u64 {
            assert_eq!(fib_decimal(n), fib(n).to_string(), "n = {n}");
        }
    }

    /// The computation in base 10^D against `num-bigint`'s own conversion of the binary
    /// one, around its thresholds, each for several n (both parities of n and of k = n/2):
    /// where it takes over, where the binary start (F(k0), F(k0−1)) has k0 at either end of
    /// [DECIMAL_START_K, 2·DECIMAL_START_K), and where its products go to two threads (in
    /// base 10^7, which `fib_decimal` uses there; 10^6 and 10^5 once for each).
    #[test]
    fn decimal_path_matches_num_bigint() {
        let k_first_parallel = 46_861; // F(k) has 1,400 limbs of 7 digits from here on
        let middles = [
            DECIMAL_MIN_N,
            2 * (DECIMAL_START_K << 4),             // k0 = DECIMAL_START_K
            2 * (((2 * DECIMAL_START_K) << 4) - 1), // k0 = 2·DECIMAL_START_K − 1
            2 * k_first_parallel,
        ];
        for middle in middles {
            let expected = fib(middle).to_string();
            assert_eq!(fib_in_decimal::<6>(middle).unwrap(), expected.as_bytes());
            assert_eq!(fib_in_decimal::<5>(middle).unwrap(), expected.as_bytes());
            for n in middle - 2..=middle + 3 {
                let digits = fib_in_decimal::<7>(n).expect("short enough");
                assert_eq!(digits, fib(n).to_string().as_bytes(), "n = {n}");
            }
        }
        assert!(fib(k_first_parallel).to_string().len() > 7 * 1_399);
        assert!(fib(k_first_parallel - 1).to_string().len() <= 7 * 1_399);
    }

    /// Base 10^7 up to n = 3,089,287, where the last product's factors reach 46,116 limbs;
    /// then 10^6 up to 264,797,893; then 10^5.
    #[test]
    fn digits_per_limb_by_size() {
        assert_eq!(digits_per_limb(DECIMAL_MIN_N), 7);
        assert_eq!(digits_per_limb(3_089_287), 7);
        assert_eq!(digits_per_limb(3_089_288), 6);
        assert_eq!(digits_per_limb(264_797_893), 6);
        assert_eq!(digits_per_limb(264_797_894), 5);
        assert_eq!(digits_per_limb(u64::MAX / 4), 5);
    }

    /// The largest n computed in base 10^7 is exact, and so is the next, in base 10^6.
    /// Slow without optimizations.
    #[test]
    #[ignore = "fib(3,089,288): run with --release"]
    fn decimal_path_at_the_base_change() {
        for (n, digits) in [(3_089_287, 7), (3_089_288, 6)] {
            assert_eq!(digits_per_limb(n), digits);
            let expected = to_decimal(&fib(n));
            assert_eq!(fib_ascii(n), expected.as_bytes(), "n = {n}");
        }
    }

    #[test]
    fn size_of_a_huge_result() {
        // fib(10^6) has 208,988 decimal digits and starts 19532821287077577316.
        let text = fib(1_000_000).to_string();
        assert_eq!(text.len(), 208_988);
        assert!(text.starts_with("19532821287077577316"), "{}", &text[..20]);
        assert_eq!(fib_decimal(1_000_000), text);
    }
}
