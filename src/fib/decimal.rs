//! Decimal formatting of large [`BigUint`]s on two cores, for [`to_decimal`](crate::to_decimal)
//! ([`fib_decimal`](crate::fib_decimal) computes in decimal and needs no conversion).
//!
//! Divide and conquer: a number below 10^len is split as q·10^e + r with e = ⌈len/2⌉, and q and
//! r are written into the two halves of one buffer (r padded with zeros), down to pieces short
//! enough for `to_str_radix`. `num-bigint`'s own conversion has the same shape but splits at
//! powers 10^(19·2^i), which suit its Burnikel–Ziegler division (it pads divisors to a
//! power-of-two number of limbs) but leave the two halves of fib(10⁶) at 53,000 and 156,000
//! digits. Here the halves are equal, so two threads can format one each; the top split's
//! products are also split between the two threads.
//!
//! - 10^e = 5^e·2^e and the 2^e is a shift, so the divisors kept are the 30% shorter 5^e;
//! - divisions are Barrett reductions (multiplications by a reciprocal of 5^e computed once per
//!   level by Newton iteration, a [`Plan`]); for short pieces in three steps of a third of the
//!   quotient each, so the reciprocals need only a third of its bits; for long pieces in one
//!   step by transforms (see `ntt`), reusing the transforms of the level's reciprocal and
//!   5^e for all its pieces and computing the remainder modulo 2^M − 1 only.

use std::f64::consts::{LOG10_2, LOG2_10};

use num_bigint::BigUint;

use super::{ntt, parallel};

/// Pieces of at most this many digits are formatted by `to_str_radix`.
const LEAF_DIGITS: usize = 600;

/// Reciprocals of at most this many bits are computed by one `num-bigint` division, longer ones
/// by Newton iteration.
const NEWTON_MIN_BITS: u64 = 4096;

/// Extra bits carried by each Newton step, so that its result is within a few units.
const GUARD_BITS: u64 = 64;

/// Pieces of at least this many digits have their two halves formatted on two threads when
/// there are cores for it (a thread costs about 20 µs, formatting 10,000 digits about 80 µs).
///
/// Also the size from which [`to_decimal`] uses this conversion at all: on one thread it is
/// no faster than `to_string` (within 5% either way from 10⁴ to 10⁷ digits, as it spends
/// about an eighth of its time on the plan), so it only pays on two cores.
const PARALLEL_DIGITS: usize = 20_000;

/// Plans for at least this many digits compute the top reciprocal on a second thread.
const PARALLEL_PLAN_DIGITS: usize = 50_000;

/// Barrett steps per division: each finds a third of the quotient's bits, so the reciprocal
/// needs only a third of them. Measured against 1, 2 and 4: 1 and 2 spend more on
/// reciprocals, 4 more on the extra products.
const BLOCKS: u64 = 3;

/// Levels whose quotients have at least this many bits divide by transforms (see
/// [`ntt`]), in one block.
const TRANSFORM_QUOTIENT_BITS: u64 = 60_000;

/// Returns `x` in decimal, the same as `x.to_string()`.
pub(crate) fn to_decimal(x: &BigUint) -> String {
    // Below PARALLEL_DIGITS digits for sure (no float arithmetic on the path of small n).
    const SHORT_BITS: u64 = (PARALLEL_DIGITS as f64 * LOG2_10) as u64 - 4;
    if x.bits() < SHORT_BITS || parallel::cores() < 2 {
        return x.to_string();
    }
    let len = max_digits(x.bits());
    Plan::new(len, len >= PARALLEL_PLAN_DIGITS).format_unchecked(x.clone(), parallel::THREADS)
}

/// An upper bound on the decimal digits of a number of `bits` bits.
fn max_digits(bits: u64) -> usize {
    // x < 2^bits < 10^(bits·log10(2) + 1); the second +1 covers rounding.
    (bits as f64 * LOG10_2) as usize + 2
}

/// The powers of 5 and their reciprocals that format numbers below 10^`len`.
#[derive(Debug)]
struct Plan {
    len: usize,
    /// One level per halving of the digit count, top first.
    levels: Vec<Level>,
}

/// How the pieces of one depth are split.
#[derive(Debug)]
struct Level {
    /// A piece q·10^e + r is split into q and r, with r < 10^e.
    e: u64,
    /// 5^e, the odd part of the divisor 10^e.
    five: BigUint,
    /// Bits of the quotient found per Barrett step: a third of the m + e bits (m those of 5^e)
    /// of a quotient below 10^e.
    block: u64,
    /// About 2^(m+block) / 5^e: Barrett's reciprocal.
    reciprocal: BigUint,
    /// For levels whose quotients have [`TRANSFORM_QUOTIENT_BITS`] or more, the transforms
    /// that divide in one block.
    spectra: Option<Spectra>,
}

impl Plan {
    /// Computes the plan for numbers below 10^`len`; the reciprocals on two threads if
    /// `parallel`.
    fn new(len: usize, parallel: bool) -> Plan {
        let mut splits = Vec::new();
        let mut e = len;
        while e > LEAF_DIGITS {
            e = e.div_ceil(2);
            splits.push(e as u64);
        }
        // Each 5^e is the square of the next level's, over 5 when e is odd.
        let mut fives: Vec<BigUint> = Vec::with_capacity(splits.len());
        for (depth, &e) in splits.iter().enumerate().rev() {
            let five = match fives.last() {
                None => BigUint::from(5u8).pow(e as u32),
                Some(below) => {
                    let square = ntt::square(below, false);
                    if e == 2 * splits[depth + 1] {
                        square
                    } else {
                        square / 5u8
                    }
                }
            };
            fives.push(five);
        }
        fives.reverse();
        let level = |(e, five)| Level::new(e, five);
        let mut todo = splits.into_iter().zip(fives);
        let top = todo.next();
        // The top reciprocal is the largest, about as much work as all the others.
        let (top, rest) = parallel::join(
            parallel,
            || top.map(level),
            || todo.map(level).collect::<Vec<_>>(),
        );
        Plan {
            len,
            levels: top.into_iter().chain(rest).collect(),
        }
    }

    /// Returns `x` in decimal, using up to `threads` threads.
    #[cfg(test)]
    fn format(&self, x: BigUint, threads: usize) -> String {
        // The plan only works below 10^len: x < 2^bits ≤ 10^(len−1), with a digit to spare
        // for rounding.
        if x.bits() as f64 > (self.len - 1) as f64 * LOG2_10 {
            return to_decimal(&x);
        }
        self.format_unchecked(x, threads)
    }

    /// Returns `x`, known to be below 10^len, in decimal, using up to `threads` threads.
    fn format_unchecked(&self, x: BigUint, threads: usize) -> String {
        let mut out = vec![b'0'; self.len];
        self.write(x, &mut out, 0, threads);
        let first = out.iter().position(|&b| b != b'0').unwrap_or(out.len() - 1);
        out.drain(..first);
        String::from_utf8(out).expect("decimal digits are ASCII")
    }

    /// Writes `x` < 10^out.len() into `out`, right-aligned; `out` holds zeros on entry.
    fn write(&self, x: BigUint, out: &mut [u8], depth: usize, threads: usize) {
        let Some(level) = self.levels.get(depth) else {
            return leaf(&x, out);
        };
        if out.len() <= LEAF_DIGITS {
            return leaf(&x, out);
        }
        let e = level.e as usize;
        if out.len() <= e {
            // x < 10^e already (a short top piece): nothing to split at this depth.
            return self.write(x, out, depth + 1, threads);
        }
        let parallel = threads > 1 && out.len() >= PARALLEL_DIGITS;
        let (q, r) = level.div_rem(x, parallel);
        let (high, low) = out.split_at_mut(out.len() - e);
        if parallel {
            let high_threads = threads / 2;
            parallel::join(
                true,
                || self.write(r, low, depth + 1, threads - high_threads),
                || self.write(q, high, depth + 1, high_threads),
            );
        } else {
            self.write(q, high, depth + 1, 1);
            self.write(r, low, depth + 1, 1);
        }
    }
}

impl Level {
    fn new(e: u64, five: BigUint) -> Level {
        let m = five.bits();
        let q_bits = m + e;
        if q_bits < TRANSFORM_QUOTIENT_BITS {
            let block = q_bits.div_ceil(BLOCKS);
            let reciprocal = reciprocal(&five, m + block);
            return Level {
                e,
                five,
                block,
                reciprocal,
                spectra: None,
            };
        }
        // One block: a transform's cost grows about linearly, so splitting the quotient
        // saves nothing, and one block needs only one product by the reciprocal.
        let block = q_bits;
        let reciprocal = reciprocal(&five, m + block);
        let spectra = Spectra::new(&five, &reciprocal, q_bits);
        Level {
            e,
            five,
            block,
            reciprocal,
            spectra,
        }
    }

    /// Returns (x / 10^e, x % 10^e) for x < 10^(2e); the products on two threads if `parallel`.
    fn div_rem(&self, x: BigUint, parallel: bool) -> (BigUint, BigUint) {
        // x / 10^e = (x >> e) / 5^e, and the remainder's low e bits are x's.
        let y = &x >> self.e;
        let low = x - (&y << self.e);
        let (q, r) = match &self.spectra {
            Some(spectra) => self.div_rem_by_transforms(y, spectra, parallel),
            None => self.div_rem_in_blocks(y),
        };
        (q, (r << self.e) + low)
    }

    /// Returns (y / 5^e, y % 5^e) for y < 5^e · 10^e, finding the quotient `block` bits at a
    /// time, top first.
    fn div_rem_in_blocks(&self, mut y: BigUint) -> (BigUint, BigUint) {
        let d = &self.five;
        let m = d.bits();
        // The quotient is below 10^e < 2^(m+e).
        let q_bits = m + self.e;
        let mut shift = q_bits.saturating_sub(self.block);
        let mut q = BigUint::ZERO;
        loop {
            // Here y < d·2^(shift+block). Barrett: the top block + 1 bits of y / 2^shift, times
            // 2^(m+block)/d, give y / (d·2^shift) within a few units.
            let top = &y >> (shift + m - 1);
            let mut digit = (top * &self.reciprocal) >> (self.block + 1);
            let mut product = (&digit * d) << shift;
            let mut corrections = 0;
            while product > y {
                digit -= 1u8;
                product -= d << shift;
                corrections += 1;
            }
            y -= product;
            let step = d << shift;
            while y >= step {
                digit += 1u8;
                y -= &step;
                corrections += 1;
            }
            debug_assert!(corrections <= 4, "{corrections} corrections");
            q += digit << shift;
            if shift == 0 {
                break;
            }
            shift = shift.saturating_sub(self.block);
        }
        (q, y)
    }

    /// [`div_rem_in_blocks`](Self::div_rem_in_blocks) in one block, with both products by
    /// transforms: the quotient's estimate from the whole product by the reciprocal, the
    /// remainder from the product of that estimate and 5^e modulo 2^M − 1, which is all that
    /// is needed of it since the remainder is known to be small.
    fn div_rem_by_transforms(
        &self,
        y: BigUint,
        spectra: &Spectra,
        parallel: bool,
    ) -> (BigUint, BigUint) {
        let d = &self.five;
        let m = d.bits();
        // Barrett in one block: the top m + e + 1 bits of y, times 2^(2m+e)/d.
        let top = &y >> (m - 1);
        let mut q = spectra.reciprocal.mul_mod(&top, parallel) >> (self.block + 1);
        // r = y − q·d modulo 2^M − 1, where the true r is within (−2^(M−1), 2^(M−1)).
        let big_m = spectra.five.modulus_bits();
        let qd = spectra.five.mul_mod(&ntt::fold(&q, big_m), parallel);
        let ym = ntt::fold(&y, big_m);
        let residue = if ym >= qd {
            ym - qd
        } else {
            ym + &spectra.ones - qd
        };
        let mut corrections = 0;
        let mut r = if residue.bits() < big_m {
            residue
        } else {
            // At least 2^(M−1): it stands for residue − (2^M − 1) < 0, q was too large.
            let mut deficit = &spectra.ones - residue;
            loop {
                q -= 1u8;
                corrections += 1;
                if deficit <= *d {
                    break d - deficit;
                }
                deficit -= d;
            }
        };
        while r >= *d {
            r -= d;
            q += 1u8;
            corrections += 1;
        }
        debug_assert!(corrections <= 6, "{corrections} corrections");
        (q, r)
    }
}

/// What the transforms need for one level's divisions: the transforms of the reciprocal and
/// of 5^e, computed once for all the level's pieces.
#[derive(Debug)]
struct Spectra {
    reciprocal: ntt::Spectrum,
    five: ntt::Spectrum,
    /// 2^M − 1, M = `five.modulus_bits()`.
    ones: BigUint,
}

impl Spectra {
    /// For quotients of `q_bits` bits; `None` if no transform can hold the products.
    fn new(five: &BigUint, reciprocal: &BigUint, q_bits: u64) -> Option<Spectra> {
        // top < 2^(q_bits+1) and the reciprocal < 2^(q_bits+2): the product has at most
        // 2·q_bits + 3 bits, so modulo 2^M − 1 with M above that it is the product itself.
        let whole = ntt::Shape::cyclic(2 * q_bits + 4)?;
        // Remainders are below a few times 5^e: room for 2^7 times, and a sign bit.
        let low = ntt::Shape::cyclic(five.bits() + 8)?;
        Some(Spectra {
            reciprocal: ntt::Spectrum::new(reciprocal, whole),
            five: ntt::Spectrum::new(five, low),
            ones: (BigUint::from(1u8) << low.total_bits()) - 1u8,
        })
    }
}

/// Writes `x` < 10^out.len() into `out`, right-aligned; `out` holds zeros on entry.
fn leaf(x: &BigUint, out: &mut [u8]) {
    if *x == BigUint::ZERO {
        return;
    }
    let digits = x.to_str_radix(10);
    let start = out.len() - digits.len();
    out[start..].copy_from_slice(digits.as_bytes());
}

/// Returns 2^k / d to within a few units, for 0 < d ≤ 2^k.
///
/// Newton's iteration w = v + v·(1 − d·v) doubles the correct bits of an approximation v of
/// 1/d, so the top half of the result comes from the top half of d, recursively.
fn reciprocal(d: &BigUint, k: u64) -> BigUint {
    let m = d.bits();
    // 2^(k−m) < 2^k/d ≤ 2^(k−m+1): the result has p bits.
    let p = k + 1 - m;
    if m > p + 2 * GUARD_BITS {
        // Only the top bits of d matter: the rest change 2^k/d by less than one.
        let cut = m - p - GUARD_BITS;
        return reciprocal(&(d >> cut), k - cut);
    }
    if p <= NEWTON_MIN_BITS {
        return (BigUint::from(1u8) << k) / d;
    }
    // v ≈ 2^(k−shift)/d, good to about h bits (from the top bits of d).
    let h = p / 2 + GUARD_BITS;
    let shift = p - h;
    let v = reciprocal(d, k - shift);
    // 2^k/d ≈ v·2^shift + v·err/2^(k−2·shift), with err = 2^(k−shift) − d·v, small; its low
    // bits below `drop` change the correction by less than one.
    let dv = ntt::mul(d, &v, false);
    let one = BigUint::from(1u8) << (k - shift);
    let drop = (m - 1 + 2 * GUARD_BITS).saturating_sub(h + 1);
    let scale = k - 2 * shift - drop;
    if dv <= one {
        let err = (one - dv) >> drop;
        (ntt::mul(&v, &err, false) >> scale) + (v << shift)
    } else {
        let err = (dv - one) >> drop;
        let correction = ntt::mul(&v, &err, false) >> scale;
        (v << shift) - correction
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::test_numbers::random;

    /// Formats with a fresh plan, on one thread or two: the code paths `to_decimal` takes only
    /// for large numbers or on several cores.
    fn both_ways(x: &BigUint) -> String {
        let plan = Plan::new(max_digits(x.bits()), true);
        let one = plan.format(x.clone(), 1);
        let two = plan.format(x.clone(), 2);
        assert_eq!(one, two);
        one
    }

    fn check(x: &BigUint) {
        let expected = x.to_string();
        assert_eq!(to_decimal(x), expected, "{} bits", x.bits());
        assert_eq!(both_ways(x), expected, "{} bits", x.bits());
    }

    fn ten_to(k: u32) -> BigUint {
        BigUint::from(10u8).pow(k)
    }

    #[test]
    fn small_numbers() {
        for x in [0u64, 1, 9, 10, 11, 99, 100, 1_000_000_007, u64::MAX] {
            check(&BigUint::from(x));
        }
    }

    #[test]
    fn powers_of_ten_and_neighbours() {
        for k in [
            1u32, 19, 38, 599, 600, 601, 1_200, 2_467, 2_468, 5_000, 20_000, 40_001,
        ] {
            let p = ten_to(k);
            check(&(&p - 1u8));
            check(&p);
            check(&(&p + 1u8));
        }
    }

    #[test]
    fn long_runs_of_zeros_and_nines() {
        check(&(ten_to(5_000) + 7u8));
        check(&(ten_to(30_000) + ten_to(15_000) + 1u8));
        // Zeros right at the split points of the top levels.
        check(&(ten_to(20_001) + ten_to(10_000)));
        check(&(ten_to(20_001) * 3u8 - ten_to(10_001)));
        check(&((ten_to(12_345) - 1u8) * ten_to(12_345)));
    }

    #[test]
    fn random_numbers_of_many_sizes() {
        let mut sizes = vec![2_000u64, 4_097, 10_000, 30_000, 65_537, 100_000, 250_000];
        // Around the Newton threshold: reciprocals of about NEWTON_MIN_BITS bits.
        sizes.extend([9_000, 9_100, 9_200, 9_300]);
        for (seed, &bits) in sizes.iter().enumerate() {
            check(&random(bits, seed as u64));
        }
    }

    /// Numbers around every digit count where the plan gains a level, and around the leaf
    /// and parallel sizes.
    #[test]
    fn digit_counts_at_thresholds() {
        for digits in [
            LEAF_DIGITS,
            2 * LEAF_DIGITS,
            2 * LEAF_DIGITS + 1,
            4 * LEAF_DIGITS + 1,
            PARALLEL_DIGITS - 1,
            PARALLEL_DIGITS,
            2 * PARALLEL_DIGITS,
        ] {
            let bits = (digits as f64 * LOG2_10) as u64;
            for delta in [0u64, 1, 2, 3, 4] {
                check(&random(bits - delta, digits as u64 + delta));
            }
            check(&(ten_to(digits as u32) - 1u8));
        }
    }

    #[test]
    fn reciprocals_are_close() {
        for (bits, k) in [
            (5_000u64, 12_000u64),
            (20_000, 50_000),
            (40_000, 40_001),
            (40_000, 55_000),
        ] {
            let d = random(bits, k);
            let v = reciprocal(&d, k);
            let exact = (BigUint::from(1u8) << k) / &d;
            let diff = if v > exact { &v - &exact } else { &exact - &v };
            assert!(diff <= BigUint::from(2u8), "off by {diff} for {bits} bits");
        }
    }

    /// A plan made for more digits than the number has still gives no leading zeros, and one
    /// made for too few is not used.
    #[test]
    fn plans_of_other_lengths() {
        let x = random(50_000, 7);
        let expected = x.to_string();
        assert_eq!(
            Plan::new(expected.len() + 3_000, false).format(x.clone(), 2),
            expected
        );
        assert_eq!(
            Plan::new(expected.len() - 10, false).format(x.clone(), 2),
            expected
        );
    }
}
