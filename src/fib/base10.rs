//! Natural numbers in base 10^D, with the few operations fast doubling needs, so that
//! [`fib_decimal`](crate::fib_decimal) can compute large Fibonacci numbers in decimal and
//! write their digits out of the limbs, instead of computing in binary and converting: the
//! conversion of fib(10⁶) costs several times as much as computing it.
//!
//! Products go through the number-theoretic transform ([`ntt`]) with the limbs as its
//! coefficients, which is exact while the shorter factor has at most p / (10^D − 1)² limbs:
//! 46,116 limbs of 7 digits (322,812 digits), 4.6 million of 6 digits (27.7 million digits);
//! [`Decimal::mul`] returns `None` beyond that. Fewer digits per limb allow longer products,
//! at the cost of more limbs.

use num_bigint::BigUint;

use super::ntt;

/// A natural number in base 10^`DIGITS` (up to 9 digits a limb).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Decimal<const DIGITS: u32> {
    /// Little-endian limbs below [`BASE`](Self::BASE), the last one not zero (none for 0).
    limbs: Vec<u32>,
}

impl<const DIGITS: u32> Decimal<DIGITS> {
    /// The base.
    const BASE: u32 = 10u32.pow(DIGITS);

    /// The longest factor [`mul`](Self::mul) takes: products of limbs summed over this many
    /// terms stay below p.
    pub(crate) fn max_product_limbs() -> usize {
        let largest = u64::from(Self::BASE - 1);
        (ntt::max_sum_of_products() / u128::from(largest * largest)) as usize
    }

    /// `x`, converted.
    pub(crate) fn from_biguint(x: &BigUint) -> Self {
        let text = x.to_str_radix(10);
        let limbs = text
            .as_bytes()
            .rchunks(DIGITS as usize)
            .map(|chunk| {
                chunk
                    .iter()
                    .fold(0u32, |limb, digit| limb * 10 + u32::from(digit - b'0'))
            })
            .collect();
        Self::normalized(limbs)
    }

    /// A number from limbs that may have zeros on top.
    fn normalized(mut limbs: Vec<u32>) -> Self {
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        Decimal { limbs }
    }

    /// The number of limbs.
    pub(crate) fn len(&self) -> usize {
        self.limbs.len()
    }

    /// `self · other`, with the transforms on two threads if `parallel`; `None` if both
    /// factors are too long for the transform to stay exact.
    pub(crate) fn mul(&self, other: &Self, parallel: bool) -> Option<Self> {
        if self.limbs.is_empty() || other.limbs.is_empty() {
            return Some(Self::default());
        }
        let coefficients =
            ntt::polynomial_product(&self.limbs, Some(&other.limbs), Self::BASE.into(), parallel)?;
        Some(Self::carried(coefficients.into_iter()))
    }

    /// `self²`, with the transforms on two threads if `parallel`; `None` if it is too long
    /// for the transform to stay exact.
    pub(crate) fn square(&self, parallel: bool) -> Option<Self> {
        if self.limbs.is_empty() {
            return Some(Self::default());
        }
        let coefficients = ntt::polynomial_product(&self.limbs, None, Self::BASE.into(), parallel)?;
        Some(Self::carried(coefficients.into_iter()))
    }

    /// The number whose limbs would be `coefficients` (each below 2^63) if each were below the
    /// base: the coefficients with their carries passed up.
    fn carried(coefficients: impl ExactSizeIterator<Item = u64>) -> Self {
        let mut limbs = Vec::with_capacity(coefficients.len() + 3);
        let mut carry = 0u64;
        for c in coefficients {
            // Below 2^63 + 2^63 / 10^7: no overflow.
            let sum = c + carry;
            limbs.push((sum % u64::from(Self::BASE)) as u32);
            carry = sum / u64::from(Self::BASE);
        }
        while carry > 0 {
            limbs.push((carry % u64::from(Self::BASE)) as u32);
            carry /= u64::from(Self::BASE);
        }
        Self::normalized(limbs)
    }

    /// `self + other`.
    pub(crate) fn add(&self, other: &Self) -> Self {
        let (long, short) = if self.len() >= other.len() {
            (&self.limbs, &other.limbs)
        } else {
            (&other.limbs, &self.limbs)
        };
        let mut limbs = Vec::with_capacity(long.len() + 1);
        let mut carry = 0;
        for (i, &a) in long.iter().enumerate() {
            let mut sum = a + short.get(i).copied().unwrap_or(0) + carry;
            carry = u32::from(sum >= Self::BASE);
            if carry == 1 {
                sum -= Self::BASE;
            }
            limbs.push(sum);
        }
        if carry == 1 {
            limbs.push(1);
        }
        Decimal { limbs }
    }

    /// `self − other`, for `other` ≤ `self`.
    ///
    /// # Panics
    ///
    /// If `other` > `self`.
    pub(crate) fn sub(&self, other: &Self) -> Self {
        assert!(other.len() <= self.len(), "negative difference");
        let mut limbs = Vec::with_capacity(self.len());
        let mut borrow = 0;
        for (i, &a) in self.limbs.iter().enumerate() {
            let b = other.limbs.get(i).copied().unwrap_or(0) + borrow;
            borrow = u32::from(a < b);
            limbs.push(if borrow == 1 {
                a + Self::BASE - b
            } else {
                a - b
            });
        }
        assert_eq!(borrow, 0, "negative difference");
        Self::normalized(limbs)
    }

    /// `self · k`.
    pub(crate) fn mul_small(&self, k: u32) -> Self {
        // Each product is below 10^9 · 2^32 < 2^63, as `carried` needs.
        Self::carried(self.limbs.iter().map(|&a| u64::from(a) * u64::from(k)))
    }

    /// Adds `k` < [`BASE`](Self::BASE).
    pub(crate) fn add_small(&mut self, k: u32) {
        let mut carry = k;
        for limb in &mut self.limbs {
            let sum = *limb + carry;
            if sum < Self::BASE {
                *limb = sum;
                return;
            }
            *limb = sum - Self::BASE;
            carry = 1;
        }
        if carry > 0 {
            self.limbs.push(carry);
        }
    }

    /// Subtracts `k` < [`BASE`](Self::BASE).
    ///
    /// # Panics
    ///
    /// If `k` > `self`.
    pub(crate) fn sub_small(&mut self, k: u32) {
        let mut borrow = k;
        for limb in &mut self.limbs {
            if *limb >= borrow {
                *limb -= borrow;
                borrow = 0;
                break;
            }
            *limb = *limb + Self::BASE - borrow;
            borrow = 1;
        }
        assert_eq!(borrow, 0, "negative difference");
        let limbs = std::mem::take(&mut self.limbs);
        *self = Self::normalized(limbs);
    }

    /// The number in ASCII decimal digits, without leading zeros ("0" for zero).
    pub(crate) fn to_ascii(&self) -> Vec<u8> {
        let Some((&top, rest)) = self.limbs.split_last() else {
            return b"0".to_vec();
        };
        let digits = DIGITS as usize;
        let top = top.to_string();
        let mut out = vec![b'0'; top.len() + digits * rest.len()];
        let (top_digits, rest_digits) = out.split_at_mut(top.len());
        top_digits.copy_from_slice(top.as_bytes());
        for (&limb, slot) in rest.iter().rev().zip(rest_digits.chunks_exact_mut(digits)) {
            write_limb(limb, slot);
        }
        out
    }
}

/// Writes `limb`'s last `out.len()` digits into `out`, with leading zeros; two at a time.
fn write_limb(mut limb: u32, out: &mut [u8]) {
    /// "00", "01", ... "99".
    const PAIRS: [[u8; 2]; 100] = {
        let mut pairs = [[0u8; 2]; 100];
        let mut i = 0;
        while i < 100 {
            pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
            i += 1;
        }
        pairs
    };
    let mut pairs = out.rchunks_exact_mut(2);
    for pair in &mut pairs {
        pair.copy_from_slice(&PAIRS[(limb % 100) as usize]);
        limb /= 100;
    }
    if let [digit] = pairs.into_remainder() {
        *digit = b'0' + (limb % 10) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type D7 = Decimal<7>;

    fn decimal(text: &str) -> D7 {
        Decimal::from_biguint(&text.parse().unwrap())
    }

    fn text<const DIGITS: u32>(x: &Decimal<DIGITS>) -> String {
        String::from_utf8(x.to_ascii()).unwrap()
    }

    /// Deterministic pseudo-random numbers of `digits` digits, from a 64-bit LCG.
    fn random(digits: usize, seed: u64) -> BigUint {
        let mut state = seed;
        let text: String = (0..digits)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let digit = (state >> 33) % 10;
                char::from(
                    b'0' + if i == 0 {
                        digit as u8 % 9 + 1
                    } else {
                        digit as u8
                    },
                )
            })
            .collect();
        text.parse().unwrap()
    }

    #[test]
    fn round_trips() {
        for t in [
            "0",
            "1",
            "9999999",
            "10000000",
            "10000001",
            "123456789012345678901",
        ] {
            assert_eq!(text(&decimal(t)), t);
            let x: BigUint = t.parse().unwrap();
            assert_eq!(text(&Decimal::<5>::from_biguint(&x)), t);
            assert_eq!(text(&Decimal::<6>::from_biguint(&x)), t);
        }
        assert_eq!(decimal("10000000").limbs, [0, 1]);
        assert_eq!(D7::default().to_ascii(), b"0");
    }

    #[test]
    fn limbs_written_with_leading_zeros() {
        let digits = |limb, width| {
            let mut out = vec![b'x'; width];
            write_limb(limb, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(digits(0, 7), "0000000");
        assert_eq!(digits(7, 7), "0000007");
        assert_eq!(digits(1_234_567, 7), "1234567");
        assert_eq!(digits(9_999_999, 7), "9999999");
        assert_eq!(digits(100_200, 7), "0100200");
        assert_eq!(digits(100_200, 6), "100200");
        assert_eq!(digits(99_999, 5), "99999");
        assert_eq!(digits(1_020, 5), "01020");
    }

    #[test]
    fn sums_and_differences_with_carries() {
        let a = decimal("99999999999999");
        let b = decimal("1");
        assert_eq!(text(&a.add(&b)), "100000000000000");
        assert_eq!(text(&b.add(&a)), "100000000000000");
        assert_eq!(text(&a.add(&b).sub(&b)), "99999999999999");
        assert_eq!(text(&a.sub(&a)), "0");
        assert_eq!(text(&decimal("100000000000000").sub(&b)), "99999999999999");
        assert_eq!(text(&a.mul_small(4)), "399999999999996");
        assert_eq!(text(&D7::default().mul_small(4)), "0");
        let mut c = a.clone();
        c.add_small(2);
        assert_eq!(text(&c), "100000000000001");
        c.sub_small(2);
        assert_eq!(text(&c), "99999999999999");
        let mut d = decimal("10000000");
        d.sub_small(1);
        assert_eq!(text(&d), "9999999");
        d.sub_small(2);
        assert_eq!(text(&d), "9999997");
        let mut z = D7::default();
        z.add_small(3);
        z.sub_small(3);
        assert_eq!(z, D7::default());
    }

    #[test]
    #[should_panic(expected = "negative difference")]
    fn differences_are_not_negative() {
        let _ = decimal("10000000").sub(&decimal("10000001"));
    }

    fn products<const DIGITS: u32>() {
        let cases = [
            (1usize, 1usize),
            (7, 8),
            (50, 3_000),
            (4_000, 4_000),
            (12_000, 11_999),
        ];
        for (digits, other) in cases {
            let (x, y) = (random(digits, digits as u64), random(other, 7));
            let (a, b) = (
                Decimal::<DIGITS>::from_biguint(&x),
                Decimal::<DIGITS>::from_biguint(&y),
            );
            let product = (&x * &y).to_string();
            assert_eq!(
                text(&a.mul(&b, false).unwrap()),
                product,
                "{digits} × {other}"
            );
            assert_eq!(
                text(&b.mul(&a, true).unwrap()),
                product,
                "{other} × {digits}"
            );
            assert_eq!(
                text(&a.square(digits % 2 == 0).unwrap()),
                (&x * &x).to_string()
            );
            let sum = (&x + &y).to_string();
            assert_eq!(text(&a.add(&b)), sum);
            assert_eq!(text(&a.add(&b).sub(&b)), x.to_string());
            assert_eq!(text(&a.mul_small(4)), (&x * 4u8).to_string());
        }
        let zero = Decimal::<DIGITS>::default();
        assert_eq!(
            text(
                &zero
                    .mul(&Decimal::from_biguint(&5u8.into()), false)
                    .unwrap()
            ),
            "0"
        );
    }

    #[test]
    fn products_match_num_bigint() {
        products::<7>();
        products::<6>();
        products::<5>();
    }

    #[test]
    fn longest_factors() {
        assert_eq!(Decimal::<7>::max_product_limbs(), 46_116);
        assert_eq!(Decimal::<6>::max_product_limbs(), 4_611_624);
        assert_eq!(Decimal::<5>::max_product_limbs(), 461_170_788);
    }

    /// All limbs 9,999,999 make the largest transform coefficients: exact up to the limit.
    #[test]
    fn nines_up_to_the_exactness_limit() {
        let limit = D7::max_product_limbs();
        let nines = |limbs: usize| D7 {
            limbs: vec![D7::BASE - 1; limbs],
        };
        let power = |limbs: usize| {
            let mut limbs = vec![0; limbs];
            limbs.push(1);
            D7 { limbs }
        };
        let (a, b) = (nines(limit), nines(limit + 10));
        // (B^k − 1)(B^m − 1) = B^(k+m) − B^k − B^m + 1.
        let mut expected = power(2 * limit + 10)
            .sub(&power(limit))
            .sub(&power(limit + 10));
        expected.add_small(1);
        assert_eq!(a.mul(&b, true).unwrap(), expected);
        let mut square = power(2 * limit).sub(&power(limit)).sub(&power(limit));
        square.add_small(1);
        assert_eq!(a.square(false).unwrap(), square);
        assert!(b.square(false).is_none(), "beyond the limit");
        assert!(b.mul(&power(limit + 100).sub(&power(0)), false).is_none());
    }
}
