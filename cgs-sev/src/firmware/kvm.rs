//! The real secure processor: `KVM_MEMORY_ENCRYPT_OP` on the VM fd, `SEV_ISSUE_CMD` on
//! `/dev/sev`.
//!
//! Error mapping (kernel-abi.md §2): `ENOTTY` means this KVM has no SEV (kvm_amd without `sev=1`,
//! or not AMD) and becomes `Error::Unsupported`; a failing command with a non-zero firmware
//! `error` becomes `Error::Firmware` with the status name; anything else is `Error::Kvm` with the
//! command name and errno (e.g. `EPERM` for a legacy command on an SNP VM, `EINVAL` for a
//! command this KVM does not implement).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use cgs_core::uapi::{get_device_attr_u64, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES};
use cgs_core::{Error, Result};
use cgs_gmem::attrs::{KvmAttributes, MemoryAttributes};
use cgs_gmem::tracker::MemState;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::VolatileSlice;
use vmm_sys_util::errno;

use super::{
    Flavour, GuestStatus, InitParams, LaunchStart, SevFirmware, SevStatus, SnpLaunchFinish,
    SnpLaunchStart, SnpUpdate, SEV_FIRMWARE,
};
use crate::measure::vmsa::VmsaPage;
use crate::session::{FirmwareBuild, LaunchMeasurement, PacketHeader, MEASUREMENT_LEN};
use crate::uapi::*;

// Live migration (issue 7): SEND_*/RECEIVE_* through KVM.
#[path = "../migration/fw_kvm.rs"]
mod migration;

/// What `Error::Unsupported` says when `KVM_MEMORY_ENCRYPT_OP` returns `ENOTTY`.
pub const NO_SEV: &str = "this KVM has no SEV (KVM_MEMORY_ENCRYPT_OP: ENOTTY)";

/// The real firmware, through KVM and `/dev/sev`.
#[derive(Debug)]
pub struct KvmFirmware {
    sev: Option<File>,
}

fn fd_of(f: &Option<File>) -> u32 {
    f.as_ref().map_or(u32::MAX, |f| f.as_raw_fd() as u32)
}

impl KvmFirmware {
    /// Check that `kvm` has SEV (`KVM_MEMORY_ENCRYPT_OP(NULL)` on a scratch VM), then open the
    /// SEV device (`sev-device`, normally `/dev/sev`).
    pub fn open(kvm: &Kvm, sev_device: &str) -> Result<Self> {
        let vm = kvm
            .create_vm()
            .map_err(|e| Error::kvm("KVM_CREATE_VM", e))?;
        Self::probe(&vm)?;
        let sev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(sev_device)
            .map_err(|e| {
                Error::unsupported(
                    format!("SEV device {sev_device}"),
                    format!("cannot open it: {e}"),
                )
            })?;
        Ok(KvmFirmware { sev: Some(sev) })
    }

    /// A firmware handle without the SEV device (commands that need `sev_fd` fail with
    /// `EBADF`); for probing and tests.
    pub fn without_device() -> Self {
        KvmFirmware { sev: None }
    }

    /// `KVM_MEMORY_ENCRYPT_OP(NULL)`: `Ok` when KVM has SEV enabled.
    pub fn probe(vm: &VmFd) -> Result<()> {
        // SAFETY: a NULL argument is the documented "is SEV enabled" probe; the kernel does not
        // dereference it.
        match unsafe { vm.encrypt_op(std::ptr::null_mut::<u8>()) } {
            Ok(()) => Ok(()),
            Err(e) => Err(map_errno("KVM_MEMORY_ENCRYPT_OP", e, 0)),
        }
    }

    /// `SEV_ISSUE_CMD` command `id` on the SEV device with its command buffer `data`.
    ///
    /// # Safety
    ///
    /// `data` must be the command buffer the firmware expects for `id`, and every buffer it
    /// points at must be live and at least as long as `data` says, for the call.
    unsafe fn issue_platform<T>(&self, op: &'static str, id: u32, data: &mut T) -> Result<()> {
        let dev = self
            .sev
            .as_ref()
            .ok_or_else(|| Error::unsupported(op, "no SEV device was opened"))?;
        let mut cmd = sev_issue_cmd {
            cmd: id,
            data: data as *mut T as u64,
            error: 0,
        };
        // SAFETY: `dev` is an open /dev/sev; the kernel reads the 16-byte packed `cmd`, reads and
        // writes `data` and the buffers it names (valid by this function's contract) and writes
        // `cmd.error`, all live for the call.
        let ret = unsafe {
            libc::ioctl(
                dev.as_raw_fd(),
                SEV_ISSUE_CMD as libc::c_ulong,
                &mut cmd as *mut sev_issue_cmd,
            )
        };
        if ret < 0 {
            let error = cmd.error;
            return Err(map_errno(op, errno::Error::last(), error));
        }
        Ok(())
    }

    fn issue<T>(&self, vm: &VmFd, op: &'static str, id: u32, data: Option<&mut T>) -> Result<()> {
        let mut cmd = kvm_sev_cmd {
            id,
            data: data.map_or(0, |d| d as *mut T as u64),
            sev_fd: fd_of(&self.sev),
            ..Default::default()
        };
        match vm.encrypt_op_sev(&mut cmd) {
            Ok(()) => Ok(()),
            Err(e) => Err(map_errno(op, e, cmd.error)),
        }
    }
}

/// Map a failed command to the error classes above.
pub fn map_errno(op: &'static str, e: errno::Error, fw_error: u32) -> Error {
    if e.errno() == libc::ENOTTY {
        Error::unsupported(op, NO_SEV)
    } else if fw_error != 0 {
        SevStatus(fw_error).error(SEV_FIRMWARE, op)
    } else {
        Error::kvm(op, e)
    }
}

fn slice_addr(s: &VolatileSlice<'_>) -> u64 {
    s.ptr_guard().as_ptr() as u64
}

fn len_u32(what: &'static str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::invalid_input(what, format!("{len} bytes is too long")))
}

impl SevFirmware for KvmFirmware {
    fn name(&self) -> &'static str {
        SEV_FIRMWARE
    }

    fn kvm_vm_type(&self, flavour: Flavour, legacy: bool) -> u64 {
        if legacy && flavour != Flavour::SevSnp {
            KVM_X86_DEFAULT_VM
        } else {
            flavour.vm_type()
        }
    }

    fn vmsa_features(&self, kvm: &Kvm) -> Result<u64> {
        get_device_attr_u64(kvm, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES).map_err(|e| {
            if e.errno() == libc::ENXIO || e.errno() == libc::ENOTTY {
                Error::unsupported(
                    "KVM_X86_SEV_VMSA_FEATURES",
                    format!("this KVM has no SEV device attributes ({e})"),
                )
            } else {
                Error::kvm("KVM_GET_DEVICE_ATTR(KVM_X86_SEV_VMSA_FEATURES)", e)
            }
        })
    }

    fn c_bit_position(&self, kvm: &Kvm) -> Result<u32> {
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == 0x8000_001F)
            .map(|e| e.ebx & 0x3F)
            .ok_or_else(|| {
                Error::unsupported(
                    "SEV",
                    "KVM reports no CPUID leaf 0x8000001F (the host has no SEV)",
                )
            })
    }

    fn snp_policy_bits(&self, kvm: &Kvm) -> Option<u64> {
        get_device_attr_u64(kvm, KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS).ok()
    }

    fn build(&self) -> Result<FirmwareBuild> {
        let mut status = sev_user_data_status::default();
        // SAFETY: SEV_PLATFORM_STATUS takes a `sev_user_data_status`, which holds no pointers.
        unsafe { self.issue_platform("SEV_PLATFORM_STATUS", SEV_PLATFORM_STATUS, &mut status)? };
        Ok(FirmwareBuild {
            api_major: status.api_major,
            api_minor: status.api_minor,
            build: status.build,
        })
    }

    fn init(&mut self, vm: &VmFd, params: &InitParams) -> Result<()> {
        match *params {
            InitParams::Legacy(Flavour::Sev) => {
                self.issue::<u8>(vm, "KVM_SEV_INIT", KVM_SEV_INIT, None)
            }
            InitParams::Legacy(Flavour::SevEs) => {
                self.issue::<u8>(vm, "KVM_SEV_ES_INIT", KVM_SEV_ES_INIT, None)
            }
            InitParams::Legacy(Flavour::SevSnp) => Err(Error::invalid_input(
                "SEV init",
                "SEV-SNP has no legacy INIT; use INIT2 on a KVM_X86_SNP_VM",
            )),
            InitParams::Init2 {
                vmsa_features,
                ghcb_version,
                ..
            } => {
                let mut init = kvm_sev_init {
                    vmsa_features,
                    ghcb_version,
                    ..Default::default()
                };
                self.issue(vm, "KVM_SEV_INIT2", KVM_SEV_INIT2, Some(&mut init))
            }
        }
    }

    fn register_region(&mut self, vm: &VmFd, region: &VolatileSlice<'_>) -> Result<()> {
        vm.register_enc_memory_region(&kvm_bindings::kvm_enc_region {
            addr: slice_addr(region),
            size: region.len() as u64,
        })
        .map_err(|e| map_errno("KVM_MEMORY_ENCRYPT_REG_REGION", e, 0))
    }

    fn launch_start(&mut self, vm: &VmFd, p: &LaunchStart<'_>) -> Result<u32> {
        let (dh_uaddr, dh_len) = match p.dh_cert {
            Some(c) => (c.as_ptr() as u64, len_u32("DH certificate", c.len())?),
            None => (0, 0),
        };
        let (session_uaddr, session_len) = match p.session {
            Some(s) => (s.as_ptr() as u64, len_u32("session", s.len())?),
            None => (0, 0),
        };
        let mut start = kvm_sev_launch_start {
            handle: p.handle,
            policy: p.policy,
            dh_uaddr,
            dh_len,
            session_uaddr,
            session_len,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_LAUNCH_START",
            KVM_SEV_LAUNCH_START,
            Some(&mut start),
        )?;
        Ok(start.handle)
    }

    fn launch_update_data(&mut self, vm: &VmFd, _gpa: u64, data: &VolatileSlice<'_>) -> Result<()> {
        let mut upd = kvm_sev_launch_update_data {
            uaddr: slice_addr(data),
            len: len_u32("LAUNCH_UPDATE_DATA region", data.len())?,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_LAUNCH_UPDATE_DATA",
            KVM_SEV_LAUNCH_UPDATE_DATA,
            Some(&mut upd),
        )
    }

    fn launch_update_vmsa(&mut self, vm: &VmFd, _vmsas: &[VmsaPage]) -> Result<()> {
        // KVM encrypts the VMSA it builds from each vCPU's registers, which the backend set
        // from the same builder that produced `_vmsas`.
        self.issue::<u8>(
            vm,
            "KVM_SEV_LAUNCH_UPDATE_VMSA",
            KVM_SEV_LAUNCH_UPDATE_VMSA,
            None,
        )
    }

    fn launch_measure(&mut self, vm: &VmFd) -> Result<LaunchMeasurement> {
        let mut buf = [0u8; MEASUREMENT_LEN];
        let mut m = kvm_sev_launch_measure {
            uaddr: buf.as_mut_ptr() as u64,
            len: MEASUREMENT_LEN as u32,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_LAUNCH_MEASURE",
            KVM_SEV_LAUNCH_MEASURE,
            Some(&mut m),
        )?;
        LaunchMeasurement::from_bytes(&buf).map_err(Error::from)
    }

    fn launch_secret(
        &mut self,
        vm: &VmFd,
        _gpa: u64,
        header: &PacketHeader,
        ciphertext: &[u8],
        target: &VolatileSlice<'_>,
    ) -> Result<()> {
        let hdr = header.to_bytes();
        let mut s = kvm_sev_launch_secret {
            hdr_uaddr: hdr.as_ptr() as u64,
            hdr_len: hdr.len() as u32,
            guest_uaddr: slice_addr(target),
            guest_len: len_u32("launch secret target", target.len())?,
            trans_uaddr: ciphertext.as_ptr() as u64,
            trans_len: len_u32("launch secret", ciphertext.len())?,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_LAUNCH_SECRET",
            KVM_SEV_LAUNCH_SECRET,
            Some(&mut s),
        )
    }

    fn launch_finish(&mut self, vm: &VmFd) -> Result<()> {
        self.issue::<u8>(vm, "KVM_SEV_LAUNCH_FINISH", KVM_SEV_LAUNCH_FINISH, None)
    }

    fn attestation_report(&mut self, vm: &VmFd, mnonce: [u8; 16]) -> Result<Vec<u8>> {
        // First call with len 0 asks for the length (INVALID_LEN with len filled in).
        let mut q = kvm_sev_attestation_report {
            mnonce,
            ..Default::default()
        };
        match self.issue(
            vm,
            "KVM_SEV_GET_ATTESTATION_REPORT",
            KVM_SEV_GET_ATTESTATION_REPORT,
            Some(&mut q),
        ) {
            Ok(()) => {}
            Err(e) if status_is(&e, SevStatus::INVALID_LEN) => {}
            Err(e) => return Err(e),
        }
        let len = usize::try_from(q.len).unwrap_or(0);
        if len == 0 || len > SEV_FW_BLOB_MAX_SIZE {
            return Err(Error::invalid_input(
                "attestation report length",
                format!("KVM reported {len} bytes"),
            ));
        }
        let mut buf = vec![0u8; len];
        let mut r = kvm_sev_attestation_report {
            mnonce,
            uaddr: buf.as_mut_ptr() as u64,
            len: len as u32,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_GET_ATTESTATION_REPORT",
            KVM_SEV_GET_ATTESTATION_REPORT,
            Some(&mut r),
        )?;
        Ok(buf)
    }

    fn guest_status(&mut self, vm: &VmFd) -> Result<GuestStatus> {
        let mut s = kvm_sev_guest_status::default();
        self.issue(
            vm,
            "KVM_SEV_GUEST_STATUS",
            KVM_SEV_GUEST_STATUS,
            Some(&mut s),
        )?;
        Ok(GuestStatus {
            handle: s.handle,
            policy: s.policy,
            state: s.state,
        })
    }

    fn dbg_decrypt(
        &mut self,
        vm: &VmFd,
        _gpa: u64,
        src: &VolatileSlice<'_>,
        dst: &mut [u8],
    ) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::invalid_input(
                "DBG_DECRYPT",
                "source and destination differ in length",
            ));
        }
        let mut d = kvm_sev_dbg {
            src_uaddr: slice_addr(src),
            dst_uaddr: dst.as_mut_ptr() as u64,
            len: len_u32("DBG_DECRYPT range", dst.len())?,
            ..Default::default()
        };
        self.issue(vm, "KVM_SEV_DBG_DECRYPT", KVM_SEV_DBG_DECRYPT, Some(&mut d))
    }

    fn snp_launch_start(&mut self, vm: &VmFd, p: &SnpLaunchStart) -> Result<()> {
        let mut start = kvm_sev_snp_launch_start {
            policy: p.policy,
            gosvw: p.gosvw,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_SNP_LAUNCH_START",
            KVM_SEV_SNP_LAUNCH_START,
            Some(&mut start),
        )
    }

    fn snp_set_private(&mut self, vm: &VmFd, gpa: u64, len: u64) -> Result<()> {
        // cgs-gmem's attribute path: `Unsupported` when KVM has no PRIVATE attribute.
        KvmAttributes::new(vm)?.set(gpa, len, MemState::Private)
    }

    fn snp_launch_update(&mut self, vm: &VmFd, u: &mut SnpUpdate<'_>) -> Result<()> {
        let base = slice_addr(&u.source);
        let mut p = kvm_sev_snp_launch_update {
            gfn_start: u.gfn_start,
            uaddr: base + u.done as u64,
            len: u.remaining() as u64,
            type_: u.page_type.raw(),
            ..Default::default()
        };
        let before = p.len;
        let res = self.issue(
            vm,
            "KVM_SEV_SNP_LAUNCH_UPDATE",
            KVM_SEV_SNP_LAUNCH_UPDATE,
            Some(&mut p),
        );
        // KVM writes progress back on success and on EAGAIN; never trust it beyond the range.
        let processed = before.saturating_sub(p.len).min(before);
        u.done += processed as usize;
        u.gfn_start = p.gfn_start;
        res
    }

    fn snp_launch_finish(
        &mut self,
        vm: &VmFd,
        p: &SnpLaunchFinish<'_>,
        _vmsas: &[VmsaPage],
    ) -> Result<()> {
        let mut f = kvm_sev_snp_launch_finish {
            id_block_uaddr: p.id_block.map_or(0, |b| b.as_ptr() as u64),
            id_auth_uaddr: p.id_auth.map_or(0, |a| a.as_ptr() as u64),
            id_block_en: u8::from(p.id_block.is_some()),
            auth_key_en: u8::from(p.author_key),
            vcek_disabled: u8::from(p.vcek_disabled),
            host_data: p.host_data,
            ..Default::default()
        };
        self.issue(
            vm,
            "KVM_SEV_SNP_LAUNCH_FINISH",
            KVM_SEV_SNP_LAUNCH_FINISH,
            Some(&mut f),
        )
    }

    fn snp_enable_req_certs(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()> {
        match get_device_attr_u64(kvm, KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS) {
            Ok(1) => self.issue::<u8>(
                vm,
                "KVM_SEV_SNP_ENABLE_REQ_CERTS",
                KVM_SEV_SNP_ENABLE_REQ_CERTS,
                None,
            ),
            Ok(v) => Err(Error::unsupported(
                "KVM_SEV_SNP_ENABLE_REQ_CERTS",
                format!("KVM_X86_SEV_SNP_REQ_CERTS is {v}"),
            )),
            Err(e) => Err(Error::unsupported(
                "KVM_SEV_SNP_ENABLE_REQ_CERTS",
                format!("this kernel has no KVM_EXIT_SNP_REQ_CERTS (device attribute: {e})"),
            )),
        }
    }
}

fn status_is(e: &Error, s: SevStatus) -> bool {
    super::status_of(e) == Some(s)
}
