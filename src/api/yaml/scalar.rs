//! Scalars as goyaml v2 (OPA's YAML) resolves them, and their JSON text.

use super::{json_string, malformed, YamlError};
use yaml_rust2::parser::Tag;
use yaml_rust2::scanner::TScalarStyle;

/// A resolved scalar.
#[derive(Debug, PartialEq)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    /// Within `i64`, or a non-negative value within `u64` (goyaml's ints).
    Int(i128),
    Float(f64),
    Str(String),
}

impl Scalar {
    pub(super) fn json(&self) -> Result<String, YamlError> {
        Ok(match self {
            Scalar::Null => "null".into(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => float_text(*f)?,
            Scalar::Str(s) => json_string(s),
        })
    }

    /// The text of the scalar as a JSON object key, as sigs.k8s.io/yaml
    /// writes keys: strings, booleans and `int64` keys are taken; a null or
    /// `uint64`-only key is refused there too. Float keys are refused here
    /// (OPA writes them with float32 `%g` digits, which Regent does not copy).
    pub(super) fn key_text(&self) -> Result<String, YamlError> {
        Ok(match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) if i64::try_from(*n).is_ok() => n.to_string(),
            Scalar::Str(s) => s.clone(),
            Scalar::Null | Scalar::Int(_) | Scalar::Float(_) => {
                return malformed(format!("unsupported mapping key {:?}", self.json()?));
            }
        })
    }
}

/// A float as Go's JSON encoder writes it: integral values without a
/// fraction; NaN and infinities have no JSON form.
fn float_text(f: f64) -> Result<String, YamlError> {
    if !f.is_finite() {
        return malformed(format!("{f} has no JSON form"));
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        // Shortest digits, no exponent: Go's 'f' with precision -1.
        return Ok(format!("{f}"));
    }
    serde_json::to_string(&f).map_err(|e| YamlError::Malformed(e.to_string()))
}

/// The suffix of a core-schema tag (`!!str` is `tag:yaml.org,2002:str`).
pub(super) fn core_suffix(tag: &Tag) -> Option<&str> {
    (tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!").then_some(tag.suffix.as_str())
}

pub(super) fn tag_text(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

pub(super) fn resolve(
    value: &str,
    style: TScalarStyle,
    tag: Option<&Tag>,
) -> Result<Scalar, YamlError> {
    let Some(tag) = tag else {
        return if style == TScalarStyle::Plain {
            resolve_plain(value)
        } else {
            Ok(Scalar::Str(value.to_string()))
        };
    };
    let resolved = resolve_plain(value);
    match (core_suffix(tag), resolved) {
        (Some("str"), _) => Ok(Scalar::Str(value.to_string())),
        (Some("null"), Ok(Scalar::Null)) => Ok(Scalar::Null),
        (Some("bool"), Ok(b @ Scalar::Bool(_))) => Ok(b),
        (Some("int"), Ok(n @ Scalar::Int(_))) => Ok(n),
        (Some("float"), Ok(f @ Scalar::Float(_))) => Ok(f),
        (Some("float"), Ok(Scalar::Int(n))) => Ok(Scalar::Float(n as f64)),
        (Some(kind @ ("null" | "bool" | "int" | "float")), _) => {
            malformed(format!("cannot read {value:?} as !!{kind}"))
        }
        _ => malformed(format!("unsupported YAML tag {}", tag_text(tag))),
    }
}

/// goyaml v2's resolution of a plain scalar.
fn resolve_plain(s: &str) -> Result<Scalar, YamlError> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Scalar::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Scalar::Bool(true))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Scalar::Bool(false))
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return malformed(format!("{s} has no JSON form"));
        }
        _ => {}
    }
    match s.as_bytes()[0] {
        b'0'..=b'9' | b'+' | b'-' => {
            let plain = s.replace('_', "");
            if let Some(n) = parse_int(&plain) {
                return Ok(Scalar::Int(n));
            }
            if yaml_style_float(&plain) {
                // Go's ParseFloat fails on overflow (`1e400`): a string then.
                if let Ok(Some(f)) = plain.parse::<f64>().map(finite) {
                    return Ok(Scalar::Float(f));
                }
            }
        }
        b'.' if yaml_style_float(s) => {
            if let Ok(Some(f)) = s.parse::<f64>().map(finite) {
                return Ok(Scalar::Float(f));
            }
        }
        _ => {}
    }
    Ok(Scalar::Str(s.to_string()))
}

fn finite(f: f64) -> Option<f64> {
    f.is_finite().then_some(f)
}

/// Go's `strconv.ParseInt(s, 0, 64)`, else `ParseUint(s, 0, 64)`: an
/// optional sign, then `0x`/`0o`/`0b` or a leading `0` (octal) or decimal.
fn parse_int(s: &str) -> Option<i128> {
    let (negative, signed, digits) = match s.as_bytes().first()? {
        b'-' => (true, true, &s[1..]),
        b'+' => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if negative {
        let n = -i128::try_from(magnitude).ok()?;
        (n >= i128::from(i64::MIN)).then_some(n)
    } else if magnitude <= i64::MAX as u128 || (!signed && magnitude <= u128::from(u64::MAX)) {
        i128::try_from(magnitude).ok()
    } else {
        None
    }
}

/// goyaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::super::to_json;
    use serde_json::json;

    fn convert(yaml: &str) -> serde_json::Value {
        serde_json::from_slice(&to_json(yaml.as_bytes(), 1 << 20, 64).unwrap()).unwrap()
    }

    #[test]
    fn plain_scalars_resolve_as_goyaml_v2() {
        let cases = [
            (
                "[yes, No, ON, off, y, N, True]",
                json!([true, false, true, false, true, false, true]),
            ),
            (
                "[~, null, NULL, '', \"yes\", 'null']",
                json!([null, null, null, "", "yes", "null"]),
            ),
            (
                "[0x1F, 0o17, 017, 0b101, -0b11, 1_000, +5, -7]",
                json!([31, 15, 15, 5, -3, 1000, 5, -7]),
            ),
            (
                "[09, 1e3, 1.0, .5, -1.5e-3, 1_0.5]",
                json!([9, 1000, 1, 0.5, -0.0015, 10.5]),
            ),
            (
                "[18446744073709551615, -9223372036854775808]",
                json!([18446744073709551615u64, -9223372036854775808i64]),
            ),
            (
                "[1.2.3, 0x, 2001-12-14, abc, +a]",
                json!(["1.2.3", "0x", "2001-12-14", "abc", "+a"]),
            ),
            (
                "[!!str 1, !!int '7', !!float 2, !!bool yes, !!null '']",
                json!(["1", 7, 2, true, null]),
            ),
            (
                "{1: a, true: b, -2: c}",
                json!({"1": "a", "true": "b", "-2": "c"}),
            ),
            // Overflow stays a string, as Go's ParseFloat fails on it; whole
            // floats print Go's shortest digits.
            (
                "- 1e400\n- 1e20\n- 18446744073709551615.0\n",
                json!(["1e400", 1e20, 18446744073709552000.0]),
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(convert(yaml), expected, "{yaml}");
        }
        let json =
            |yaml: &str| String::from_utf8(to_json(yaml.as_bytes(), 1 << 20, 64).unwrap()).unwrap();
        assert_eq!(
            json("- 18446744073709551615.0\n- 1e20\n"),
            "[18446744073709552000,100000000000000000000]"
        );
        // Keys OPA refuses (sigs.k8s.io/yaml: unsupported map key), and
        // float keys, whose float32 digits Regent does not copy.
        for key in ["~", "18446744073709551615", "1.5"] {
            let err = to_json(format!("{{{key}: x}}").as_bytes(), 1 << 20, 64);
            assert!(
                matches!(err, Err(super::YamlError::Malformed(ref m)) if m.contains("unsupported mapping key")),
                "{key}: {err:?}"
            );
        }
    }
}
