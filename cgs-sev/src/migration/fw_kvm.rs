//! The real firmware's migration commands: `KVM_SEV_SEND_*` / `KVM_SEV_RECEIVE_*` on the VM fd
//! and `SEV_PDH_CERT_EXPORT` on `/dev/sev`.
//!
//! This file is a child module of `firmware::kvm` (included there with `#[path]`, so the
//! migration code stays under `src/migration/`); `SevMigrationFirmware` is
//! implemented here. KVM moves one page per `SEND_UPDATE_DATA`/`RECEIVE_UPDATE_DATA` (the guest
//! range must lie in one 4 KiB page) and copies blobs of at most `SEV_FW_BLOB_MAX_SIZE`.
//! `KVM_SEV_SEND_UPDATE_VMSA` / `RECEIVE_UPDATE_VMSA` do not exist in KVM (the ids return
//! `EINVAL`), so SEV-ES guests cannot be migrated through this interface.

use kvm_ioctls::VmFd;
use vm_memory::VolatileSlice;

use cgs_core::{Error, Result};

use super::{len_u32, slice_addr, KvmFirmware};
use crate::migration::firmware::{PlatformCerts, ReceiveStart, SendSession, SevMigrationFirmware};
use crate::session::{PacketHeader, PACKET_HEADER_LEN, SESSION_LEN, SEV_CERT_LEN};
use crate::uapi::*;

impl SevMigrationFirmware for KvmFirmware {
    fn platform_certs(&self) -> Result<PlatformCerts> {
        let mut pdh = vec![0u8; SEV_CERT_LEN];
        let mut chain = vec![0u8; PlatformCerts::PLAT_CHAIN_LEN];
        let mut data = sev_user_data_pdh_cert_export {
            pdh_cert_address: pdh.as_mut_ptr() as u64,
            pdh_cert_len: pdh.len() as u32,
            cert_chain_address: chain.as_mut_ptr() as u64,
            cert_chain_len: chain.len() as u32,
        };
        // SAFETY: `data` is SEV_PDH_CERT_EXPORT's buffer; the firmware writes at most
        // `pdh_cert_len` / `cert_chain_len` bytes into `pdh` and `chain`, live for the call.
        unsafe { self.issue_platform("SEV_PDH_CERT_EXPORT", SEV_PDH_CERT_EXPORT, &mut data)? };
        let (pl, cl) = (data.pdh_cert_len as usize, data.cert_chain_len as usize);
        pdh.truncate(pl.min(SEV_CERT_LEN));
        chain.truncate(cl.min(PlatformCerts::PLAT_CHAIN_LEN));
        Ok(PlatformCerts {
            pdh,
            plat_chain: chain,
            // The ASK/ARK chain is published by AMD (KDS), not exported by the firmware.
            amd_chain: Vec::new(),
        })
    }

    fn send_start(&mut self, vm: &VmFd, t: &PlatformCerts) -> Result<SendSession> {
        let mut session = vec![0u8; SESSION_LEN];
        let mut s = kvm_sev_send_start {
            pdh_cert_uaddr: t.pdh.as_ptr() as u64,
            pdh_cert_len: len_u32("target PDH certificate", t.pdh.len())?,
            plat_certs_uaddr: t.plat_chain.as_ptr() as u64,
            plat_certs_len: len_u32("platform certificates", t.plat_chain.len())?,
            amd_certs_uaddr: t.amd_chain.as_ptr() as u64,
            amd_certs_len: len_u32("AMD certificates", t.amd_chain.len())?,
            session_uaddr: session.as_mut_ptr() as u64,
            session_len: SESSION_LEN as u32,
            ..Default::default()
        };
        self.issue(vm, "KVM_SEV_SEND_START", KVM_SEV_SEND_START, Some(&mut s))?;
        session.truncate((s.session_len as usize).min(SESSION_LEN));
        Ok(SendSession {
            policy: s.policy,
            session,
        })
    }

    fn send_update_data(
        &mut self,
        vm: &VmFd,
        _gpa: u64,
        page: &VolatileSlice<'_>,
    ) -> Result<(PacketHeader, Vec<u8>)> {
        let mut hdr = [0u8; PACKET_HEADER_LEN];
        let mut trans = vec![0u8; page.len()];
        let mut u = kvm_sev_send_update_data {
            hdr_uaddr: hdr.as_mut_ptr() as u64,
            hdr_len: PACKET_HEADER_LEN as u32,
            guest_uaddr: slice_addr(page),
            guest_len: len_u32("SEND_UPDATE_DATA page", page.len())?,
            trans_uaddr: trans.as_mut_ptr() as u64,
            trans_len: len_u32("SEND_UPDATE_DATA page", page.len())?,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_SEND_UPDATE_DATA",
            KVM_SEV_SEND_UPDATE_DATA,
            Some(&mut u),
        )?;
        trans.truncate((u.trans_len as usize).min(page.len()));
        Ok((PacketHeader::from_bytes(&hdr).map_err(Error::from)?, trans))
    }

    fn send_finish(&mut self, vm: &VmFd) -> Result<()> {
        self.issue::<u8>(vm, "KVM_SEV_SEND_FINISH", KVM_SEV_SEND_FINISH, None)
    }

    fn send_cancel(&mut self, vm: &VmFd) -> Result<()> {
        self.issue::<u8>(vm, "KVM_SEV_SEND_CANCEL", KVM_SEV_SEND_CANCEL, None)
    }

    fn receive_start(&mut self, vm: &VmFd, r: &ReceiveStart<'_>) -> Result<u32> {
        let mut s = kvm_sev_receive_start {
            handle: 0,
            policy: r.policy,
            pdh_uaddr: r.source_pdh.as_ptr() as u64,
            pdh_len: len_u32("source PDH certificate", r.source_pdh.len())?,
            session_uaddr: r.session.as_ptr() as u64,
            session_len: len_u32("session", r.session.len())?,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_RECEIVE_START",
            KVM_SEV_RECEIVE_START,
            Some(&mut s),
        )?;
        Ok(s.handle)
    }

    fn receive_update_data(
        &mut self,
        vm: &VmFd,
        _gpa: u64,
        header: &PacketHeader,
        transport: &[u8],
        page: &VolatileSlice<'_>,
    ) -> Result<()> {
        let hdr = header.to_bytes();
        let mut u = kvm_sev_receive_update_data {
            hdr_uaddr: hdr.as_ptr() as u64,
            hdr_len: PACKET_HEADER_LEN as u32,
            guest_uaddr: slice_addr(page),
            guest_len: len_u32("RECEIVE_UPDATE_DATA page", page.len())?,
            trans_uaddr: transport.as_ptr() as u64,
            trans_len: len_u32("RECEIVE_UPDATE_DATA transport", transport.len())?,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_RECEIVE_UPDATE_DATA",
            KVM_SEV_RECEIVE_UPDATE_DATA,
            Some(&mut u),
        )
    }

    fn receive_finish(&mut self, vm: &VmFd) -> Result<()> {
        self.issue::<u8>(vm, "KVM_SEV_RECEIVE_FINISH", KVM_SEV_RECEIVE_FINISH, None)
    }
}
