//! The SEV transport packet header that accompanies every `SEND_UPDATE_DATA` /
//! `RECEIVE_UPDATE_DATA` transport buffer (kernel-abi.md §13–14).
//!
//! The header is a firmware blob, not a kernel structure: 52 bytes, `flags u32 @0` (bit 0
//! `COMPRESSED`), `iv [u8; 16] @4`, `mac [u8; 32] @20` — the same layout as the LAUNCH_SECRET
//! header. KVM copies it verbatim between user space and the firmware (`hdr_uaddr`/`hdr_len`).
//! [`RawPacketHeader`] is the `#[repr(C)]` mirror with layout assertions; [`PacketHeader`] is the
//! public type, converted field by field.

use std::mem::{offset_of, size_of};

use super::stream::StreamError;

/// Length of the packet header in bytes (`spec_sev_packet_header size=52` in abi/layout.out).
pub const PACKET_HEADER_LEN: usize = 52;

/// `flags` bit 0: the transport data is compressed (firmware rejects it on receive).
pub const PACKET_FLAG_COMPRESSED: u32 = 1 << 0;

/// The firmware layout of the packet header.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RawPacketHeader {
    /// Flags (bit 0 `COMPRESSED`).
    pub flags: u32,
    /// The AES-128-CTR initial counter block.
    pub iv: [u8; 16],
    /// HMAC-SHA256 over the context byte, flags, IV, lengths and ciphertext.
    pub mac: [u8; 32],
}

const _: () = assert!(size_of::<RawPacketHeader>() == PACKET_HEADER_LEN);
const _: () = assert!(offset_of!(RawPacketHeader, flags) == 0);
const _: () = assert!(offset_of!(RawPacketHeader, iv) == 4);
const _: () = assert!(offset_of!(RawPacketHeader, mac) == 20);

/// A transport packet header: how the receiving firmware decrypts and authenticates one transport
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketHeader {
    /// Flags (bit 0 [`PACKET_FLAG_COMPRESSED`]).
    pub flags: u32,
    /// The AES-128-CTR IV (fresh per packet).
    pub iv: [u8; 16],
    /// The packet MAC.
    pub mac: [u8; 32],
}

impl PacketHeader {
    /// The 52 header bytes as the firmware reads them.
    pub fn to_bytes(&self) -> [u8; PACKET_HEADER_LEN] {
        let raw = RawPacketHeader::from(*self);
        let mut out = [0u8; PACKET_HEADER_LEN];
        out[offset_of!(RawPacketHeader, flags)..][..4].copy_from_slice(&raw.flags.to_le_bytes());
        out[offset_of!(RawPacketHeader, iv)..][..16].copy_from_slice(&raw.iv);
        out[offset_of!(RawPacketHeader, mac)..][..32].copy_from_slice(&raw.mac);
        out
    }

    /// Parse a header; `bytes` must be exactly [`PACKET_HEADER_LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StreamError> {
        let bytes: &[u8; PACKET_HEADER_LEN] =
            bytes.try_into().map_err(|_| StreamError::Malformed {
                record: "packet header",
                why: format!("length {} is not {PACKET_HEADER_LEN}", bytes.len()),
            })?;
        let mut raw = RawPacketHeader::default();
        let mut flags = [0u8; 4];
        flags.copy_from_slice(&bytes[offset_of!(RawPacketHeader, flags)..][..4]);
        raw.flags = u32::from_le_bytes(flags);
        raw.iv
            .copy_from_slice(&bytes[offset_of!(RawPacketHeader, iv)..][..16]);
        raw.mac
            .copy_from_slice(&bytes[offset_of!(RawPacketHeader, mac)..][..32]);
        Ok(raw.into())
    }

    /// Whether the `COMPRESSED` flag is set.
    pub fn is_compressed(&self) -> bool {
        self.flags & PACKET_FLAG_COMPRESSED != 0
    }
}

impl From<PacketHeader> for RawPacketHeader {
    fn from(h: PacketHeader) -> Self {
        RawPacketHeader {
            flags: h.flags,
            iv: h.iv,
            mac: h.mac,
        }
    }
}

impl From<RawPacketHeader> for PacketHeader {
    fn from(r: RawPacketHeader) -> Self {
        PacketHeader {
            flags: r.flags,
            iv: r.iv,
            mac: r.mac,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_round_trips() {
        let h = PacketHeader {
            flags: 0x0102_0304,
            iv: [7; 16],
            mac: [9; 32],
        };
        let b = h.to_bytes();
        assert_eq!(&b[..4], &[4, 3, 2, 1]);
        assert_eq!(&b[4..20], &[7; 16]);
        assert_eq!(&b[20..52], &[9; 32]);
        assert_eq!(PacketHeader::from_bytes(&b).unwrap(), h);
        assert!(!h.is_compressed());
        assert!(PacketHeader { flags: 1, ..h }.is_compressed());
        assert!(PacketHeader::from_bytes(&b[..51]).is_err());
        let mut long = b.to_vec();
        long.push(0);
        assert!(PacketHeader::from_bytes(&long).is_err());
    }
}
