//! Property value syntax: QEMU's booleans, unsigned integers and base64 blobs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::ConfigError;

/// Longest value echoed back in an error message; longer ones are abbreviated.
const ECHO_MAX: usize = 40;

fn echo(value: &str) -> String {
    if value.chars().count() <= ECHO_MAX {
        value.to_string()
    } else {
        let head: String = value.chars().take(ECHO_MAX).collect();
        format!("{head}… ({} chars)", value.chars().count())
    }
}

fn invalid(property: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        property,
        value: echo(value),
        expected: expected.into(),
    }
}

/// A QEMU boolean: `on`/`yes`/`true`/`y` or `off`/`no`/`false`/`n`.
pub fn parse_bool(property: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(invalid(property, value, "'on' or 'off'")),
    }
}

/// Write a boolean the way QEMU documents it.
pub fn bool_str(value: bool) -> &'static str {
    if value {
        "on"
    } else {
        "off"
    }
}

/// An unsigned integer as QEMU's `qemu_strtou64(…, base 0)` reads it: decimal, `0x` hexadecimal
/// or leading-`0` octal. Negative numbers are refused.
pub fn parse_u64(property: &'static str, value: &str) -> Result<u64, ConfigError> {
    let (digits, radix) = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        (hex, 16)
    } else if value.len() > 1 && value.starts_with('0') {
        (&value[1..], 8)
    } else {
        (value, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid(property, value, "an unsigned integer"));
    }
    u64::from_str_radix(digits, radix)
        .map_err(|_| invalid(property, value, "an unsigned integer below 2^64"))
}

/// An unsigned 32-bit integer (see [`parse_u64`]).
pub fn parse_u32(property: &'static str, value: &str) -> Result<u32, ConfigError> {
    let v = parse_u64(property, value)?;
    u32::try_from(v).map_err(|_| invalid(property, value, "an unsigned integer below 2^32"))
}

/// Strict standard base64 (with padding, no whitespace).
pub fn parse_base64(property: &'static str, value: &str) -> Result<Vec<u8>, ConfigError> {
    STANDARD
        .decode(value)
        .map_err(|e| invalid(property, value, format!("base64 ({e})")))
}

/// Base64 that must decode to exactly `N` bytes.
pub fn parse_base64_array<const N: usize>(
    property: &'static str,
    value: &str,
) -> Result<[u8; N], ConfigError> {
    let bytes = parse_base64(property, value)?;
    let len = bytes.len();
    <[u8; N]>::try_from(bytes).map_err(|_| {
        invalid(
            property,
            value,
            format!("base64 of exactly {N} bytes (decoded {len})"),
        )
    })
}

/// Encode bytes as standard base64.
pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("p", "0x30000").unwrap(), 0x30000);
        assert_eq!(parse_u64("p", "010").unwrap(), 8);
        assert_eq!(parse_u64("p", "0").unwrap(), 0);
        assert_eq!(parse_u64("p", "18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            "",
            "-1",
            "0x",
            "08",
            "1e3",
            " 1",
            "18446744073709551616",
            "+1",
        ] {
            assert!(parse_u64("p", bad).is_err(), "{bad}");
        }
        assert!(parse_u32("p", "0x100000000").is_err());
    }

    #[test]
    fn bools_and_base64() {
        for t in ["on", "yes", "true", "y"] {
            assert!(parse_bool("b", t).unwrap());
        }
        for f in ["off", "no", "false", "n"] {
            assert!(!parse_bool("b", f).unwrap());
        }
        assert!(parse_bool("b", "1").is_err());
        assert_eq!(parse_base64_array::<2>("h", "AAE=").unwrap(), [0, 1]);
        assert!(parse_base64_array::<3>("h", "AAE=").is_err());
        assert!(parse_base64("h", "AAE").is_err());
        let long = "x".repeat(100);
        let err = parse_bool("b", &long).unwrap_err().to_string();
        assert!(err.contains("(100 chars)"), "{err}");
    }
}
