//! The canonical form of a [`Quantity`] and its comparison by exact value.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::{
    digits_to_u128, times_pow10, times_pow2, Format, Quantity, BINARY_SUFFIXES, DECIMAL_SUFFIXES,
};

impl Quantity {
    /// The form the Kubernetes API server stores and returns: the value rounded up to a
    /// whole nano, the largest suffix of the same kind that needs no fraction digits
    /// (`1.5` → `1500m`, `1.5Gi` → `1536Mi`, `1000` → `1k`, `1e3` → `1e3`), binary amounts
    /// that are below 1024 or not whole printed with decimal suffixes (`0.5Ki` → `512`).
    pub fn canonical(&self) -> String {
        if self.is_zero() {
            return "0".to_owned();
        }
        let mut digits = times_pow2(&self.digits, self.exp2);
        let mut exp10 = self.exp10;
        round_up_to_nano(&mut digits, &mut exp10);
        let sign = if self.negative { "-" } else { "" };
        if self.format == Format::BinarySi {
            let capped = self.ceil_magnitude(0) > u128::from(i64::MAX.unsigned_abs());
            let whole = if capped {
                Some(i64::MAX.unsigned_abs())
            } else {
                whole_number(&digits, exp10)
            };
            if let Some(mut whole) = whole.filter(|&w| w >= 1024) {
                let mut power = 0;
                while whole % 1024 == 0 && power < BINARY_SUFFIXES.len() {
                    whole /= 1024;
                    power += 1;
                }
                let suffix = power
                    .checked_sub(1)
                    .and_then(|i| BINARY_SUFFIXES.get(i))
                    .map_or("", |(s, _)| *s);
                return format!("{sign}{whole}{suffix}");
            }
        }
        // Move trailing zeros into the exponent, then lower it to a multiple of three.
        while digits.len() > 1 && digits.last() == Some(&0) {
            digits.pop();
            exp10 = exp10.saturating_add(1);
        }
        while exp10.rem_euclid(3) != 0 || (self.format != Format::DecimalExponent && exp10 > 18) {
            digits.push(0);
            exp10 -= 1;
        }
        let mantissa: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let suffix = match self.format {
            Format::DecimalExponent if exp10 == 0 => String::new(),
            Format::DecimalExponent => format!("e{exp10}"),
            _ => DECIMAL_SUFFIXES
                .iter()
                .find(|(_, e)| *e == exp10)
                .map_or_else(String::new, |(s, _)| (*s).to_owned()),
        };
        format!("{sign}{mantissa}{suffix}")
    }

    /// The exact value as (negative, significant digits, power of ten), trailing zeros moved
    /// into the exponent, so that equal amounts compare equal however they were written.
    fn normalized(&self) -> (bool, Vec<u8>, i64) {
        if self.is_zero() {
            return (false, Vec::new(), 0);
        }
        let mut digits = times_pow2(&self.digits, self.exp2);
        let mut exp10 = self.exp10;
        while digits.last() == Some(&0) {
            digits.pop();
            exp10 = exp10.saturating_add(1);
        }
        (self.negative, digits, exp10)
    }
}

/// The value as a whole number if it is one and fits in a u64.
fn whole_number(digits: &[u8], exp10: i64) -> Option<u64> {
    let mut value = digits.to_vec();
    let mut exp10 = exp10;
    while exp10 < 0 && value.last() == Some(&0) {
        value.pop();
        exp10 += 1;
    }
    if exp10 < 0 {
        return None;
    }
    let whole = times_pow10(digits_to_u128(&value), exp10);
    u64::try_from(whole).ok().filter(|_| whole != u128::MAX)
}

/// Kubernetes keeps at most nine fraction digits, rounding any finer amount up (away from
/// zero) so that asking for a tiny amount still gets some.
fn round_up_to_nano(digits: &mut Vec<u8>, exp10: &mut i64) {
    let excess = -9 - i128::from(*exp10);
    if excess <= 0 {
        return;
    }
    let excess = usize::try_from(excess).unwrap_or(usize::MAX);
    let keep = digits.len().saturating_sub(excess);
    let round_up = digits
        .get(keep..)
        .is_some_and(|tail| tail.iter().any(|&d| d != 0));
    digits.truncate(keep);
    *exp10 = -9;
    if round_up {
        let mut carry = true;
        for d in digits.iter_mut().rev() {
            if *d == 9 {
                *d = 0;
            } else {
                *d += 1;
                carry = false;
                break;
            }
        }
        if carry {
            digits.insert(0, 1);
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.normalized() == other.normalized()
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalized().hash(state);
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a_neg, a, a_exp) = self.normalized();
        let (b_neg, b, b_exp) = other.normalized();
        // Zero has no digits and is never negative.
        let sign = |neg: bool, digits: &[u8]| match (neg, digits.is_empty()) {
            (_, true) => 0,
            (true, false) => -1,
            (false, false) => 1,
        };
        let (a_sign, b_sign) = (sign(a_neg, &a), sign(b_neg, &b));
        if a_sign != b_sign || a_sign == 0 {
            return a_sign.cmp(&b_sign);
        }
        // Without leading or trailing zeros, magnitude is decided by the position of the
        // leading digit, then digit by digit.
        let position = |digits: &[u8], exp: i64| {
            i128::from(exp) + i128::try_from(digits.len()).unwrap_or(i128::MAX)
        };
        let magnitude = position(&a, a_exp)
            .cmp(&position(&b, b_exp))
            .then_with(|| a.cmp(&b));
        if a_sign < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::QuantityError;

    fn q(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(s)
    }

    #[test]
    fn canonical_form_matches_kubernetes() -> Result<(), QuantityError> {
        let cases = [
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1.5Gi", "1536Mi"),
            ("1024Mi", "1Gi"),
            ("307200Ki", "300Mi"),
            ("1025024Mi", "1001Gi"),
            ("1024Gi", "1Ti"),
            ("1025", "1025"),
            ("5000m", "5"),
            ("1000M", "1G"),
            ("0.001T", "1G"),
            ("1000u", "1m"),
            ("1.08", "1080m"),
            ("1080000000n", "1080m"),
            (".001e12", "1e9"),
            ("0.001e0", "1e-3"),
            ("1000e-12", "1e-9"),
            ("1.2e3", "1200"),
            ("00", "0"),
            ("0Gi", "0"),
            ("50k", "50k"),
            ("100.035k", "100035"),
            ("1.01E", "1010P"),
            ("12E", "12E"),
            ("3.001n", "4n"),
            ("0.00000012345", "124n"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
            ("0.5Mi", "512Ki"),
            ("1.5Ki", "1536"),
            ("100.035Ki", "102435840m"),
            ("-1.5Gi", "-1536Mi"),
            ("-0.5", "-500m"),
            ("1000E", "1000E"),
            ("1e21", "1e21"),
            ("128974848", "128974848"),
            ("1.", "1"),
        ];
        for (input, canonical) in cases {
            assert_eq!(
                q(input)?.canonical(),
                canonical,
                "canonical form of {input}"
            );
            assert_eq!(
                q(canonical)?.canonical(),
                canonical,
                "{canonical} is canonical"
            );
        }
        Ok(())
    }

    #[test]
    fn comparison_uses_the_exact_value() -> Result<(), QuantityError> {
        assert_eq!(q("1")?, q("1000m")?);
        assert_eq!(q("1Ki")?, q("1024")?);
        assert_eq!(q("0")?, q("-0.0Gi")?);
        assert_ne!(q("1n")?, q("0")?);
        let mut sorted = [
            "2Gi", "-1", "100m", "0", "1e-9", "1", "-0.5", "1500M", "1.5Gi", "-2Ki",
        ]
        .iter()
        .map(|s| q(s))
        .collect::<Result<Vec<_>, _>>()?;
        sorted.sort();
        let printed: Vec<&str> = sorted.iter().map(Quantity::as_str).collect();
        assert_eq!(
            printed,
            ["-2Ki", "-1", "-0.5", "0", "1e-9", "100m", "1", "1500M", "1.5Gi", "2Gi"]
        );
        let mut set = std::collections::HashSet::new();
        set.insert(q("1")?);
        assert!(set.contains(&q("1000m")?));
        Ok(())
    }

    /// Deterministic pseudo-random strings over `alphabet` (a linear congruential generator,
    /// so failures reproduce).
    fn random_inputs(alphabet: &[&str], count: usize, max_len: usize) -> Vec<String> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(state >> 33).unwrap_or(0) % bound.max(1)
        };
        (0..count)
            .map(|_| {
                let len = next(max_len + 1);
                (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
            })
            .collect()
    }

    #[test]
    fn random_quantities_never_panic_and_canonicalize_consistently() {
        let alphabet = [
            "0",
            "1",
            "5",
            "9",
            ".",
            "+",
            "-",
            "e",
            "E",
            "i",
            "K",
            "M",
            "G",
            "P",
            "m",
            "n",
            "u",
            "k",
            " ",
            "99999999999",
            "e-99999999999999999",
        ];
        let mut parsed = 0;
        for input in random_inputs(&alphabet, 20_000, 8) {
            let Ok(quantity) = Quantity::parse(&input) else {
                continue;
            };
            parsed += 1;
            let canonical = quantity.canonical();
            let Ok(again) = Quantity::parse(&canonical) else {
                panic!("canonical form {canonical:?} of {input:?} does not parse");
            };
            assert_eq!(again.canonical(), canonical, "{input:?}");
            assert_eq!(
                again.value(),
                quantity.value(),
                "{input:?} vs {canonical:?}"
            );
            assert_eq!(
                again.milli_value(),
                quantity.milli_value(),
                "{input:?} vs {canonical:?}"
            );
        }
        assert!(parsed > 1_000, "only {parsed} inputs parsed");
    }

    #[test]
    fn extreme_exponents_do_not_overflow() -> Result<(), QuantityError> {
        assert_eq!(q("1e-9223372036854775808")?.canonical(), "1e-9");
        assert_eq!(q("-1e-9223372036854775808")?.value(), -1);
        assert_eq!(q("10e9223372036854775807")?.value(), i128::MAX);
        assert!(!q("10e9223372036854775807")?.canonical().is_empty());
        assert!(q("1e9223372036854775807")? > q("1e9223372036854775806")?);
        assert!(q("1.5e-9223372036854775808").is_err());
        Ok(())
    }
}
