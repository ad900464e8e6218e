//! Exact Fibonacci numbers of any size, by fast doubling.
//!
//! Fast doubling walks the bits of `n` from the top, keeping the pair (F(k), F(k+1)) and using
//!
//! ```text
//! F(2k)   = F(k) · (2·F(k+1) − F(k))
//! F(2k+1) = F(k)² + F(k+1)²
//! ```
//!
//! so fib(n) costs O(log n) big-number multiplications instead of the tutorial's exponential
//! recursion, and never overflows: the result is a [`BigUint`].

use num_bigint::BigUint;

/// Returns the `n`th Fibonacci number (`fib(0) = 0`, `fib(1) = 1`), exactly.
///
/// Time grows a little faster than the size of the result (about 0.694·n bits); fib(10⁶), a
/// 208,988-digit number, takes a few tens of milliseconds.
///
/// ```
/// use fib_rpc::fib::fib;
/// assert_eq!(fib(10).to_string(), "55");
/// assert_eq!(fib(100).to_string(), "354224848179261915075");
/// ```
pub fn fib(n: u64) -> BigUint {
    let (f_n, _) = fib_pair(n);
    f_n
}

/// Returns (F(n), F(n+1)).
fn fib_pair(n: u64) -> (BigUint, BigUint) {
    let mut a = BigUint::ZERO; // F(k)
    let mut b = BigUint::from(1u8); // F(k+1)
    let bits = u64::BITS - n.leading_zeros();
    for bit in (0..bits).rev() {
        // (a, b) = (F(k), F(k+1))  ->  (F(2k), F(2k+1))
        let doubled = &a * ((&b << 1u8) - &a);
        let odd = &a * &a + &b * &b;
        if (n >> bit) & 1 == 1 {
            // k -> 2k+1: (F(2k+1), F(2k+2)) with F(2k+2) = F(2k) + F(2k+1)
            b = doubled + &odd;
            a = odd;
        } else {
            a = doubled;
            b = odd;
        }
    }
    (a, b)
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
            let (f_n, f_next) = fib_pair(n);
            let f_prev = &f_next - &f_n;
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
            let (f_n, f_n_next) = fib_pair(n);
            assert_eq!(
                fib(m + n),
                fib(m) * f_n_next + f_m_prev * f_n,
                "m={m} n={n}"
            );
        }
    }

    #[test]
    fn size_of_a_huge_result() {
        // fib(10^6) has 208,988 decimal digits and starts 19532821287077577316.
        let text = fib(1_000_000).to_string();
        assert_eq!(text.len(), 208_988);
        assert!(text.starts_with("19532821287077577316"), "{}", &text[..20]);
    }
}
