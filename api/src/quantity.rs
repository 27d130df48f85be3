//! Resource quantities (`100m`, `1.5`, `2Gi`, `500M`, `1e3`) with the semantics of Kubernetes'
//! `k8s.io/apimachinery/pkg/api/resource.Quantity`.
//!
//! A [`Quantity`] keeps the string it was parsed from (that is what it serializes back to) and
//! computes exactly, with no floating point: [`Quantity::value`] and [`Quantity::milli_value`]
//! round up as Kubernetes does, and [`Quantity::canonical`] gives the form the Kubernetes API
//! server stores (`0.5` becomes `500m`, `1.5Gi` becomes `1536Mi`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

mod canonical;

const HINT: &str = "expected a number with an optional suffix such as 100m, 1.5, 2Gi, 500M or 1e3";

/// A failure to parse a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The input is empty.
    #[error("quantity is empty; {HINT}")]
    Empty,
    /// The input has no digits where the number should be, e.g. `Gi`, `.`, ` 1`.
    #[error("invalid quantity {input:?}: no number before the suffix; {HINT}")]
    NoDigits {
        /// The input as given.
        input: String,
    },
    /// What follows the number is not a known suffix or exponent.
    #[error("invalid quantity {input:?}: unknown suffix {suffix:?}; use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3")]
    Suffix {
        /// The input as given.
        input: String,
        /// The unrecognised suffix.
        suffix: String,
    },
    /// The exponent cannot be represented.
    #[error("invalid quantity {input:?}: exponent out of range")]
    ExponentRange {
        /// The input as given.
        input: String,
    },
    /// A negative quantity where only non-negative ones are allowed.
    #[error("invalid quantity {input:?}: must be greater than or equal to 0")]
    Negative {
        /// The input as given.
        input: String,
    },
}

/// How the suffix was written; the canonical form keeps the same kind of suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `m`, `k`, `M`, ... or none.
    DecimalSi,
    /// `Ki`, `Mi`, ...
    BinarySi,
    /// `e3`, `E-2`, ...
    DecimalExponent,
}

/// A fixed-point resource amount, e.g. a CPU or memory request.
///
/// Equality, ordering and hashing use the exact parsed value, so `1` == `1000m` == `1e0`
/// (binary amounts beyond 2^63-1 are compared uncapped).
#[derive(Debug, Clone)]
pub struct Quantity {
    original: String,
    negative: bool,
    /// The decimal digits of the magnitude, integer and fraction digits together, without
    /// leading zeros (empty for zero), each as a value 0-9.
    digits: Vec<u8>,
    /// The magnitude is `digits * 10^exp10 * 2^exp2`.
    exp10: i64,
    exp2: u32,
    format: Format,
}

impl Quantity {
    /// Parses `<sign><number><suffix>`: an optional `+`/`-`, digits with an optional `.`
    /// fraction (`1`, `1.5`, `.5`, `1.`), then a decimal SI suffix (`n u m "" k M G T P E`),
    /// a binary SI suffix (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`, `E-2`).
    /// No whitespace is allowed. Unlike Kubernetes, a sign or a dot without digits is refused
    /// rather than read as zero.
    ///
    /// # Errors
    ///
    /// A [`QuantityError`] saying what is wrong with `input`.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        let (negative, unsigned) = match input.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, input.strip_prefix('+').unwrap_or(input)),
        };
        let integer_len = leading_digits(unsigned);
        let (integer, after_integer) = unsigned.split_at(integer_len);
        let (fraction, suffix) = match after_integer.strip_prefix('.') {
            Some(rest) => rest.split_at(leading_digits(rest)),
            None => ("", after_integer),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(QuantityError::NoDigits {
                input: input.to_owned(),
            });
        }
        let (suffix_exp10, exp2, format) =
            interpret_suffix(suffix).ok_or_else(|| QuantityError::Suffix {
                input: input.to_owned(),
                suffix: suffix.to_owned(),
            })?;
        let fraction_len = i64::try_from(fraction.len()).ok();
        let exp10 = fraction_len
            .and_then(|len| suffix_exp10.checked_sub(len))
            .ok_or_else(|| QuantityError::ExponentRange {
                input: input.to_owned(),
            })?;
        let digits: Vec<u8> = integer
            .bytes()
            .chain(fraction.bytes())
            .map(|b| b - b'0')
            .skip_while(|&d| d == 0)
            .collect();
        Ok(Quantity {
            original: input.to_owned(),
            negative: negative && !digits.is_empty(),
            digits,
            exp10,
            exp2,
            format,
        })
    }

    /// Parses like [`Quantity::parse`] and refuses negative amounts (`-0` is zero and allowed).
    ///
    /// # Errors
    ///
    /// As [`Quantity::parse`], and [`QuantityError::Negative`] for an amount below zero.
    pub fn parse_non_negative(input: &str) -> Result<Self, QuantityError> {
        let quantity = Quantity::parse(input)?;
        if quantity.is_negative() {
            return Err(QuantityError::Negative {
                input: input.to_owned(),
            });
        }
        Ok(quantity)
    }

    /// The string the quantity was parsed from.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The amount in whole units, rounded up (away from zero) as Kubernetes' `Value`:
    /// `1.2` gives 2, `100m` gives 1, `-1.5` gives -2.
    pub fn value(&self) -> i128 {
        self.scaled_value(0)
    }

    /// The amount in thousandths, rounded up (away from zero) as Kubernetes' `MilliValue`:
    /// `100m` gives 100, `0.1m` gives 1, `1Ki` gives 1 024 000.
    pub fn milli_value(&self) -> i128 {
        self.scaled_value(3)
    }

    /// `ceil(|q| * 10^scale)` with q's sign, saturating at the bounds of `i128` where
    /// Kubernetes would overflow `int64`. Binary-suffixed amounts are capped at 2^63-1 first,
    /// as Kubernetes caps them when parsing.
    fn scaled_value(&self, scale: i64) -> i128 {
        let cap = i64::MAX.unsigned_abs();
        let magnitude =
            if self.format == Format::BinarySi && self.ceil_magnitude(0) > u128::from(cap) {
                times_pow10(u128::from(cap), scale)
            } else {
                self.ceil_magnitude(scale)
            };
        let magnitude = i128::try_from(magnitude).unwrap_or(i128::MAX);
        if self.negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// `ceil(|q| * 10^scale)`, saturating at `u128::MAX`.
    fn ceil_magnitude(&self, scale: i64) -> u128 {
        let digits = times_pow2(&self.digits, self.exp2);
        if digits.is_empty() {
            return 0;
        }
        let shift = self.exp10.saturating_add(scale);
        if shift >= 0 {
            return times_pow10(digits_to_u128(&digits), shift);
        }
        let dropped = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
        if dropped >= digits.len() {
            // A non-zero amount smaller than one unit rounds up to one.
            return 1;
        }
        let (whole, fraction) = digits.split_at(digits.len() - dropped);
        let whole = digits_to_u128(whole);
        if fraction.iter().any(|&d| d != 0) {
            whole.saturating_add(1)
        } else {
            whole
        }
    }
}

const DECIMAL_SUFFIXES: [(&str, i64); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

fn interpret_suffix(suffix: &str) -> Option<(i64, u32, Format)> {
    if let Some((_, exp)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((*exp, 0, Format::DecimalSi));
    }
    if let Some((_, exp)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((0, *exp, Format::BinarySi));
    }
    let exponent = suffix.strip_prefix(['e', 'E'])?;
    // i64's parser accepts a leading sign like Go's ParseInt; refuse anything else it allows.
    if !exponent
        .trim_start_matches(['+', '-'])
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((exponent.parse().ok()?, 0, Format::DecimalExponent))
}

fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Multiplies a big decimal (digit values, most significant first) by 2^exp2 (exp2 ≤ 60).
fn times_pow2(digits: &[u8], exp2: u32) -> Vec<u8> {
    if exp2 == 0 || digits.is_empty() {
        return digits.to_vec();
    }
    let factor = 1u128 << exp2;
    let mut reversed = Vec::with_capacity(digits.len() + 19);
    let mut carry = 0u128;
    for &d in digits.iter().rev() {
        let v = u128::from(d) * factor + carry;
        reversed.push((v % 10) as u8);
        carry = v / 10;
    }
    while carry > 0 {
        reversed.push((carry % 10) as u8);
        carry /= 10;
    }
    reversed.reverse();
    reversed
}

fn digits_to_u128(digits: &[u8]) -> u128 {
    digits.iter().fold(0u128, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u128::from(d))
    })
}

fn times_pow10(mut value: u128, exp: i64) -> u128 {
    // Stops as soon as it saturates, so a huge exponent costs at most ~40 steps.
    for _ in 0..exp {
        if value == 0 || value == u128::MAX {
            break;
        }
        value = value.saturating_mul(10);
    }
    value
}

impl fmt::Display for Quantity {
    /// Prints the string the quantity was parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.original)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// Accepts a string (surrounding whitespace is trimmed, as Kubernetes does) or a JSON
    /// number such as `2` or `0.5`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as \"100m\", \"2Gi\" or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Quantity::parse(v.trim()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        // Display never uses exponent notation and round-trips, so "0.5" stays "0.5".
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(s)
    }

    #[test]
    fn values_round_up() -> Result<(), QuantityError> {
        let cases: &[(&str, i128, i128)] = &[
            ("0", 0, 0),
            ("100m", 1, 100),
            ("1", 1, 1000),
            ("1.5", 2, 1500),
            ("1.2", 2, 1200),
            ("2Gi", 2 * 1024 * 1024 * 1024, 2 * 1024 * 1024 * 1024 * 1000),
            ("500M", 500_000_000, 500_000_000_000),
            ("1e3", 1000, 1_000_000),
            ("128974848", 128_974_848, 128_974_848_000),
            ("0.1m", 1, 1),
            ("1n", 1, 1),
            ("1u", 1, 1),
            ("1001u", 1, 2),
            ("1Ki", 1024, 1_024_000),
            ("0.5Ki", 512, 512_000),
            ("1.", 1, 1000),
            (".5", 1, 500),
            ("+7", 7, 7000),
            (
                "1E",
                1_000_000_000_000_000_000,
                1_000_000_000_000_000_000_000,
            ),
            ("1E-3", 1, 1),
            ("1.3E+6", 1_300_000, 1_300_000_000),
            ("0.5e-1", 1, 50),
            ("-1.5", -2, -1500),
            ("-100m", -1, -100),
            ("-0", 0, 0),
            ("007", 7, 7000),
        ];
        for (input, value, milli) in cases {
            let quantity = q(input)?;
            assert_eq!(quantity.value(), *value, "value of {input}");
            assert_eq!(quantity.milli_value(), *milli, "milli value of {input}");
        }
        Ok(())
    }

    #[test]
    fn binary_amounts_are_capped_like_kubernetes() -> Result<(), QuantityError> {
        let max = i128::from(i64::MAX);
        assert_eq!(q("9Ei")?.value(), max);
        assert_eq!(q("9223372036854775807Ki")?.value(), max);
        assert_eq!(q("9Ei")?.milli_value(), max * 1000);
        assert_eq!(q("7Ei")?.value(), 7 * (1i128 << 60));
        assert_eq!(q("9Ei")?.canonical(), "9223372036854775807");
        Ok(())
    }

    #[test]
    fn huge_and_tiny_amounts_saturate_or_round_up() -> Result<(), QuantityError> {
        assert_eq!(q("1e30")?.value(), 10i128.pow(30));
        assert_eq!(q("1e40")?.value(), i128::MAX);
        assert_eq!(q("-1e40")?.value(), -i128::MAX);
        assert_eq!(q("1e999999999999")?.milli_value(), i128::MAX);
        assert_eq!(q("1e-999999999999")?.value(), 1);
        assert_eq!(q("0e999999999999")?.value(), 0);
        let many_digits = format!("{}1", "0.".to_owned() + &"0".repeat(100_000));
        assert_eq!(q(&many_digits)?.milli_value(), 1);
        assert_eq!(q(&"9".repeat(100))?.value(), i128::MAX);
        Ok(())
    }

    #[test]
    fn rejects_garbage() {
        let cases = [
            "",
            " 1",
            "1 ",
            "1.1.M",
            "1+1.0M",
            "0.1mi",
            "0.1am",
            "aoeu",
            ".5i",
            "1i",
            "-3.01i",
            "-3.01e-",
            "1e",
            "1e+",
            "1K",
            "1ki",
            "1e3Ki",
            "1m5",
            "0x10",
            "+",
            "-",
            ".",
            "-.",
            "Gi",
            "1,5",
            "1e1.5",
            "1e++3",
            "١",
            "1\u{0}",
            "1e99999999999999999999",
        ];
        for input in cases {
            assert!(q(input).is_err(), "{input:?} parsed");
        }
        assert_eq!(q(""), Err(QuantityError::Empty));
        assert_eq!(
            q("1K").map(|_| ()),
            Err(QuantityError::Suffix {
                input: "1K".to_owned(),
                suffix: "K".to_owned()
            })
        );
        assert_eq!(
            q("-").map(|_| ()),
            Err(QuantityError::NoDigits {
                input: "-".to_owned()
            })
        );
        assert_eq!(
            q("2gi").map_err(|e| e.to_string()).map(|_| ()),
            Err("invalid quantity \"2gi\": unknown suffix \"gi\"; use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3".to_owned())
        );
    }

    #[test]
    fn non_negative_parsing() -> Result<(), QuantityError> {
        assert_eq!(Quantity::parse_non_negative("250m")?.milli_value(), 250);
        assert!(Quantity::parse_non_negative("-0")?.is_zero());
        assert_eq!(
            Quantity::parse_non_negative("-1").map(|_| ()),
            Err(QuantityError::Negative {
                input: "-1".to_owned()
            })
        );
        assert!(q("-1")?.is_negative());
        assert!(!q("-0")?.is_negative());
        Ok(())
    }

    #[test]
    fn serde_keeps_the_original_string() -> Result<(), serde_json::Error> {
        let quantity: Quantity = serde_json::from_value(json!("1.5"))?;
        assert_eq!(serde_json::to_value(&quantity)?, json!("1.5"));
        assert_eq!(quantity.to_string(), "1.5");
        let trimmed: Quantity = serde_json::from_value(json!(" 2Gi "))?;
        assert_eq!(trimmed.as_str(), "2Gi");
        let number: Quantity = serde_json::from_value(json!(2))?;
        assert_eq!(number.milli_value(), 2000);
        let float: Quantity = serde_json::from_value(json!(0.5))?;
        assert_eq!(float.as_str(), "0.5");
        let negative: Quantity = serde_json::from_value(json!(-3))?;
        assert_eq!(negative.value(), -3);
        for bad in [
            json!("2 Gi"),
            json!(null),
            json!(true),
            json!([]),
            json!({}),
        ] {
            assert!(
                serde_json::from_value::<Quantity>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let err = serde_json::from_value::<Quantity>(json!("lots")).err();
        assert!(err.is_some_and(|e| e.to_string().starts_with("invalid quantity \"lots\"")));
        Ok(())
    }

    #[test]
    fn from_str_parses() -> Result<(), QuantityError> {
        let quantity: Quantity = "64Mi".parse()?;
        assert_eq!(quantity.value(), 64 << 20);
        Ok(())
    }
}
