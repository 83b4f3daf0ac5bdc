//! The host-key hashes an s390 host publishes in `/sys/firmware/uv/keys/`, and whether an SE
//! image has a key slot for one of them.
//!
//! `pvimg test` does this check before boot; a VMM can do it too and fail early with QEMU's hint
//! instead of waiting for the guest's diag 308 to fail with `UV_RC_SSC_INVAL_HOSTKEY`. Each file
//! holds SHA-256 hashes as 64 hex digits per line (`host_key`, `backup_host_key`: one line; `all`:
//! up to 15); an all-zero hash means "no key".

use crate::se_header::SeHeader;

/// The primary host key hash.
pub const HOST_KEY_PATH: &str = "/sys/firmware/uv/keys/host_key";
/// The backup host key hash.
pub const BACKUP_HOST_KEY_PATH: &str = "/sys/firmware/uv/keys/backup_host_key";
/// Every installed host key hash.
pub const ALL_HOST_KEYS_PATH: &str = "/sys/firmware/uv/keys/all";

/// A malformed line in a host-key hash file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host key hash line {line}: {why}")]
pub struct KeyHashError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: &'static str,
}

/// Parse a host-key hash file: one 64-hex-digit SHA-256 per non-empty line; all-zero hashes
/// (absent keys) are dropped.
pub fn parse_key_hashes(text: &str) -> Result<Vec<[u8; 32]>, KeyHashError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |why| KeyHashError { line: i + 1, why };
        let digits = line.as_bytes();
        if digits.len() != 64 {
            return Err(err("expected 64 hex digits"));
        }
        let mut hash = [0u8; 32];
        for (j, pair) in digits.chunks(2).enumerate() {
            let hi = (pair[0] as char)
                .to_digit(16)
                .ok_or(err("not a hex digit"))?;
            let lo = (pair[1] as char)
                .to_digit(16)
                .ok_or(err("not a hex digit"))?;
            hash[j] = (hi * 16 + lo) as u8;
        }
        if hash != [0u8; 32] {
            out.push(hash);
        }
    }
    Ok(out)
}

/// Read this host's key hashes (`all`, else `host_key` + `backup_host_key`). `Ok(empty)` when
/// the host publishes none (not an s390 host, or no QUERY_KEYS support).
pub fn read_host_key_hashes() -> Result<Vec<[u8; 32]>, cgs_core::Error> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let texts: Vec<String> = match read(ALL_HOST_KEYS_PATH) {
        Some(all) => vec![all],
        None => [HOST_KEY_PATH, BACKUP_HOST_KEY_PATH]
            .iter()
            .filter_map(|p| read(p))
            .collect(),
    };
    let mut out = Vec::new();
    for t in texts {
        let hashes = parse_key_hashes(&t)
            .map_err(|e| cgs_core::Error::invalid_input("host key hashes", e.to_string()))?;
        out.extend(hashes);
    }
    Ok(out)
}

impl SeHeader {
    /// Whether one of the header's key slots is for one of `host_key_hashes`.
    pub fn has_slot_for(&self, host_key_hashes: &[[u8; 32]]) -> bool {
        self.key_slots
            .iter()
            .any(|s| host_key_hashes.contains(&s.phkh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::host_key_hash;
    use crate::image::{ComponentKind, ImageBuilder};
    use crate::uv::sim::SimConfig;

    fn hex(h: &[u8; 32]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn parse_and_match_an_image() {
        let host = SimConfig::random().host_key.public_key();
        let other = SimConfig::random().host_key.public_key();
        let hh = host_key_hash(&host);
        let text = format!("{}\n{}\n", hex(&hh), "0".repeat(64));
        assert_eq!(parse_key_hashes(&text).unwrap(), vec![hh]);
        let img = ImageBuilder::new(vec![host], 0x8_0000)
            .component(ComponentKind::Kernel, 0x1_0000, vec![1; 10])
            .build()
            .unwrap();
        let h = SeHeader::parse(&img.header).unwrap();
        assert!(h.has_slot_for(&[hh]));
        assert!(!h.has_slot_for(&[host_key_hash(&other)]));
        assert!(!h.has_slot_for(&[]));
    }

    #[test]
    fn malformed_lines_are_typed_errors() {
        assert_eq!(
            parse_key_hashes("abcd\n"),
            Err(KeyHashError {
                line: 1,
                why: "expected 64 hex digits"
            })
        );
        let bad = format!("\n{}z\n", "0".repeat(63));
        assert_eq!(
            parse_key_hashes(&bad),
            Err(KeyHashError {
                line: 2,
                why: "not a hex digit"
            })
        );
        assert_eq!(parse_key_hashes(&"é".repeat(32)).unwrap_err().line, 1);
        assert_eq!(parse_key_hashes("").unwrap(), Vec::<[u8; 32]>::new());
    }

    #[test]
    fn reading_on_a_host_without_uv_keys() {
        if std::path::Path::new(ALL_HOST_KEYS_PATH).exists() {
            assert!(read_host_key_hashes().is_ok());
        } else {
            assert_eq!(read_host_key_hashes().unwrap(), Vec::<[u8; 32]>::new());
        }
    }
}
