//! QEMU's `key=value,...` syntax (`util/keyval.c`) with `qom-type` as the implied first key.
//!
//! Rules, as QEMU applies them to `-object`:
//! - elements are separated by `,`; a literal comma inside a value is written `,,`;
//! - the first element may omit `key=`: it is then the value of `qom-type`;
//! - any other element without `=` is an error ("Expected '=' after parameter 'x'");
//! - keys consist of ASCII letters, digits, `-`, `_` and `.`;
//! - a key given twice keeps its last value;
//! - a trailing comma is accepted.

use super::ConfigError;

/// The implied key of the first element.
pub const IMPLIED_KEY: &str = "qom-type";

/// Split `input` into `(key, value)` pairs in order, with the last of duplicate keys winning
/// (the earlier occurrence is removed, so the order is that of last occurrence).
pub fn parse(input: &str) -> Result<Vec<(String, String)>, ConfigError> {
    if input.is_empty() {
        return Err(ConfigError::Empty);
    }
    let bytes = input.as_bytes();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut pos = 0usize;
    let mut first = true;
    while pos < bytes.len() {
        let start = pos;
        // Key: up to '=' or an element end.
        while pos < bytes.len() && bytes[pos] != b'=' && bytes[pos] != b',' {
            pos += 1;
        }
        let (key, value) = if pos < bytes.len() && bytes[pos] == b'=' {
            let key = &input[start..pos];
            if key.is_empty() || !key.bytes().all(is_key_byte) {
                return Err(ConfigError::Syntax {
                    position: start,
                    why: "invalid parameter name",
                });
            }
            pos += 1;
            let (value, next) = read_value(input, pos);
            pos = next;
            (key.to_string(), value)
        } else if first {
            // Implied key: the element (with ",," escapes) is the qom-type.
            let (value, next) = read_value(input, start);
            pos = next;
            (IMPLIED_KEY.to_string(), value)
        } else {
            let name = &input[start..pos];
            if name.is_empty() {
                return Err(ConfigError::Syntax {
                    position: start,
                    why: "empty parameter (stray ',')",
                });
            }
            return Err(ConfigError::Syntax {
                position: pos,
                why: "expected '=' after parameter name",
            });
        };
        first = false;
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// Read a value starting at `pos` up to an unescaped comma; returns the unescaped value and the
/// position after the separating comma.
fn read_value(input: &str, mut pos: usize) -> (String, usize) {
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut seg = pos;
    while pos < bytes.len() {
        if bytes[pos] == b',' {
            if pos + 1 < bytes.len() && bytes[pos + 1] == b',' {
                out.push_str(&input[seg..=pos]);
                pos += 2;
                seg = pos;
                continue;
            }
            out.push_str(&input[seg..pos]);
            return (out, pos + 1);
        }
        pos += 1;
    }
    out.push_str(&input[seg..pos]);
    (out, pos)
}

/// Escape a value for writing: every `,` becomes `,,`.
pub fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> Vec<(String, String)> {
        parse(s).unwrap()
    }

    #[test]
    fn implied_type_and_pairs() {
        assert_eq!(
            kv("sev-guest,id=a,policy=3"),
            vec![
                ("qom-type".into(), "sev-guest".into()),
                ("id".into(), "a".into()),
                ("policy".into(), "3".into())
            ]
        );
    }

    #[test]
    fn explicit_type_escapes_duplicates_trailing_comma() {
        assert_eq!(
            kv("qom-type=pef-guest,id=x,,y,id=z,"),
            vec![
                ("qom-type".into(), "pef-guest".into()),
                ("id".into(), "z".into())
            ]
        );
        assert_eq!(kv("t,f=a,,b,,")[1].1, "a,b,");
        assert_eq!(escape("a,b"), "a,,b");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse(""), Err(ConfigError::Empty));
        assert!(matches!(
            parse("t,flag"),
            Err(ConfigError::Syntax { position: 6, .. })
        ));
        assert!(matches!(parse("t,=1"), Err(ConfigError::Syntax { .. })));
        assert_eq!(parse("t,,").unwrap()[0].1, "t,");
        assert!(matches!(parse("t,a b=1"), Err(ConfigError::Syntax { .. })));
        assert_eq!(parse("t,x=1,,,").unwrap()[1].1, "1,");
    }
}
