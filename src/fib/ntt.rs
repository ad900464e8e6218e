//! Exact products of large numbers by a number-theoretic transform (NTT), faster than
//! `num-bigint`'s Toom-3 from about 60,000 bits on: twice as fast for a product of two
//! 347,000-bit numbers (the last product of fib(10⁶)), three times for a square, and the gap
//! grows with the size (O(n log n) against O(n^1.46)).
//!
//! A factor is cut into `b`-bit coefficients, so a product is the convolution of two
//! coefficient vectors. The convolution is computed modulo the prime p = 2^62 − 2^46 + 1 by
//! transforming both vectors (p − 1 is divisible by 2^46, so there are roots of unity of every
//! power-of-two order up to 2^46), multiplying them pointwise and transforming back. Every
//! coefficient of the product is a sum of at most `terms` products of two coefficients, and
//! `b` is chosen so that `terms · (2^b − 1)² < p`: the coefficients come back exactly, not
//! merely modulo p, and carrying them gives the product.
//!
//! Arithmetic modulo p is Montgomery's (three 64-bit multiplications per product, no division,
//! no branch on the data); the transforms are radix-2, decimation in frequency forward (natural
//! order in, bit-reversed out) and in time backward (bit-reversed in, natural out), so no
//! reordering pass is needed. Large transforms recurse on halves, which then fit the L1 cache,
//! and run on two threads when asked.

use std::sync::{Arc, Mutex};

use num_bigint::BigUint;

use super::parallel;

/// The prime modulus: 2^62 − 2^46 + 1 = 65535 · 2^46 + 1.
const P: u64 = 0x3fff_c000_0000_0001;

/// A generator of the multiplicative group modulo [`P`].
const GENERATOR: u64 = 11;

/// The largest transform is 2^MAX_LOG_LEN points (p − 1 = 65535 · 2^46).
const MAX_LOG_LEN: u32 = 46;

/// P⁻¹ modulo 2^64, by Newton's iteration (each step doubles the correct low bits).
const P_INV: u64 = {
    let mut inverse: u64 = 1;
    let mut step = 0;
    while step < 6 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(P.wrapping_mul(inverse)));
        step += 1;
    }
    inverse
};

/// R² modulo p, for R = 2^64: `mont(x, R2)` is x in Montgomery form.
const R2: u64 = {
    let r = (1u128 << 64) % P as u128;
    (r * r % P as u128) as u64
};

/// Tables of roots of unity for transforms up to 2^CACHED_LOG_LEN points are kept for later
/// products (1 MiB); larger ones, only met for results of several million digits, are built
/// for each product (a tenth of the transform's time).
const CACHED_LOG_LEN: u32 = 16;

/// Transforms of at most this many points run their stages one after the other; larger ones
/// recurse on halves, so that the deep stages run on data in the L1 cache.
const ITERATIVE_LEN: usize = 1 << 10;

/// Transforms of at least this many points run on two threads when asked (one such
/// transform takes about 100 µs, a thread about 20 µs).
const PARALLEL_LEN: usize = 1 << 13;

/// Products (and squares) whose shorter factor has fewer bits than this are left to
/// `num-bigint`: below it, Karatsuba and Toom-3 are faster than a transform.
pub(crate) const MIN_BITS: u64 = 60_000;

/// a · b / 2^64 modulo p, in [0, p), for any a < 2^64 and b < p (Montgomery's reduction).
#[inline(always)]
fn mont(a: u64, b: u64) -> u64 {
    let t = a as u128 * b as u128;
    // m·p ≡ t (mod 2^64), so t − m·p is a multiple of 2^64 and its low halves cancel exactly.
    let m = (t as u64).wrapping_mul(P_INV);
    let mp_high = ((m as u128 * P as u128) >> 64) as u64;
    let (difference, negative) = ((t >> 64) as u64).overflowing_sub(mp_high);
    if negative {
        difference.wrapping_add(P)
    } else {
        difference
    }
}

/// a + b modulo p, for a, b < p.
#[inline(always)]
fn add(a: u64, b: u64) -> u64 {
    let sum = a + b;
    if sum >= P {
        sum - P
    } else {
        sum
    }
}

/// a − b modulo p, for a, b < p.
#[inline(always)]
fn sub(a: u64, b: u64) -> u64 {
    let (difference, negative) = a.overflowing_sub(b);
    if negative {
        difference.wrapping_add(P)
    } else {
        difference
    }
}

/// x in Montgomery form (x · 2^64 modulo p).
fn to_mont(x: u64) -> u64 {
    mont(x, R2)
}

/// base^exponent, both base and result in Montgomery form.
fn mont_pow(mut base: u64, mut exponent: u64) -> u64 {
    let mut result = to_mont(1);
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = mont(result, base);
        }
        base = mont(base, base);
        exponent >>= 1;
    }
    result
}

/// The roots of unity every stage of a transform multiplies by, in Montgomery form.
///
/// The stage that combines halves of `h` points uses w^j for j < h, w a primitive (2h)-th
/// root of unity; those are at `[h − 1, 2h − 1)`. The same table serves every transform of
/// at most `len` points.
#[derive(Debug)]
struct Roots {
    log_len: u32,
    forward: Vec<u64>,
    inverse: Vec<u64>,
}

impl Roots {
    fn new(log_len: u32) -> Roots {
        assert!(log_len <= MAX_LOG_LEN, "transform of 2^{log_len} points");
        let len = 1usize << log_len;
        let half = len / 2;
        let mut forward = vec![0u64; len.max(2) - 1];
        let w = mont_pow(to_mont(GENERATOR), (P - 1) >> log_len.max(1));
        let mut power = to_mont(1);
        for slot in &mut forward[half.max(1) - 1..] {
            *slot = power;
            power = mont(power, w);
        }
        // The (2h)-th roots are every other (4h)-th root.
        let mut h = half / 2;
        while h >= 1 {
            for j in 0..h {
                forward[h - 1 + j] = forward[2 * h - 1 + 2 * j];
            }
            h /= 2;
        }
        // w^−j = w^(2h−j) = −w^(h−j), as w^h = −1.
        let mut inverse = forward.clone();
        let mut h = 1;
        while h <= half {
            for j in 1..h {
                inverse[h - 1 + j] = P - forward[h - 1 + h - j];
            }
            h *= 2;
        }
        Roots {
            log_len,
            forward,
            inverse,
        }
    }

    /// A table for transforms of 2^`log_len` points: the cached one if it is large enough.
    fn get(log_len: u32) -> Arc<Roots> {
        static CACHE: Mutex<Option<Arc<Roots>>> = Mutex::new(None);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(roots) = cache.as_ref().filter(|roots| roots.log_len >= log_len) {
            return Arc::clone(roots);
        }
        let roots = Arc::new(Roots::new(log_len));
        if log_len <= CACHED_LOG_LEN {
            *cache = Some(Arc::clone(&roots));
        }
        roots
    }

    /// The roots of the stage combining halves of `h` points.
    fn stage(table: &[u64], h: usize) -> &[u64] {
        &table[h - 1..2 * h - 1]
    }
}

/// One stage of the forward transform on a block split into halves `low` and `high`.
fn forward_stage(low: &mut [u64], high: &mut [u64], roots: &[u64]) {
    for ((x, y), &w) in low.iter_mut().zip(high.iter_mut()).zip(roots) {
        let (u, v) = (*x, *y);
        *x = add(u, v);
        *y = mont(u + P - v, w);
    }
}

/// One stage of the inverse transform on a block split into halves `low` and `high`.
fn inverse_stage(low: &mut [u64], high: &mut [u64], roots: &[u64]) {
    for ((x, y), &w) in low.iter_mut().zip(high.iter_mut()).zip(roots) {
        let u = *x;
        let v = mont(*y, w);
        *x = add(u, v);
        *y = sub(u, v);
    }
}

/// The forward transform of `a` (a power of two long, natural order in, bit-reversed order
/// out), on two threads if `parallel` and it is long enough.
fn forward(a: &mut [u64], table: &[u64], parallel: bool) {
    let len = a.len();
    if len <= ITERATIVE_LEN {
        let mut h = len / 2;
        while h >= 2 {
            let roots = Roots::stage(table, h);
            for block in a.chunks_exact_mut(2 * h) {
                let (low, high) = block.split_at_mut(h);
                forward_stage(low, high, roots);
            }
            h /= 2;
        }
        for pair in a.chunks_exact_mut(2) {
            let (u, v) = (pair[0], pair[1]);
            pair[0] = add(u, v);
            pair[1] = sub(u, v);
        }
        return;
    }
    let h = len / 2;
    let roots = Roots::stage(table, h);
    let (low, high) = a.split_at_mut(h);
    if parallel && len >= PARALLEL_LEN {
        let (low_a, low_b) = low.split_at_mut(h / 2);
        let (high_a, high_b) = high.split_at_mut(h / 2);
        let (roots_a, roots_b) = roots.split_at(h / 2);
        parallel::join(
            true,
            || forward_stage(low_a, high_a, roots_a),
            || forward_stage(low_b, high_b, roots_b),
        );
        parallel::join(
            true,
            || forward(low, table, false),
            || forward(high, table, false),
        );
    } else {
        forward_stage(low, high, roots);
        forward(low, table, false);
        forward(high, table, false);
    }
}

/// The inverse of [`forward`] without the division by the length (bit-reversed order in,
/// natural order out).
fn inverse(a: &mut [u64], table: &[u64], parallel: bool) {
    let len = a.len();
    if len <= ITERATIVE_LEN {
        for pair in a.chunks_exact_mut(2) {
            let (u, v) = (pair[0], pair[1]);
            pair[0] = add(u, v);
            pair[1] = sub(u, v);
        }
        let mut h = 2;
        while h < len {
            let roots = Roots::stage(table, h);
            for block in a.chunks_exact_mut(2 * h) {
                let (low, high) = block.split_at_mut(h);
                inverse_stage(low, high, roots);
            }
            h *= 2;
        }
        return;
    }
    let h = len / 2;
    let roots = Roots::stage(table, h);
    let (low, high) = a.split_at_mut(h);
    if parallel && len >= PARALLEL_LEN {
        parallel::join(
            true,
            || inverse(low, table, false),
            || inverse(high, table, false),
        );
        let (low_a, low_b) = low.split_at_mut(h / 2);
        let (high_a, high_b) = high.split_at_mut(h / 2);
        let (roots_a, roots_b) = roots.split_at(h / 2);
        parallel::join(
            true,
            || inverse_stage(low_a, high_a, roots_a),
            || inverse_stage(low_b, high_b, roots_b),
        );
    } else {
        inverse(low, table, false);
        inverse(high, table, false);
        inverse_stage(low, high, roots);
    }
}

/// How a product is cut: `bits` per coefficient, 2^`log_len` points per transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) bits: u32,
    pub(crate) log_len: u32,
}

impl Shape {
    /// The shape for the whole product of factors of `x_bits` and `y_bits` bits: the widest
    /// coefficients that keep every product coefficient exact, which also give the shortest
    /// transform. `None` if no transform can hold the product.
    pub(crate) fn product(x_bits: u64, y_bits: u64) -> Option<Shape> {
        (16..=30u32).rev().find_map(|bits| {
            let (x_len, y_len) = (x_bits.div_ceil(bits.into()), y_bits.div_ceil(bits.into()));
            let log_len = (x_len + y_len).next_power_of_two().trailing_zeros();
            let shape = Shape { bits, log_len };
            shape.exact(x_len.min(y_len)).then_some(shape)
        })
    }

    /// The shape for products modulo 2^M − 1, M = bits · 2^log_len, of numbers below
    /// 2^`min_bits`: the shortest transform with M ≥ `min_bits`.
    pub(crate) fn cyclic(min_bits: u64) -> Option<Shape> {
        (1..=MAX_LOG_LEN).find_map(|log_len| {
            (16..=30).rev().find_map(|bits| {
                let shape = Shape { bits, log_len };
                (shape.total_bits() >= min_bits && shape.exact(shape.len() as u64)).then_some(shape)
            })
        })
    }

    /// Whether sums of `terms` products of two coefficients stay below p, and the transform
    /// is one p has roots for.
    fn exact(self, terms: u64) -> bool {
        self.log_len <= MAX_LOG_LEN && exact(terms as usize, 1 << self.bits)
    }

    /// Points per transform.
    pub(crate) fn len(self) -> usize {
        1 << self.log_len
    }

    /// The bits a transform's coefficients cover.
    pub(crate) fn total_bits(self) -> u64 {
        u64::from(self.bits) << self.log_len
    }

    /// `x` cut into coefficients of `bits` bits, zero-padded to the transform's length.
    fn coefficients(self, x: &BigUint) -> Vec<u64> {
        let bits = self.bits;
        let mask = (1u64 << bits) - 1;
        let mut out = Vec::with_capacity(self.len());
        let (mut pending, mut pending_bits) = (0u128, 0u32);
        for digit in x.iter_u64_digits() {
            pending |= u128::from(digit) << pending_bits;
            pending_bits += 64;
            while pending_bits >= bits {
                out.push(pending as u64 & mask);
                pending >>= bits;
                pending_bits -= bits;
            }
        }
        if pending != 0 {
            out.push(pending as u64);
        }
        assert!(
            out.len() <= self.len(),
            "the number does not fit the transform"
        );
        out.resize(self.len(), 0);
        out
    }
}

/// The Montgomery-form factor c with mont(x, mont(y, c)) = x · y / 2^log_len: the division
/// of the inverse transform and the Montgomery factor, folded into pointwise products.
fn scale(log_len: u32) -> u64 {
    // 2^−log_len · R in Montgomery form is mont_pow(2^log_len · R, p − 2); times R once more.
    let inverse_len = mont_pow(to_mont(1 << log_len), P - 2);
    mont(inverse_len, R2)
}

/// The cyclic convolution of `a` and `b` (of `a` with itself if `b` is `None`), both
/// 2^`log_len` long: c_k = Σ a_i · b_j over i + j ≡ k modulo the length, reduced modulo p.
/// The transforms run on two threads if `parallel`.
fn cyclic_convolution(
    mut a: Vec<u64>,
    b: Option<Vec<u64>>,
    log_len: u32,
    parallel: bool,
) -> Vec<u64> {
    let roots = Roots::get(log_len);
    let scale = scale(log_len);
    match b {
        None => {
            forward(&mut a, &roots.forward, parallel);
            for a in a.iter_mut() {
                *a = mont(*a, mont(*a, scale));
            }
        }
        Some(mut b) => {
            parallel::join(
                parallel,
                || forward(&mut a, &roots.forward, false),
                || forward(&mut b, &roots.forward, false),
            );
            for (a, &b) in a.iter_mut().zip(&b) {
                *a = mont(b, mont(*a, scale));
            }
        }
    }
    inverse(&mut a, &roots.inverse, parallel);
    a
}

/// The largest sum of products of coefficients a transform gives back exactly: p − 1.
pub(crate) fn max_sum_of_products() -> u128 {
    u128::from(P - 1)
}

/// Whether sums of `terms` products of two numbers below `bound` stay below p.
pub(crate) fn exact(terms: usize, bound: u64) -> bool {
    let largest = u128::from(bound.saturating_sub(1));
    terms as u128 * largest * largest < P as u128
}

/// The coefficients of the product of two polynomials with coefficients `x` and `y` (of `x`
/// squared if `y` is `None`), all below `bound`: x.len() + y.len() − 1 of them. `None` if
/// they would not come out exactly (see [`exact`]) or if either is empty. The transforms run
/// on two threads if `parallel`.
pub(crate) fn polynomial_product(
    x: &[u32],
    y: Option<&[u32]>,
    bound: u64,
    parallel: bool,
) -> Option<Vec<u64>> {
    let y_len = y.map_or(x.len(), <[u32]>::len);
    if x.is_empty() || y_len == 0 || !exact(x.len().min(y_len), bound) {
        return None;
    }
    let product_len = x.len() + y_len - 1;
    let log_len = product_len.next_power_of_two().trailing_zeros();
    if log_len > MAX_LOG_LEN {
        return None;
    }
    let padded = |x: &[u32]| {
        let mut a = Vec::with_capacity(1 << log_len);
        a.extend(x.iter().map(|&digit| u64::from(digit)));
        a.resize(1 << log_len, 0);
        a
    };
    let mut c = cyclic_convolution(padded(x), y.map(padded), log_len, parallel);
    c.truncate(product_len);
    Some(c)
}

/// Returns `x · y`, by a transform when both are at least [`MIN_BITS`] long; the transforms
/// run on two threads if `parallel`.
pub(crate) fn mul(x: &BigUint, y: &BigUint, parallel: bool) -> BigUint {
    if x.bits().min(y.bits()) < MIN_BITS {
        return x * y;
    }
    let Some(shape) = Shape::product(x.bits(), y.bits()) else {
        return x * y;
    };
    let (a, b) = parallel::join(parallel, || shape.coefficients(x), || shape.coefficients(y));
    let c = cyclic_convolution(a, Some(b), shape.log_len, parallel);
    carry(&c, shape.bits)
}

/// Returns `x²`, by a transform when `x` is at least [`MIN_BITS`] long; the transforms run
/// on two threads if `parallel`.
pub(crate) fn square(x: &BigUint, parallel: bool) -> BigUint {
    if x.bits() < MIN_BITS {
        return x * x;
    }
    let Some(shape) = Shape::product(x.bits(), x.bits()) else {
        return x * x;
    };
    let c = cyclic_convolution(shape.coefficients(x), None, shape.log_len, parallel);
    carry(&c, shape.bits)
}

/// A number's transform, kept for many products modulo 2^M − 1 by it.
#[derive(Debug)]
pub(crate) struct Spectrum {
    shape: Shape,
    roots: Arc<Roots>,
    values: Vec<u64>,
}

impl Spectrum {
    /// The transform of `x`, which must be below 2^M, M = `shape.total_bits()`.
    pub(crate) fn new(x: &BigUint, shape: Shape) -> Spectrum {
        let roots = Roots::get(shape.log_len);
        let mut values = shape.coefficients(x);
        forward(&mut values, &roots.forward, false);
        // The factors of every later product folded in once here.
        let scale = scale(shape.log_len);
        for value in values.iter_mut() {
            *value = mont(*value, scale);
        }
        Spectrum {
            shape,
            roots,
            values,
        }
    }

    /// Returns `x · y` modulo 2^M − 1 (in [0, 2^M − 1)), for `y` below 2^M; the transforms
    /// on two threads if `parallel`.
    pub(crate) fn mul_mod(&self, y: &BigUint, parallel: bool) -> BigUint {
        let shape = self.shape;
        let mut a = shape.coefficients(y);
        forward(&mut a, &self.roots.forward, parallel);
        for (a, &b) in a.iter_mut().zip(&self.values) {
            *a = mont(*a, b);
        }
        inverse(&mut a, &self.roots.inverse, parallel);
        fold(&carry(&a, shape.bits), shape.total_bits())
    }

    /// M: products are modulo 2^M − 1.
    pub(crate) fn modulus_bits(&self) -> u64 {
        self.shape.total_bits()
    }
}

/// Returns `x` modulo 2^`m` − 1, in [0, 2^m − 1).
pub(crate) fn fold(x: &BigUint, m: u64) -> BigUint {
    let ones = (BigUint::from(1u8) << m) - 1u8;
    let mut x = x.clone();
    // 2^m ≡ 1: the m-bit pieces add up to x modulo 2^m − 1.
    while x.bits() > m {
        let high = &x >> m;
        x = (x & &ones) + high;
    }
    if x == ones {
        BigUint::ZERO
    } else {
        x
    }
}

/// Returns Σ c_k · 2^(bits·k): the value of a product's coefficients.
fn carry(coefficients: &[u64], bits: u32) -> BigUint {
    let mask = (1u64 << bits) - 1;
    let mut words: Vec<u32> =
        Vec::with_capacity((coefficients.len() * bits as usize).div_ceil(32) + 4);
    // `carry` stays below 2^63: each coefficient is below p < 2^62, each carry below 2^(62−bits+1).
    let (mut carry, mut pending, mut pending_bits) = (0u64, 0u64, 0u32);
    for &c in coefficients {
        let sum = carry + c;
        carry = sum >> bits;
        pending |= (sum & mask) << pending_bits;
        pending_bits += bits;
        if pending_bits >= 32 {
            words.push(pending as u32);
            pending >>= 32;
            pending_bits -= 32;
        }
    }
    let mut rest = u128::from(pending) | (u128::from(carry) << pending_bits);
    while rest != 0 {
        words.push(rest as u32);
        rest >>= 32;
    }
    BigUint::new(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::test_numbers::random;

    #[test]
    fn montgomery_constants() {
        assert_eq!(P.wrapping_mul(P_INV), 1);
        assert_eq!(mont(to_mont(12_345), 1), 12_345);
        assert_eq!(
            mont(to_mont(P - 1), to_mont(P - 1)),
            to_mont(1),
            "(−1)² = 1"
        );
        // The generator has order exactly p − 1: its power (p − 1)/q is not 1 for any prime
        // q dividing p − 1 = 2^46 · 3 · 5 · 17 · 257.
        let g = to_mont(GENERATOR);
        assert_eq!(mont_pow(g, P - 1), to_mont(1));
        for q in [2, 3, 5, 17, 257] {
            assert_ne!(mont_pow(g, (P - 1) / q), to_mont(1), "q = {q}");
        }
    }

    #[test]
    fn roots_tables() {
        let roots = Roots::new(5);
        for h in [1usize, 2, 4, 8, 16] {
            let forward = Roots::stage(&roots.forward, h);
            let inverse = Roots::stage(&roots.inverse, h);
            for j in 0..h {
                assert_eq!(mont(forward[j], inverse[j]), to_mont(1), "h {h} j {j}");
            }
            if h > 1 {
                // w^h = −1 for a primitive (2h)-th root w.
                assert_eq!(mont_pow(forward[1], h as u64), to_mont(P - 1), "h {h}");
            }
        }
    }

    #[test]
    fn transforms_invert() {
        for log_len in [1u32, 2, 5, 10, 11, 14] {
            let roots = Roots::new(log_len);
            let original: Vec<u64> = (0..1u64 << log_len)
                .map(|i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % P)
                .collect();
            for parallel in [false, true] {
                let mut a = original.clone();
                forward(&mut a, &roots.forward, parallel);
                inverse(&mut a, &roots.inverse, parallel);
                let len_mont = to_mont(original.len() as u64);
                for (x, y) in original.iter().zip(&a) {
                    // Back, times the length.
                    assert_eq!(mont(*x, len_mont), *y);
                }
            }
        }
    }

    #[test]
    fn products_match_num_bigint() {
        let cases = [
            (MIN_BITS, MIN_BITS),
            (MIN_BITS + 1, 200_000),
            (100_000, 100_003),
            (347_000, 347_000),
            (694_000, 300_000),
            (1_500_000, 1_400_000),
        ];
        for (seed, &(x_bits, y_bits)) in cases.iter().enumerate() {
            let x = random(x_bits, seed as u64);
            let y = random(y_bits, seed as u64 + 100);
            let expected = &x * &y;
            assert_eq!(mul(&x, &y, false), expected, "{x_bits} × {y_bits}");
            assert_eq!(mul(&y, &x, true), expected, "{y_bits} × {x_bits}");
            assert_eq!(square(&x, seed % 2 == 0), &x * &x, "{x_bits}²");
        }
    }

    /// Factors whose coefficients are all 2^b − 1 give the largest product coefficients.
    #[test]
    fn all_ones_factors_stay_exact() {
        for bits in [MIN_BITS, 131_072, 400_000, 1 << 20] {
            let ones = (BigUint::from(1u8) << bits) - 1u8;
            assert_eq!(square(&ones, false), &ones * &ones, "{bits} ones");
            let other = (BigUint::from(1u8) << (bits + 777)) - 1u8;
            assert_eq!(mul(&ones, &other, true), &ones * &other, "{bits} ones");
        }
    }

    #[test]
    fn shapes_keep_coefficients_exact() {
        for bits in [1u64, 1_000, MIN_BITS, 347_000, 10_000_000, 1 << 32] {
            let shape = Shape::product(bits, bits).unwrap();
            let len = bits.div_ceil(u64::from(shape.bits));
            assert!(shape.exact(len), "{bits}: {shape:?}");
            assert!(2 * len <= shape.len() as u64, "{bits}: {shape:?}");
            let cyclic = Shape::cyclic(bits).unwrap();
            assert!(cyclic.total_bits() >= bits && cyclic.exact(cyclic.len() as u64));
        }
    }

    #[test]
    fn products_modulo_a_mersenne_number() {
        for (x_bits, m_min) in [
            (70_000u64, 70_000u64),
            (90_000, 250_000),
            (243_000, 243_004),
        ] {
            let x = random(x_bits, x_bits);
            let shape = Shape::cyclic(m_min).unwrap();
            let m = shape.total_bits();
            let spectrum = Spectrum::new(&x, shape);
            assert_eq!(spectrum.modulus_bits(), m);
            let ones = (BigUint::from(1u8) << m) - 1u8;
            for (seed, y_bits) in [(1u64, m), (2, m - 1), (3, m / 2), (4, 17)] {
                let y = random(y_bits, seed);
                let expected = (&x * &y) % &ones;
                assert_eq!(
                    spectrum.mul_mod(&y, seed % 2 == 0),
                    expected,
                    "{x_bits} {m} {y_bits}"
                );
            }
            assert_eq!(spectrum.mul_mod(&BigUint::ZERO, false), BigUint::ZERO);
            // x · (2^M − 1) ≡ 0.
            assert_eq!(spectrum.mul_mod(&ones, false), BigUint::ZERO);
        }
    }

    #[test]
    fn folding() {
        let x = random(10_000, 5);
        for m in [64u64, 1_000, 4_999, 10_000, 20_000] {
            let ones = (BigUint::from(1u8) << m) - 1u8;
            assert_eq!(fold(&x, m), &x % &ones, "m = {m}");
            assert_eq!(fold(&ones, m), BigUint::ZERO);
        }
    }
}
