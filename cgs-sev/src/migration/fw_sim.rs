//! The simulator's migration commands (`SEND_*`, `RECEIVE_*`).
//!
//! This file is a child module of `firmware::sim` (included there with `#[path]`, so the
//! migration code stays under `src/migration/`), which lets it use the simulator's guest contexts
//! directly. `SevMigrationFirmware` is implemented here.
//!
//! The model follows the SEV API (kernel-abi.md §13–14):
//!
//! - `SEND_START`: guest RUNNING → SUPDATE; refused with `POLICY_FAILURE` when the policy has
//!   NOSEND; the target's PDH certificate must parse (`INVALID_CERTIFICATE` otherwise); fresh
//!   TEK/TIK, nonce and wrap IV; the session is wrapped with ECDH between this platform's PDH and
//!   the target's ([`crate::session::wrap_session`]). The platform and AMD chains are only bounded
//!   in length (KVM's limit): the simulator does not verify certificate signatures.
//! - `SEND_UPDATE_DATA`: one page range inside one 4 KiB page, 16-byte aligned length; the
//!   plaintext is what the guest sees (the VMM's mapping, see the simulator's module docs),
//!   sealed under TEK/TIK, context 0x02, with a fresh IV (a random per-session prefix and the
//!   packet number, so keystreams never overlap).
//! - `SEND_FINISH`: SUPDATE → SENT (the source can no longer run); `SEND_CANCEL`: SUPDATE →
//!   RUNNING.
//! - `RECEIVE_START`: a new context in RUPDATE, the session unwrapped with ECDH between this
//!   platform's PDH and the source's (`BAD_MEASUREMENT` for a bad wrap MAC, `POLICY_FAILURE` when
//!   the policy does not match the session's policy MAC).
//! - `RECEIVE_UPDATE_DATA`: the packet MAC is checked before anything is written
//!   (`BAD_MEASUREMENT`), compressed packets are refused (`INVALID_PARAM`), and — a check the
//!   simulator adds, which real firmware does not make — a packet whose IV was already accepted in
//!   this session is a replay and refused with `BAD_MEASUREMENT` too. The page becomes private.
//! - `RECEIVE_FINISH`: RUPDATE → RUNNING.

use std::collections::BTreeSet;

use kvm_ioctls::VmFd;
use rand_core::{OsRng, RngCore};
use vm_memory::VolatileSlice;

use cgs_core::{Error, FirmwareStatus, Result};

use super::{fw, kvm_err, session_status, GuestState, SimFirmware, SIM_FIRMWARE};
use crate::firmware::SevStatus;
use crate::migration::firmware::{PlatformCerts, ReceiveStart, SendSession, SevMigrationFirmware};
use crate::policy::SevPolicy;
use crate::session::{
    accept_session, open_packet, seal_packet, wrap_session, PacketContext, PacketHeader,
    SessionError, SevCert, TransportKeys, SEV_CERT_LEN, USAGE_PDH,
};
use crate::uapi::SEV_FW_BLOB_MAX_SIZE;

const OP_SEND_START: &str = "KVM_SEV_SEND_START";
const OP_SEND_UPDATE: &str = "KVM_SEV_SEND_UPDATE_DATA";
const OP_SEND_FINISH: &str = "KVM_SEV_SEND_FINISH";
const OP_SEND_CANCEL: &str = "KVM_SEV_SEND_CANCEL";
const OP_RECV_START: &str = "KVM_SEV_RECEIVE_START";
const OP_RECV_UPDATE: &str = "KVM_SEV_RECEIVE_UPDATE_DATA";
const OP_RECV_FINISH: &str = "KVM_SEV_RECEIVE_FINISH";

/// SEV API certificate usage of a PEK.
const USAGE_PEK: u32 = 0x1002;

/// Per-guest migration state of the simulated firmware.
#[derive(Debug, Default)]
pub(crate) struct MigrationState {
    /// IVs of the packets `RECEIVE_UPDATE_DATA` accepted in the current session.
    seen_ivs: BTreeSet<[u8; 16]>,
    /// SEND: random per-session IV prefix.
    iv_prefix: [u8; 8],
    /// SEND: packets sealed in this session.
    packets: u32,
}

impl MigrationState {
    /// A fresh IV: `prefix (random per session) ‖ packet number (u32 BE) ‖ 0 (u32)`. AES-CTR
    /// counts blocks in the low 32 bits, so no two packets of a session (at most 16 KiB each)
    /// share keystream.
    fn next_iv(&mut self) -> Option<[u8; 16]> {
        let n = self.packets;
        self.packets = n.checked_add(1)?;
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&self.iv_prefix);
        iv[8..12].copy_from_slice(&n.to_be_bytes());
        Some(iv)
    }
}

fn replayed(op: &'static str) -> Error {
    let mut status: FirmwareStatus = SevStatus::BAD_MEASUREMENT.to_firmware_status(SIM_FIRMWARE);
    status.detail = Some("packet replayed (IV already accepted in this session)".into());
    Error::Firmware { op, status }
}

/// The range of one SEND/RECEIVE_UPDATE_DATA call: non-empty, 16-byte multiple, inside one page.
fn check_page_range(op: &'static str, gpa: u64, len: usize) -> Result<()> {
    if len == 0 || (gpa & 0xfff) + len as u64 > 4096 {
        // KVM refuses a range crossing a page before calling the firmware.
        return Err(kvm_err(op, libc::EINVAL));
    }
    if !len.is_multiple_of(16) {
        return Err(fw(op, SevStatus::INVALID_LEN));
    }
    if !gpa.is_multiple_of(16) {
        return Err(fw(op, SevStatus::INVALID_ADDRESS));
    }
    Ok(())
}

impl SevMigrationFirmware for SimFirmware {
    fn platform_certs(&self) -> Result<PlatformCerts> {
        let p = self.platform.lock();
        let mut pek_cert = SevCert::pdh(p384::PublicKey::from(p.pek.verifying_key()));
        pek_cert.usage = USAGE_PEK;
        Ok(PlatformCerts {
            pdh: SevCert::pdh(p.pdh.public()).to_bytes(),
            plat_chain: pek_cert.to_bytes(),
            amd_chain: Vec::new(),
        })
    }

    fn send_start(&mut self, _vm: &VmFd, target: &PlatformCerts) -> Result<SendSession> {
        self.require_flavour(OP_SEND_START, false)?;
        if target.pdh.is_empty()
            || target.pdh.len() > SEV_FW_BLOB_MAX_SIZE
            || target.plat_chain.len() > SEV_FW_BLOB_MAX_SIZE
            || target.amd_chain.len() > SEV_FW_BLOB_MAX_SIZE
        {
            return Err(kvm_err(OP_SEND_START, libc::EINVAL));
        }
        let mut p = self.platform.lock();
        let z = {
            let cert = SevCert::from_bytes(&target.pdh)
                .map_err(|e| fw(OP_SEND_START, session_status(&e)))?;
            if cert.usage != USAGE_PDH || target.pdh.len() != SEV_CERT_LEN {
                return Err(fw(OP_SEND_START, SevStatus::INVALID_CERTIFICATE));
            }
            p.pdh.shared_secret(&cert.public)
        };
        let g = self.guest_mut(&mut p, OP_SEND_START, GuestState::Running)?;
        let policy = g.policy as u32;
        if !SevPolicy(policy).send_allowed() {
            let mut status = SevStatus::POLICY_FAILURE.to_firmware_status(SIM_FIRMWARE);
            status.detail = Some(format!(
                "guest policy {policy:#x} has NOSEND: the guest may not be sent"
            ));
            return Err(Error::Firmware {
                op: OP_SEND_START,
                status,
            });
        }
        let keys = TransportKeys::generate(&mut OsRng);
        let mut nonce = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        OsRng.fill_bytes(&mut iv);
        let blob = wrap_session(&keys, policy, &z[..], nonce, iv);
        g.keys = Some(keys);
        OsRng.fill_bytes(&mut g.migration.iv_prefix);
        g.migration.packets = 0;
        g.state = GuestState::SendUpdate;
        Ok(SendSession {
            policy,
            session: blob.to_bytes().to_vec(),
        })
    }

    fn send_update_data(
        &mut self,
        _vm: &VmFd,
        gpa: u64,
        page: &VolatileSlice<'_>,
    ) -> Result<(PacketHeader, Vec<u8>)> {
        self.require_flavour(OP_SEND_UPDATE, false)?;
        check_page_range(OP_SEND_UPDATE, gpa, page.len())?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_SEND_UPDATE, GuestState::SendUpdate)?;
        let iv = g
            .migration
            .next_iv()
            .ok_or_else(|| fw(OP_SEND_UPDATE, SevStatus::RESOURCE_LIMIT))?;
        let keys = g
            .keys
            .as_ref()
            .ok_or_else(|| fw(OP_SEND_UPDATE, SevStatus::INVALID_GUEST_STATE))?;
        let mut plain = zeroize::Zeroizing::new(vec![0u8; page.len()]);
        page.copy_to(&mut plain[..]);
        seal_packet(keys, PacketContext::Data, iv, &plain, &[])
            .map_err(|e| fw(OP_SEND_UPDATE, session_status(&e)))
    }

    fn send_finish(&mut self, _vm: &VmFd) -> Result<()> {
        self.require_flavour(OP_SEND_FINISH, false)?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_SEND_FINISH, GuestState::SendUpdate)?;
        g.state = GuestState::Sent;
        g.keys = None;
        Ok(())
    }

    fn send_cancel(&mut self, _vm: &VmFd) -> Result<()> {
        self.require_flavour(OP_SEND_CANCEL, false)?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_SEND_CANCEL, GuestState::SendUpdate)?;
        g.state = GuestState::Running;
        g.keys = None;
        Ok(())
    }

    fn receive_start(&mut self, _vm: &VmFd, s: &ReceiveStart<'_>) -> Result<u32> {
        let flavour = self.require_flavour(OP_RECV_START, false)?;
        if self.handle.is_some() {
            return Err(fw(OP_RECV_START, SevStatus::INVALID_GUEST_STATE));
        }
        let policy = SevPolicy(s.policy);
        if policy.validate().is_err() {
            return Err(fw(OP_RECV_START, SevStatus::INVALID_PARAM));
        }
        let mut p = self.platform.lock();
        if !policy.allows_firmware(p.config.build)
            || policy.is_es() != (flavour == super::Flavour::SevEs)
        {
            return Err(fw(OP_RECV_START, SevStatus::POLICY_FAILURE));
        }
        let keys = accept_session(&p.pdh, s.source_pdh, s.session, s.policy)
            .map_err(|e| fw(OP_RECV_START, session_status(&e)))?;
        let handle = Self::new_guest(&mut p, OP_RECV_START, flavour, u64::from(s.policy))?;
        if let Some(g) = p.guests.get_mut(&handle) {
            g.keys = Some(keys);
            g.state = GuestState::ReceiveUpdate;
        }
        drop(p);
        self.handle = Some(handle);
        Ok(handle)
    }

    fn receive_update_data(
        &mut self,
        _vm: &VmFd,
        gpa: u64,
        header: &PacketHeader,
        transport: &[u8],
        page: &VolatileSlice<'_>,
    ) -> Result<()> {
        self.require_flavour(OP_RECV_UPDATE, false)?;
        check_page_range(OP_RECV_UPDATE, gpa, page.len())?;
        if transport.len() != page.len() {
            return Err(fw(OP_RECV_UPDATE, SevStatus::INVALID_LEN));
        }
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_RECV_UPDATE, GuestState::ReceiveUpdate)?;
        let keys = g
            .keys
            .as_ref()
            .ok_or_else(|| fw(OP_RECV_UPDATE, SevStatus::INVALID_GUEST_STATE))?;
        let plain = open_packet(keys, PacketContext::Data, header, transport, &[]).map_err(
            |e| match e {
                SessionError::Compressed => fw(OP_RECV_UPDATE, SevStatus::INVALID_PARAM),
                _ => fw(OP_RECV_UPDATE, SevStatus::BAD_MEASUREMENT),
            },
        )?;
        if g.migration.seen_ivs.contains(&header.iv) {
            return Err(replayed(OP_RECV_UPDATE));
        }
        g.migration.seen_ivs.insert(header.iv);
        page.copy_from(&plain[..]);
        g.mark_private(gpa, page.len() as u64);
        Ok(())
    }

    fn receive_finish(&mut self, _vm: &VmFd) -> Result<()> {
        self.require_flavour(OP_RECV_FINISH, false)?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_RECV_FINISH, GuestState::ReceiveUpdate)?;
        g.state = GuestState::Running;
        g.migration.seen_ivs.clear();
        Ok(())
    }
}
