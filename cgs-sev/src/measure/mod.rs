//! Offline launch measurement for SEV, SEV-ES and SEV-SNP guests.
//!
//! Pure functions over bytes (no paths, no I/O): parse an OVMF image, build the kernel-hashes
//! table, build the per-vCPU VMSAs, and compute the launch digest the AMD secure processor will
//! report, exactly as QEMU/KVM (or EC2, GCE) launch the guest. The SEV launch path uses the same
//! [`vmsa::VcpuState`] to program its vCPUs, so prediction and launch cannot drift apart.
//!
//! - [`cpu`]: vCPU signatures (type name, raw value, family/model/stepping).
//! - [`vmm`]: VMM presets (QEMU, EC2, GCE), versioned.
//! - [`vmsa`]: the VMSA builder and its KVM register conversions.
//! - [`ovmf`]: the OVMF footer GUID table and SEV metadata sections.
//! - [`hashes`]: the kernel-hashes table of measured direct boot.
//! - [`plan`]: the SNP launch plan (ranges and page types) both the digest and the launch walk.
//! - [`gctx`]: the SNP PAGE_INFO digest chain.
//! - [`sha384x`]: SHA-384 of many pages at once (multi-buffer AVX-512 / AVX2, run-time detected).
//! - [`digest`]: SEV, SEV-ES and SNP launch digests.
//! - [`idblock`]: the SNP ID block and ID auth (P-384), signing and verification.

pub mod cpu;
pub mod digest;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gctx;
pub mod guid;
pub mod hashes;
pub mod idblock;
pub mod ovmf;
pub mod plan;
mod save_area;
pub mod sha384x;
pub mod vmm;
pub mod vmsa;

pub use cpu::{CpuSignature, VcpuType};
pub use digest::{
    sev_launch_digest, seves_launch_digest, snp_launch_digest, snp_ovmf_hash, LaunchInputs,
};
pub use error::{MeasureError, Result};
pub use gctx::Gctx;
pub use hashes::KernelHashes;
pub use ovmf::OvmfImage;
pub use vmm::{VmmPreset, VmmType};
pub use vmsa::{VcpuRole, VcpuState, VmsaBuilder, VmsaPage};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

/// Parses hex (upper or lower case, even length) into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(MeasureError::invalid("hex string", "odd number of digits"));
    }
    b.chunks_exact(2)
        .map(|p| match (nibble(p[0]), nibble(p[1])) {
            (Some(h), Some(l)) => Ok((h << 4) | l),
            _ => Err(MeasureError::invalid("hex string", "non-hex digit")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0x00, 0xAB, 0x7F]), "00ab7f");
        assert_eq!(parse_hex("00AB7f").unwrap(), vec![0x00, 0xAB, 0x7F]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
    }
}
