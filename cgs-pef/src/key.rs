//! The simulated ultravisor's secret key.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// HMAC-SHA-256.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A 256-bit ultravisor key: seals ESM blobs (shared with the simulated guest owner) and, through
/// derived sub-keys, encrypts and authenticates paged-out secure pages. Zeroized on drop, never
/// printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct UvKey([u8; 32]);

impl UvKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        UvKey(bytes)
    }

    /// A sub-key for `purpose` (HMAC-SHA-256(key, purpose)), wiped when dropped.
    pub(crate) fn derive(&self, purpose: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut mac = self.mac();
        mac.update(purpose);
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// An HMAC-SHA-256 instance keyed with this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it panic-free.
        HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
    }
}

impl fmt::Debug for UvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UvKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_derivation_separates_purposes() {
        let k = UvKey::from_bytes([7; 32]);
        assert_eq!(format!("{k:?}"), "UvKey(<redacted>)");
        assert_ne!(k.derive(b"a"), k.derive(b"b"));
        assert_eq!(k.derive(b"a"), UvKey::from_bytes([7; 32]).derive(b"a"));
    }
}
