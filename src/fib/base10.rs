//! Natural numbers in base 10^7, with the few operations fast doubling needs, so that
//! [`fib_decimal`](crate::fib_decimal) can compute large Fibonacci numbers in decimal and
//! write their digits out of the limbs, instead of computing in binary and converting: the
//! conversion of fib(10⁶) costs several times as much as computing it.
//!
//! Products go through the number-theoretic transform ([`ntt`]) with the limbs as its
//! coefficients, which is exact while the shorter factor has at most 46,116 limbs (322,812
//! digits, as 46,116 · (10^7 − 1)² < p); [`Decimal::mul`] returns `None` beyond that.

use num_bigint::BigUint;

use super::ntt;

/// Decimal digits per limb.
const LIMB_DIGITS: usize = 7;

/// The base, 10^LIMB_DIGITS: squares of limbs stay below 2^47, so that products of numbers of
/// tens of thousands of limbs have exact transform coefficients.
const BASE: u32 = 10_000_000;

/// A natural number in base 10^7.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Decimal {
    /// Little-endian limbs below [`BASE`], the last one not zero (none for zero).
    limbs: Vec<u32>,
}

impl Decimal {
    /// `x`, converted.
    pub(crate) fn from_biguint(x: &BigUint) -> Decimal {
        let text = x.to_str_radix(10);
        let limbs = text
            .as_bytes()
            .rchunks(LIMB_DIGITS)
            .map(|chunk| {
                chunk
                    .iter()
                    .fold(0u32, |limb, digit| limb * 10 + u32::from(digit - b'0'))
            })
            .collect();
        Decimal::normalized(limbs)
    }

    /// A number from limbs that may have zeros on top.
    fn normalized(mut limbs: Vec<u32>) -> Decimal {
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
    pub(crate) fn mul(&self, other: &Decimal, parallel: bool) -> Option<Decimal> {
        if self.limbs.is_empty() || other.limbs.is_empty() {
            return Some(Decimal::default());
        }
        let coefficients =
            ntt::polynomial_product(&self.limbs, Some(&other.limbs), BASE.into(), parallel)?;
        Some(Decimal::carried(&coefficients))
    }

    /// `self²`, with the transforms on two threads if `parallel`; `None` if it is too long
    /// for the transform to stay exact.
    pub(crate) fn square(&self, parallel: bool) -> Option<Decimal> {
        if self.limbs.is_empty() {
            return Some(Decimal::default());
        }
        let coefficients = ntt::polynomial_product(&self.limbs, None, BASE.into(), parallel)?;
        Some(Decimal::carried(&coefficients))
    }

    /// The number whose limbs would be `coefficients` (each below 2^63) if each were below the
    /// base: the coefficients with their carries passed up.
    fn carried(coefficients: &[u64]) -> Decimal {
        let mut limbs = Vec::with_capacity(coefficients.len() + 3);
        let mut carry = 0u64;
        for &c in coefficients {
            // Below 2^63 + 2^63 / 10^7: no overflow.
            let sum = c + carry;
            limbs.push((sum % u64::from(BASE)) as u32);
            carry = sum / u64::from(BASE);
        }
        while carry > 0 {
            limbs.push((carry % u64::from(BASE)) as u32);
            carry /= u64::from(BASE);
        }
        Decimal::normalized(limbs)
    }

    /// `self + other`.
    pub(crate) fn add(&self, other: &Decimal) -> Decimal {
        let (long, short) = if self.len() >= other.len() {
            (&self.limbs, &other.limbs)
        } else {
            (&other.limbs, &self.limbs)
        };
        let mut limbs = Vec::with_capacity(long.len() + 1);
        let mut carry = 0;
        for (i, &a) in long.iter().enumerate() {
            let mut sum = a + short.get(i).copied().unwrap_or(0) + carry;
            carry = u32::from(sum >= BASE);
            if carry == 1 {
                sum -= BASE;
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
    pub(crate) fn sub(&self, other: &Decimal) -> Decimal {
        assert!(other.len() <= self.len(), "negative difference");
        let mut limbs = Vec::with_capacity(self.len());
        let mut borrow = 0;
        for (i, &a) in self.limbs.iter().enumerate() {
            let b = other.limbs.get(i).copied().unwrap_or(0) + borrow;
            borrow = u32::from(a < b);
            limbs.push(if borrow == 1 { a + BASE - b } else { a - b });
        }
        assert_eq!(borrow, 0, "negative difference");
        Decimal::normalized(limbs)
    }

    /// `self · k`.
    pub(crate) fn mul_small(&self, k: u32) -> Decimal {
        let mut limbs = Vec::with_capacity(self.len() + 1);
        let mut carry = 0u64;
        for &a in &self.limbs {
            let product = u64::from(a) * u64::from(k) + carry;
            limbs.push((product % u64::from(BASE)) as u32);
            carry = product / u64::from(BASE);
        }
        while carry > 0 {
            limbs.push((carry % u64::from(BASE)) as u32);
            carry /= u64::from(BASE);
        }
        Decimal::normalized(limbs)
    }

    /// Adds `k` < [`BASE`].
    pub(crate) fn add_small(&mut self, k: u32) {
        let mut carry = k;
        for limb in &mut self.limbs {
            let sum = *limb + carry;
            if sum < BASE {
                *limb = sum;
                return;
            }
            *limb = sum - BASE;
            carry = 1;
        }
        if carry > 0 {
            self.limbs.push(carry);
        }
    }

    /// Subtracts `k` < [`BASE`].
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
            *limb = *limb + BASE - borrow;
            borrow = 1;
        }
        assert_eq!(borrow, 0, "negative difference");
        let limbs = std::mem::take(&mut self.limbs);
        *self = Decimal::normalized(limbs);
    }

    /// The number in ASCII decimal digits, without leading zeros ("0" for zero).
    pub(crate) fn to_ascii(&self) -> Vec<u8> {
        let Some((&top, rest)) = self.limbs.split_last() else {
            return b"0".to_vec();
        };
        let mut out = Vec::with_capacity(LIMB_DIGITS * self.len());
        out.extend_from_slice(top.to_string().as_bytes());
        for &limb in rest.iter().rev() {
            out.extend_from_slice(&limb_digits(limb));
        }
        out
    }
}

/// The 7 digits of a limb, with leading zeros.
fn limb_digits(limb: u32) -> [u8; LIMB_DIGITS] {
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
    let (high, low) = (limb / 10_000, limb % 10_000);
    let [a, b] = PAIRS[(high / 10) as usize];
    let c = b'0' + (high % 10) as u8;
    let [d, e] = PAIRS[(low / 100) as usize];
    let [f, g] = PAIRS[(low % 100) as usize];
    [a, b, c, d, e, f, g]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str) -> Decimal {
        Decimal::from_biguint(&text.parse().unwrap())
    }

    fn text(x: &Decimal) -> String {
        String::from_utf8(x.to_ascii()).unwrap()
    }

    /// Deterministic pseudo-random numbers of about `digits` digits, from a 64-bit LCG.
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
        }
        assert_eq!(decimal("10000000").limbs, [0, 1]);
        assert_eq!(Decimal::default().to_ascii(), b"0");
    }

    #[test]
    fn limb_digits_with_leading_zeros() {
        assert_eq!(&limb_digits(0), b"0000000");
        assert_eq!(&limb_digits(7), b"0000007");
        assert_eq!(&limb_digits(1_234_567), b"1234567");
        assert_eq!(&limb_digits(9_999_999), b"9999999");
        assert_eq!(&limb_digits(100_200), b"0100200");
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
        assert_eq!(text(&Decimal::default().mul_small(4)), "0");
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
        let mut z = Decimal::default();
        z.add_small(3);
        z.sub_small(3);
        assert_eq!(z, Decimal::default());
    }

    #[test]
    #[should_panic(expected = "negative difference")]
    fn differences_are_not_negative() {
        let _ = decimal("10000000").sub(&decimal("10000001"));
    }

    #[test]
    fn products_match_num_bigint() {
        for (digits, other) in [
            (1usize, 1usize),
            (7, 8),
            (50, 3_000),
            (4_000, 4_000),
            (12_000, 11_999),
        ] {
            let (x, y) = (random(digits, digits as u64), random(other, 7));
            let (a, b) = (Decimal::from_biguint(&x), Decimal::from_biguint(&y));
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
        }
        assert_eq!(text(&decimal("0").mul(&decimal("5"), false).unwrap()), "0");
    }

    /// All limbs 9,999,999 make the largest transform coefficients: exact up to the limit.
    #[test]
    fn nines_up_to_the_exactness_limit() {
        let limit = 46_116;
        let nines = |limbs: usize| Decimal {
            limbs: vec![BASE - 1; limbs],
        };
        let power = |limbs: usize| {
            let mut limbs = vec![0; limbs];
            limbs.push(1);
            Decimal { limbs }
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
