//! Resource quantities ("100m", "1.5Gi", "2e3") as integers, rounded up
//! as upstream's `resource.Quantity` rounds `MilliValue()` and `Value()`.

/// A quantity as `digits × 10^exp10 × 2^pow2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    digits: i128,
    exp10: i32,
    pow2: u32,
}

/// Digits beyond these are dropped (as zeros in their place): no quantity
/// of a node or pod is that precise.
const MAX_DIGITS: usize = 30;

fn parse(text: &str) -> Option<Parsed> {
    let text = text.trim();
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut digits: i128 = 0;
    let mut exp10: i32 = 0;
    for (i, c) in whole.chars().chain(fraction.chars()).enumerate() {
        if i < MAX_DIGITS {
            digits = digits * 10 + i128::from(c as u8 - b'0');
        } else {
            exp10 += 1;
        }
    }
    exp10 -= fraction.len() as i32;
    let (suffix_exp10, pow2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let exponent = other.strip_prefix(['e', 'E'])?;
            (exponent.parse::<i32>().ok().filter(|e| e.abs() < 1000)?, 0)
        }
    };
    Some(Parsed { digits: if negative { -digits } else { digits }, exp10: exp10 + suffix_exp10, pow2 })
}

/// `value × 10^scale`, rounded up, saturating at the bounds of i64.
fn scaled_ceil(parsed: Parsed, scale: i32) -> i64 {
    let saturate = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let Some(mut value) = parsed.digits.checked_mul(1i128 << parsed.pow2.min(62)) else {
        return saturate(parsed.digits.signum() * i128::MAX);
    };
    let exp = parsed.exp10 + scale;
    if exp >= 0 {
        for _ in 0..exp {
            match value.checked_mul(10) {
                Some(v) => value = v,
                None => return saturate(value.signum() * i128::MAX),
            }
        }
        saturate(value)
    } else if -exp > 38 {
        // Smaller than any unit we count in: rounds up to one, or to zero.
        i64::from(value > 0)
    } else {
        let divisor = 10i128.pow((-exp) as u32);
        let quotient = value.div_euclid(divisor);
        let rounded = if value.rem_euclid(divisor) != 0 { quotient + 1 } else { quotient };
        saturate(rounded)
    }
}

/// The quantity in thousandths (millicores of cpu), rounded up; None if
/// it is not a quantity.
pub fn milli_value(text: &str) -> Option<i64> {
    parse(text).map(|p| scaled_ceil(p, 3))
}

/// The quantity in units (bytes of memory, a count of pods), rounded up.
pub fn value(text: &str) -> Option<i64> {
    parse(text).map(|p| scaled_ceil(p, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_up_as_upstream() {
        assert_eq!(milli_value("100m"), Some(100));
        assert_eq!(milli_value("1"), Some(1000));
        assert_eq!(milli_value("1.5"), Some(1500));
        assert_eq!(milli_value("0.0001"), Some(1));
        assert_eq!(milli_value("250u"), Some(1));
        assert_eq!(milli_value("2e3"), Some(2_000_000));
        assert_eq!(value("1Ki"), Some(1024));
        assert_eq!(value("1.5Gi"), Some(1_610_612_736));
        assert_eq!(value("128974848"), Some(128_974_848));
        assert_eq!(value("129e6"), Some(129_000_000));
        assert_eq!(value("123M"), Some(123_000_000));
        assert_eq!(value("110"), Some(110));
        assert_eq!(value("1m"), Some(1));
        assert_eq!(value("-1"), Some(-1));
        assert_eq!(value("+5k"), Some(5000));
        assert_eq!(value("99999999999999999999Ei"), Some(i64::MAX));
    }

    #[test]
    fn nonsense_is_not_a_quantity() {
        for text in ["", "m", "1x", "1.2.3", "abc", "1e", "--1"] {
            assert_eq!(value(text), None, "{text:?}");
        }
    }
}
