//! The cryptography of Secure Execution images, shared by the image builder and the Ultravisor
//! simulator (so both sides use one definition).
//!
//! - host-key hash: SHA-256 of the 160-byte coordinate block `X ‖ Y` (80 bytes each, big-endian,
//!   left-zero-padded) of a P-521 public key;
//! - exchange key: `SHA-256(Z ‖ 00 00 00 01)` with `Z` the 66-byte ECDH X coordinate;
//! - key-slot wrap and header seal: AES-256-GCM;
//! - components: AES-256-XTS per 4 KiB page with the 16-byte big-endian tweak `{prefix, offset}`.

use aes::cipher::KeyInit;
use aes::Aes256;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use p521::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
use p521::{NistP521, PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use xts_mode::Xts128;
use zeroize::Zeroizing;

/// Size of one coordinate in the SE header's key fields.
pub const COORD_LEN: usize = 80;
/// Size of a P-521 field element.
pub const P521_LEN: usize = 66;
/// The 4 KiB page the UV unpacks and hashes.
pub const PAGE: usize = 4096;

/// The `X ‖ Y` block (160 bytes) of a P-521 public key as the SE header stores it.
pub fn public_key_coords(key: &PublicKey) -> [u8; 2 * COORD_LEN] {
    let point = key.to_encoded_point(false);
    let mut out = [0u8; 2 * COORD_LEN];
    // An uncompressed point on P-521 always has both coordinates of 66 bytes.
    if let (Some(x), Some(y)) = (point.x(), point.y()) {
        out[COORD_LEN - P521_LEN..COORD_LEN].copy_from_slice(x);
        out[2 * COORD_LEN - P521_LEN..].copy_from_slice(y);
    }
    out
}

/// Decode an `X ‖ Y` block; `None` when the padding is not zero or the point is not on P-521.
pub fn public_key_from_coords(coords: &[u8; 2 * COORD_LEN]) -> Option<PublicKey> {
    let pad = COORD_LEN - P521_LEN;
    if coords[..pad].iter().any(|&b| b != 0)
        || coords[COORD_LEN..COORD_LEN + pad].iter().any(|&b| b != 0)
    {
        return None;
    }
    let x = &coords[pad..COORD_LEN];
    let y = &coords[COORD_LEN + pad..];
    let point = EncodedPoint::<NistP521>::from_affine_coordinates(x.into(), y.into(), false);
    Option::from(PublicKey::from_encoded_point(&point))
}

/// SHA-256 of a host public key's coordinate block (the key slot's `phkh`, and what
/// `/sys/firmware/uv/keys/host_key` shows).
pub fn host_key_hash(key: &PublicKey) -> [u8; 32] {
    Sha256::digest(public_key_coords(key)).into()
}

/// The AES-256 exchange key between `secret` and `peer`: `SHA-256(Z ‖ 00000001)`.
pub fn exchange_key(secret: &SecretKey, peer: &PublicKey) -> Zeroizing<[u8; 32]> {
    let shared = p521::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    let mut h = Sha256::new();
    h.update(shared.raw_secret_bytes());
    h.update(1u32.to_be_bytes());
    Zeroizing::new(h.finalize().into())
}

/// AES-256-GCM encrypt `buf` in place; returns the 16-byte tag.
pub fn gcm_seal(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    let cipher = Aes256Gcm::new(key.into());
    match cipher.encrypt_in_place_detached(Nonce::from_slice(iv), aad, buf) {
        Ok(tag) => tag.into(),
        // Only reachable for buffers beyond GCM's 64 GiB limit, which no caller builds.
        Err(_) => [0u8; 16],
    }
}

/// AES-256-GCM decrypt `buf` in place; `false` (and `buf` unspecified) when the tag is wrong.
pub fn gcm_open(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(iv), aad, buf, Tag::from_slice(tag))
        .is_ok()
}

/// The 16-byte XTS tweak of page `index` of a component with tweak prefix `prefix`.
pub fn page_tweak(prefix: u64, offset: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&prefix.to_be_bytes());
    t[8..].copy_from_slice(&offset.to_be_bytes());
    t
}

fn xts(key: &[u8; 64]) -> Xts128<Aes256> {
    let k1 = Aes256::new(key[..32].into());
    let k2 = Aes256::new(key[32..].into());
    Xts128::new(k1, k2)
}

/// AES-256-XTS encrypt one 4 KiB page in place.
pub fn xts_encrypt_page(key: &[u8; 64], tweak: [u8; 16], page: &mut [u8]) {
    xts(key).encrypt_sector(page, tweak);
}

/// AES-256-XTS decrypt one 4 KiB page in place.
pub fn xts_decrypt_page(key: &[u8; 64], tweak: [u8; 16], page: &mut [u8]) {
    xts(key).decrypt_sector(page, tweak);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn coords_round_trip_and_reject_bad_points() {
        let sk = SecretKey::random(&mut OsRng);
        let pk = sk.public_key();
        let c = public_key_coords(&pk);
        assert_eq!(public_key_from_coords(&c), Some(pk));
        let mut bad = c;
        bad[0] = 1;
        assert_eq!(public_key_from_coords(&bad), None);
        let mut off_curve = c;
        off_curve[159] ^= 1;
        assert_eq!(public_key_from_coords(&off_curve), None);
    }

    #[test]
    fn ecdh_is_symmetric() {
        let a = SecretKey::random(&mut OsRng);
        let b = SecretKey::random(&mut OsRng);
        assert_eq!(
            *exchange_key(&a, &b.public_key()),
            *exchange_key(&b, &a.public_key())
        );
    }

    #[test]
    fn gcm_and_xts_round_trip() {
        let key = [7u8; 32];
        let iv = [1u8; 12];
        let mut buf = *b"secret plaintext";
        let tag = gcm_seal(&key, &iv, b"aad", &mut buf);
        assert_ne!(&buf, b"secret plaintext");
        let mut tampered = buf;
        assert!(!gcm_open(&key, &iv, b"aaX", &mut tampered, &tag));
        assert!(gcm_open(&key, &iv, b"aad", &mut buf, &tag));
        assert_eq!(&buf, b"secret plaintext");

        let xkey = [9u8; 64];
        let mut page = vec![0x5au8; PAGE];
        xts_encrypt_page(&xkey, page_tweak(0x0028_0000_0000_0001, 4096), &mut page);
        assert_ne!(page, vec![0x5au8; PAGE]);
        let mut wrong = page.clone();
        xts_decrypt_page(&xkey, page_tweak(0x0028_0000_0000_0001, 0), &mut wrong);
        assert_ne!(wrong, vec![0x5au8; PAGE]);
        xts_decrypt_page(&xkey, page_tweak(0x0028_0000_0000_0001, 4096), &mut page);
        assert_eq!(page, vec![0x5au8; PAGE]);
    }

    #[test]
    fn tweak_layout() {
        let t = page_tweak(0x0046_1122_3344_5566, 0x2000);
        assert_eq!(t[..2], [0x00, 0x46]);
        assert_eq!(t[8..], 0x2000u64.to_be_bytes());
    }
}
