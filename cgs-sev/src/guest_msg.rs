//! SNP guest messages (`SNP_GUEST_REQUEST`, kernel-abi.md §12.6): the AES-256-GCM channel between
//! a guest and the secure processor, keyed by the VM platform communication keys (VMPCK0–3) the
//! firmware writes into the guest's secrets page.
//!
//! A message is a 96-byte header followed by the encrypted payload. The header carries the
//! 16-byte tag (in a 32-byte field), the sequence number, algorithm 1 (AES-256-GCM), header
//! version 1 and size 96, message type and version, payload size and the VMPCK index; the AEAD
//! nonce is the sequence number (little-endian, 12 bytes) and the associated data is header bytes
//! 0x30–0x5F. A response has sequence number request + 1; the guest's next request uses + 2.
//!
//! [`GuestChannel`] is the guest side (what the Linux `sev-guest` driver does); the simulator's
//! [`SimFirmware::snp_guest_request`](crate::firmware::sim::SimFirmware::snp_guest_request) is the
//! firmware side. Both parse untrusted bytes with typed errors.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

/// Header length.
pub const HEADER_LEN: usize = 96;
/// `MSG_REPORT_REQ`.
pub const MSG_REPORT_REQ: u8 = 5;
/// `MSG_REPORT_RSP`.
pub const MSG_REPORT_RSP: u8 = 6;
/// Length of a report request payload (`snp_report_req`).
pub const REPORT_REQ_LEN: usize = 96;
/// Offset of the report in a `MSG_REPORT_RSP` payload.
pub const REPORT_RSP_HEADER: usize = 0x20;
/// Offset of VMPCK0 in the secrets page (VMPCKn at 0x20 + 32·n).
pub const SECRETS_VMPCK0: usize = 0x20;
/// Largest payload accepted (a message fits one 4 KiB page).
pub const MAX_PAYLOAD: usize = 4096 - HEADER_LEN;
const ALGO_AES_256_GCM: u8 = 1;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestMsgError {
    /// Shorter than its header, or the payload size does not match.
    #[error("guest message is malformed: {0}")]
    Malformed(&'static str),
    /// The tag does not verify (wrong key, tampered message).
    #[error("guest message does not authenticate")]
    BadTag,
    /// A sequence number other than the expected one (replay or reorder).
    #[error("guest message sequence number {got}, expected {want}")]
    Sequence {
        /// What the message carried.
        got: u64,
        /// What the receiver expected.
        want: u64,
    },
    /// A message type the receiver does not handle here.
    #[error("unexpected message type {0}")]
    Type(u8),
    /// The firmware answered with a non-zero status.
    #[error("the firmware answered status {0:#x}")]
    Status(u32),
}

impl From<GuestMsgError> for cgs_core::Error {
    fn from(e: GuestMsgError) -> Self {
        cgs_core::Error::invalid_input("SNP guest message", e.to_string())
    }
}

/// One VMPCK (secret: zeroized, redacted).
#[derive(Clone)]
pub struct Vmpck(Zeroizing<[u8; 32]>);

impl fmt::Debug for Vmpck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vmpck(<redacted>)")
    }
}

impl Vmpck {
    /// A key from its bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Vmpck(Zeroizing::new(key))
    }

    /// VMPCK `index` (0–3) from a secrets page.
    pub fn from_secrets_page(page: &[u8], index: u8) -> Result<Self, GuestMsgError> {
        let off = SECRETS_VMPCK0 + 32 * usize::from(index);
        if index > 3 || page.len() < off + 32 {
            return Err(GuestMsgError::Malformed(
                "no such VMPCK in the secrets page",
            ));
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&page[off..off + 32]);
        Ok(Vmpck(k))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.0).into())
    }
}

/// The cleartext fields of a message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Sequence number.
    pub seqno: u64,
    /// Message type (`MSG_REPORT_REQ`, …).
    pub msg_type: u8,
    /// Message version.
    pub msg_version: u8,
    /// VMPCK index.
    pub vmpck: u8,
}

fn nonce(seqno: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&seqno.to_le_bytes());
    n
}

/// Seal `payload` as one message.
pub fn seal_message(
    key: &Vmpck,
    header: &MessageHeader,
    payload: &[u8],
) -> Result<Vec<u8>, GuestMsgError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(GuestMsgError::Malformed("payload larger than a page"));
    }
    let mut msg = vec![0u8; HEADER_LEN + payload.len()];
    msg[32..40].copy_from_slice(&header.seqno.to_le_bytes());
    msg[48] = ALGO_AES_256_GCM;
    msg[49] = 1;
    msg[50..52].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    msg[52] = header.msg_type;
    msg[53] = header.msg_version;
    msg[54..56].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    msg[60] = header.vmpck;
    msg[HEADER_LEN..].copy_from_slice(payload);
    let (head, body) = msg.split_at_mut(HEADER_LEN);
    let tag = key
        .cipher()
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce(header.seqno)),
            &head[0x30..0x60],
            body,
        )
        .map_err(|_| GuestMsgError::Malformed("payload too long for AES-GCM"))?;
    head[..16].copy_from_slice(&tag);
    Ok(msg)
}

/// Read a message's cleartext header (no authentication yet).
pub fn peek_header(msg: &[u8]) -> Result<MessageHeader, GuestMsgError> {
    if msg.len() < HEADER_LEN {
        return Err(GuestMsgError::Malformed("shorter than the header"));
    }
    if msg[48] != ALGO_AES_256_GCM
        || msg[49] != 1
        || msg[50..52] != (HEADER_LEN as u16).to_le_bytes()
    {
        return Err(GuestMsgError::Malformed(
            "unknown algorithm or header version",
        ));
    }
    let size = usize::from(u16::from_le_bytes([msg[54], msg[55]]));
    if msg.len() != HEADER_LEN + size {
        return Err(GuestMsgError::Malformed("payload size does not match"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&msg[32..40]);
    Ok(MessageHeader {
        seqno: u64::from_le_bytes(seq),
        msg_type: msg[52],
        msg_version: msg[53],
        vmpck: msg[60],
    })
}

/// Authenticate and decrypt a message.
pub fn open_message(
    key: &Vmpck,
    msg: &[u8],
) -> Result<(MessageHeader, Zeroizing<Vec<u8>>), GuestMsgError> {
    let header = peek_header(msg)?;
    let mut body = Zeroizing::new(msg[HEADER_LEN..].to_vec());
    let tag = Tag::clone_from_slice(&msg[..16]);
    key.cipher()
        .decrypt_in_place_detached(
            Nonce::from_slice(&nonce(header.seqno)),
            &msg[0x30..0x60],
            &mut body[..],
            &tag,
        )
        .map_err(|_| GuestMsgError::BadTag)?;
    Ok((header, body))
}

/// The guest's side of the channel for one VMPCK.
#[derive(Debug)]
pub struct GuestChannel {
    key: Vmpck,
    vmpck: u8,
    seqno: u64,
}

impl GuestChannel {
    /// A channel with VMPCK `index` read from the guest's secrets page.
    pub fn from_secrets_page(page: &[u8], index: u8) -> Result<Self, GuestMsgError> {
        Ok(GuestChannel {
            key: Vmpck::from_secrets_page(page, index)?,
            vmpck: index,
            seqno: 1,
        })
    }

    /// A `MSG_REPORT_REQ` for `report_data` at `vmpl`.
    pub fn report_request(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> Result<Vec<u8>, GuestMsgError> {
        let mut payload = [0u8; REPORT_REQ_LEN];
        payload[..64].copy_from_slice(report_data);
        payload[64..68].copy_from_slice(&vmpl.to_le_bytes());
        seal_message(
            &self.key,
            &MessageHeader {
                seqno: self.seqno,
                msg_type: MSG_REPORT_REQ,
                msg_version: 1,
                vmpck: self.vmpck,
            },
            &payload,
        )
    }

    /// Check the `MSG_REPORT_RSP` to the last request and return the report bytes; advances
    /// the sequence number by two.
    pub fn open_report_response(&mut self, msg: &[u8]) -> Result<Vec<u8>, GuestMsgError> {
        let (h, body) = open_message(&self.key, msg)?;
        let want = self.seqno + 1;
        if h.seqno != want {
            return Err(GuestMsgError::Sequence { got: h.seqno, want });
        }
        if h.msg_type != MSG_REPORT_RSP {
            return Err(GuestMsgError::Type(h.msg_type));
        }
        if body.len() < REPORT_RSP_HEADER {
            return Err(GuestMsgError::Malformed("short report response"));
        }
        let status = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        if status != 0 {
            return Err(GuestMsgError::Status(status));
        }
        let size = u32::from_le_bytes([body[4], body[5], body[6], body[7]]) as usize;
        let report = body
            .get(REPORT_RSP_HEADER..REPORT_RSP_HEADER + size)
            .ok_or(GuestMsgError::Malformed("report size exceeds the response"))?;
        self.seqno += 2;
        Ok(report.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = Vmpck::new([7; 32]);
        let h = MessageHeader {
            seqno: 3,
            msg_type: MSG_REPORT_REQ,
            msg_version: 1,
            vmpck: 0,
        };
        let m = seal_message(&key, &h, b"payload").unwrap();
        let (h2, body) = open_message(&key, &m).unwrap();
        assert_eq!((h2, &body[..]), (h, &b"payload"[..]));
        for i in [0, 32, 52, 60, HEADER_LEN] {
            let mut bad = m.clone();
            bad[i] ^= 1;
            assert!(open_message(&key, &bad).is_err(), "byte {i}");
        }
        assert_eq!(
            open_message(&Vmpck::new([8; 32]), &m),
            Err(GuestMsgError::BadTag)
        );
        assert!(peek_header(&m[..50]).is_err());
        assert!(peek_header(&m[..m.len() - 1]).is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
