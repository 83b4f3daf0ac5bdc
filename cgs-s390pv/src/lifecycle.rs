//! The `s390-pv-guest` backend: QEMU's s390 PV flow over any [`Ultravisor`].
//!
//! ```text
//!  kvm_init ── KVM_CAP_S390_PROTECTED, unpack facility, CPU limit ──▶ ready (unprotected guest)
//!  guest diag 308 subcode 8  ──▶ set_pv_iplb   (validate the PV IPL block)
//!  guest diag 308 subcode 10 ──▶ protect       disable discard, add blocker, ENABLE, INFO,
//!                                              SET_SEC_PARMS, UNPACK × n, VERIFY
//!  re-IPL / external reset   ──▶ machine_reset(ReIpl): async cleanup or DISABLE, drop blocker
//!  modified clear / load normal ─▶ machine_reset(ModifiedClear|LoadNormal): UNSHARE_ALL, PREP_RESET
//!  dump                      ──▶ dump          INIT, CPU × n, CONFIG_STOR_STATE, COMPLETE
//! ```
//!
//! As in QEMU, the guest is *ready* after `kvm_init`: it boots unprotected and asks for the
//! transition itself. Every PV command goes through one private path that
//! retries `EINTR`, records a [`PvEvent`] and turns failures into `Error::Firmware` with the UV
//! rc/rrc and their names (or `Error::Kvm` when no UV call ran). A failed protect step after
//! ENABLE unprotects again and hands back the diag 308 response the guest sees.
//!
//! The VMM still does what only it can: intercept diag 308, stop vCPUs around resets, set the IPL
//! CPU to LOAD then OPERATING after a successful protect (`KVM_SET_MP_STATE`), and apply
//! [`DeviceRequirements`] (virtio `ACCESS_PLATFORM`, no RAM discard while protected).

use std::fmt;
use std::thread::JoinHandle;

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use cgs_core::config::S390PvGuestConfig;
use cgs_core::{
    ConfidentialBackend, DeviceRequirements, Error, FirmwareStatus, LaunchRegion, MigrationBlocker,
    PageType, Platform, Result,
};

pub use crate::diag308::{Diag308Response, ProtectError};
pub use crate::events::PvEvent;
use crate::ipl::{
    IplError, PvIplBlock, DIAG_308_RC_INVALID, DIAG_308_RC_INVAL_FOR_PV, DIAG_308_RC_NO_PV_CONF,
};
pub use crate::machine::{MachineSpec, ResetKind};
use crate::se_header::SeHeader;
use crate::uapi;
use crate::uv::rc::{cmd_name, rc_name, rrc_meaning, UV_RC_SSC_INVAL_HOSTKEY};
use crate::uv::{
    CpuState, HostSupport, PvCommand, PvInfoDump, PvInfoVm, PvOutcome, PvOutput, Ultravisor,
};

/// QEMU's migration blocker text while the guest is protected.
pub const MIGRATION_BLOCKER: &str = "protected VMs are currently not migratable.";
/// QEMU's hint when SET_SEC_PARMS fails with `0x0108`.
pub const HOSTKEY_HINT: &str =
    "Please check whether the image is correctly encrypted for this host";
/// QEMU's message when the unpack facility meets `--only-migratable`.
pub const ONLY_MIGRATABLE: &str =
    "The unpack facility is not compatible with the --only-migratable \
     option. You must remove either the 'unpack' facility or the --only-migratable option";
const TWO_GIB: u64 = 2 << 30;
const MIB: u64 = 1 << 20;
/// Largest dump buffer [`S390PvGuest::dump`] allocates for one `KVM_PV_DUMP` call (a sanity
/// limit on the sizes `KVM_PV_INFO_DUMP` reports; the UV's are a page or less per unit).
pub const MAX_DUMP_BUFFER: u64 = 16 * MIB;
/// Bound on EINTR retries of one command (QEMU retries without bound).
const MAX_EINTR_RETRIES: u32 = 10_000;
/// The command id recorded for vCPU ioctls that are not PV commands.
const NOT_A_PV_COMMAND: u32 = u32::MAX;

/// What a PV dump produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvDump {
    /// One encrypted CPU state per vCPU.
    pub cpus: Vec<Vec<u8>>,
    /// Storage state for all guest memory (`per_1m` bytes per 1 MiB).
    pub storage_state: Vec<u8>,
    /// The completion data (keys and tags the guest owner needs).
    pub completion: Vec<u8>,
}

/// The `s390-pv-guest` confidential-guest backend, generic over the Ultravisor.
pub struct S390PvGuest<U: Ultravisor> {
    config: S390PvGuestConfig,
    uv: U,
    machine: MachineSpec,
    host: Option<HostSupport>,
    vcpus: usize,
    protected: bool,
    blocker: bool,
    discard_disabled: bool,
    pv_iplb: Option<PvIplBlock>,
    header: Option<SeHeader>,
    info_vm: Option<PvInfoVm>,
    info_dump: Option<PvInfoDump>,
    cleanup: Option<JoinHandle<Result<PvOutcome>>>,
    events: Vec<PvEvent>,
    last_failure: Option<PvOutcome>,
}

impl<U: Ultravisor> fmt::Debug for S390PvGuest<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S390PvGuest")
            .field("id", &self.config.id)
            .field("machine", &self.machine)
            .field("protected", &self.protected)
            .field("blocker", &self.blocker)
            .finish_non_exhaustive()
    }
}

impl<U: Ultravisor> S390PvGuest<U> {
    /// A backend for `config` on `machine`, talking to `uv`.
    pub fn new(config: S390PvGuestConfig, uv: U, machine: MachineSpec) -> Result<Self> {
        config.validate()?;
        Ok(S390PvGuest {
            config,
            uv,
            machine,
            host: None,
            vcpus: 0,
            protected: false,
            blocker: false,
            discard_disabled: false,
            pv_iplb: None,
            header: None,
            info_vm: None,
            info_dump: None,
            cleanup: None,
            events: Vec::new(),
            last_failure: None,
        })
    }

    /// The Ultravisor handle.
    pub fn uv(&self) -> &U {
        &self.uv
    }

    /// Whether the guest is in protected mode now.
    pub fn is_protected(&self) -> bool {
        self.protected
    }

    /// `KVM_PV_INFO_VM`, once protected on a host with the dump capability.
    pub fn info_vm(&self) -> Option<PvInfoVm> {
        self.info_vm
    }

    /// `KVM_PV_INFO_DUMP`, likewise.
    pub fn info_dump(&self) -> Option<PvInfoDump> {
        self.info_dump
    }

    /// The steps taken so far.
    pub fn events(&self) -> &[PvEvent] {
        &self.events
    }

    /// Take (and clear) the steps taken so far.
    pub fn take_events(&mut self) -> Vec<PvEvent> {
        std::mem::take(&mut self.events)
    }

    /// The validated PV IPL block, once the guest set one.
    pub fn pv_iplb(&self) -> Option<&PvIplBlock> {
        self.pv_iplb.as_ref()
    }

    fn failure(&self, name: &'static str, id: u32, o: &PvOutcome) -> Error {
        let errno = o.errno.unwrap_or(0);
        if o.rc == 0 {
            return Error::kvm(name, vmm_sys_util::errno::Error::new(errno));
        }
        let mut detail = format!("rrc {:#x}", o.rrc);
        if let Some(m) = rrc_meaning(id, o.rc, o.rrc) {
            detail.push_str(&format!(" ({m})"));
        }
        detail.push_str(&format!(
            "; KVM PV command {id} ({}) failed: header rc {:x} rrc {:x} IOCTL rc: {}",
            cmd_name(id),
            o.rc,
            o.rrc,
            -errno
        ));
        if id == uapi::KVM_PV_SET_SEC_PARMS && o.rc == UV_RC_SSC_INVAL_HOSTKEY {
            detail.push_str(&format!(". {HOSTKEY_HINT}"));
        }
        Error::Firmware {
            op: name,
            status: FirmwareStatus {
                firmware: self.uv.firmware_name(),
                code: u64::from(o.rc),
                name: rc_name(id, o.rc).into(),
                detail: Some(detail),
            },
        }
    }

    /// Issue one call through `issue`: retry `EINTR`, record it, and return its output or the
    /// error (`Error::Firmware` with rc/rrc names when the UV ran, else `Error::Kvm`). Every PV
    /// command and vCPU command goes through here.
    fn run_retrying(
        &mut self,
        name: &'static str,
        id: u32,
        mut issue: impl FnMut(&mut U) -> Result<PvOutcome>,
    ) -> Result<PvOutput> {
        let mut retries = 0;
        let o = loop {
            let o = issue(&mut self.uv)?;
            if o.errno == Some(libc::EINTR) && retries < MAX_EINTR_RETRIES {
                retries += 1;
                self.events.push(PvEvent::Interrupted(name));
                continue;
            }
            break o;
        };
        self.record(name, id, &o);
        if o.is_ok() {
            Ok(o.output)
        } else {
            self.last_failure = Some(o);
            Err(self.failure(name, id, &o))
        }
    }

    /// Issue one `KVM_S390_PV_COMMAND`.
    fn command(&mut self, vm: &VmFd, mut cmd: PvCommand<'_>) -> Result<PvOutput> {
        let (name, id) = (cmd.name(), cmd.id());
        self.run_retrying(name, id, |uv| uv.vm_command(vm, cmd.reborrow()))
    }

    fn record(&mut self, name: &'static str, cmd: u32, o: &PvOutcome) {
        self.events.push(PvEvent::Command {
            name,
            cmd,
            errno: o.errno,
            rc: o.rc,
            rrc: o.rrc,
        });
    }

    fn host(&self) -> Result<HostSupport> {
        self.host
            .ok_or_else(|| Error::unsupported("s390 PV", "kvm_init has not checked the host yet"))
    }

    /// diag 308 subcode 8: validate and keep the guest's PV IPL block. The SE header it names
    /// must be in `mem`. Refusals map to diag 308 response `0x0402` ([`IplError::diag_rc`]).
    pub fn set_pv_iplb<M: GuestMemoryBackend>(
        &mut self,
        bytes: &[u8],
        mem: &M,
    ) -> std::result::Result<(), IplError> {
        let iplb = PvIplBlock::parse(bytes)?;
        let len = iplb.pv_header_size;
        if !mem.check_range(GuestAddress(iplb.pv_header_addr), len as usize) {
            return Err(IplError::HeaderNotInMemory {
                addr: iplb.pv_header_addr,
                len,
            });
        }
        self.pv_iplb = Some(iplb);
        Ok(())
    }

    /// diag 308 subcode 10: switch the guest to protected mode (QEMU's `s390_machine_protect`).
    ///
    /// On failure after ENABLE the guest is unprotected again; the error carries the diag 308
    /// response (`{pv_cmd, rrc, rc, 0x0a02}`) the VMM hands to the guest in `r1+1`.
    pub fn protect<M: GuestMemoryBackend>(
        &mut self,
        vm: &VmFd,
        mem: &M,
    ) -> std::result::Result<(), ProtectError> {
        let fail = |error: Error, diag_rc: u16| ProtectError {
            error,
            response: Diag308Response::simple(diag_rc),
        };
        if self.protected {
            return Err(fail(
                Error::invalid_input("diag 308", "PV start while already protected"),
                DIAG_308_RC_INVALID,
            ));
        }
        let host = self.host().map_err(|e| fail(e, DIAG_308_RC_INVAL_FOR_PV))?;
        let Some(iplb) = self.pv_iplb.clone() else {
            return Err(fail(
                Error::invalid_input(
                    "diag 308",
                    "PV start without a PV IPL block (subcode 8 first)",
                ),
                DIAG_308_RC_NO_PV_CONF,
            ));
        };
        let mut header = vec![0u8; iplb.pv_header_size as usize];
        mem.read_slice(&mut header, GuestAddress(iplb.pv_header_addr))
            .map_err(|e| {
                fail(
                    Error::invalid_input("SE header", format!("cannot read guest memory: {e}")),
                    DIAG_308_RC_INVAL_FOR_PV,
                )
            })?;

        self.discard_disabled = true;
        self.events.push(PvEvent::DiscardDisabled);
        self.blocker = true;
        self.events.push(PvEvent::BlockerAdded);
        if let Err(error) = self.command(vm, PvCommand::Enable) {
            // Only the blocker and discard are undone: there is no configuration.
            self.drop_blocker();
            return Err(self.protect_failure(error, uapi::KVM_PV_ENABLE));
        }
        self.protected = true;
        match self.protect_steps(vm, host, &header, &iplb) {
            Ok(()) => {
                self.header = SeHeader::parse(&header).ok();
                Ok(())
            }
            Err((error, pv_cmd)) => {
                let err = self.protect_failure(error, pv_cmd);
                if let Err(e) = self.unprotect(vm) {
                    return Err(ProtectError {
                        error: Error::Backend {
                            context: format!("unprotect after a failed PV start ({})", err.error)
                                .into(),
                            source: Box::new(e),
                        },
                        response: err.response,
                    });
                }
                Err(err)
            }
        }
    }

    fn protect_failure(&self, error: Error, pv_cmd: u32) -> ProtectError {
        let (rc, rrc) = match (&error, self.last_failure) {
            (Error::Firmware { .. }, Some(o)) => (o.rc, o.rrc),
            _ => (0, 0),
        };
        ProtectError {
            error,
            response: Diag308Response {
                pv_cmd: pv_cmd as u16,
                rrc,
                rc,
                diag_rc: DIAG_308_RC_INVAL_FOR_PV,
            },
        }
    }

    fn protect_steps(
        &mut self,
        vm: &VmFd,
        host: HostSupport,
        header: &[u8],
        iplb: &PvIplBlock,
    ) -> std::result::Result<(), (Error, u32)> {
        if host.dump {
            let info = self
                .command(vm, PvCommand::InfoVm)
                .map_err(|e| (e, uapi::KVM_PV_INFO))?;
            if let PvOutput::InfoVm(v) = info {
                self.info_vm = Some(v);
            }
            let info = self
                .command(vm, PvCommand::InfoDump)
                .map_err(|e| (e, uapi::KVM_PV_INFO))?;
            if let PvOutput::InfoDump(d) = info {
                self.info_dump = Some(d);
            }
        }
        self.command(vm, PvCommand::SetSecParms { header })
            .map_err(|e| (e, uapi::KVM_PV_SET_SEC_PARMS))?;
        for c in &iplb.components {
            self.command(
                vm,
                PvCommand::Unpack {
                    addr: c.addr,
                    size: c.unpack_size(),
                    tweak: c.tweak_pref,
                },
            )
            .map_err(|e| (e, uapi::KVM_PV_UNPACK))?;
        }
        self.command(vm, PvCommand::Verify)
            .map_err(|e| (e, uapi::KVM_PV_VERIFY))?;
        Ok(())
    }

    fn drop_blocker(&mut self) {
        if self.blocker {
            self.blocker = false;
            self.events.push(PvEvent::BlockerRemoved);
        }
        if self.discard_disabled {
            self.discard_disabled = false;
            self.events.push(PvEvent::DiscardEnabled);
        }
    }

    /// Leave protected mode (QEMU's `s390_machine_unprotect`): asynchronous cleanup (PREPARE
    /// here, PERFORM on a separate thread) when the host supports it and guest RAM exceeds 2 GiB,
    /// else a synchronous DISABLE; then the blocker is removed and discard re-enabled. On a
    /// DISABLE failure the guest stays protected.
    pub fn unprotect(&mut self, vm: &VmFd) -> Result<()> {
        if !self.protected {
            return Ok(());
        }
        let host = self.host()?;
        let mut done = false;
        if host.async_disable && self.machine.ram_size > TWO_GIB {
            // A previous cleanup must be finished before another configuration is set aside.
            self.reap_cleanup();
            if self.command(vm, PvCommand::AsyncCleanupPrepare).is_ok() {
                // From here on KVM runs the guest unprotected, whatever happens to PERFORM.
                let started = self.uv.async_perform(vm).and_then(|perform| {
                    std::thread::Builder::new()
                        .name("pv-async-cleanup".into())
                        .spawn(perform)
                        .map_err(|e| Error::Backend {
                            context: "spawn the PV async cleanup thread".into(),
                            source: Box::new(e),
                        })
                });
                self.protected = false;
                self.header = None;
                self.drop_blocker();
                let handle = started.map_err(|e| Error::Backend {
                    context: "the guest left protected mode, but its set-aside configuration \
                              is only cleaned up when the VM is destroyed"
                        .into(),
                    source: Box::new(e),
                })?;
                self.cleanup = Some(handle);
                self.events.push(PvEvent::AsyncCleanupStarted);
                done = true;
            }
        }
        if !done {
            self.command(vm, PvCommand::Disable)?;
        }
        self.protected = false;
        self.header = None;
        self.drop_blocker();
        Ok(())
    }

    fn reap_cleanup(&mut self) {
        if self.cleanup.as_ref().is_some_and(|h| h.is_finished()) {
            let _ = self.wait_async_cleanup();
        }
    }

    /// Wait for the asynchronous cleanup thread, if one runs; its PERFORM outcome is recorded.
    pub fn wait_async_cleanup(&mut self) -> Option<Result<()>> {
        let handle = self.cleanup.take()?;
        let name = "KVM_PV_ASYNC_CLEANUP_PERFORM";
        Some(match handle.join() {
            Err(_) => Err(Error::unsupported(name, "the cleanup thread panicked")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(o)) => {
                self.record(name, uapi::KVM_PV_ASYNC_CLEANUP_PERFORM, &o);
                if o.is_ok() {
                    Ok(())
                } else {
                    Err(self.failure(name, uapi::KVM_PV_ASYNC_CLEANUP_PERFORM, &o))
                }
            }
        })
    }

    /// A machine reset. `ReIpl` leaves protected mode; `ModifiedClear` / `LoadNormal` keep it
    /// and issue UNSHARE_ALL then PREP_RESET (the VMM stops all vCPUs first; QEMU exits when
    /// these fail). Unprotected guests need nothing.
    pub fn machine_reset(&mut self, vm: &VmFd, kind: ResetKind) -> Result<()> {
        if !self.protected {
            return Ok(());
        }
        match kind {
            ResetKind::ReIpl => self.unprotect(vm),
            ResetKind::ModifiedClear | ResetKind::LoadNormal => {
                self.command(vm, PvCommand::UnshareAll)?;
                self.command(vm, PvCommand::PrepReset)?;
                Ok(())
            }
        }
    }

    /// Start the IPL CPU of the protected guest after a successful [`protect`](Self::protect):
    /// `KVM_SET_MP_STATE` LOAD, then OPERATING ("Firmware requires us to set the load state
    /// before we set the cpu to operating"). KVM (and the UV) refuse this before VERIFY.
    pub fn start_ipl_cpu(&mut self, vcpu: &VcpuFd) -> Result<()> {
        if !self.protected {
            return Err(Error::invalid_input(
                "IPL CPU",
                "the guest is not protected; start the CPU as for any guest",
            ));
        }
        for (name, state) in [
            ("KVM_SET_MP_STATE(LOAD)", CpuState::Load),
            ("KVM_SET_MP_STATE(OPERATING)", CpuState::Operating),
        ] {
            self.run_retrying(name, NOT_A_PV_COMMAND, |uv| uv.set_cpu_state(vcpu, state))?;
        }
        Ok(())
    }

    /// Dump the protected guest: INIT, each vCPU's state, the storage state of all guest memory
    /// in 1 MiB units, COMPLETE. Buffer sizes come from `KVM_PV_INFO_DUMP`. Refused by the UV
    /// when the SE header does not allow dumping.
    pub fn dump(&mut self, vm: &VmFd, vcpus: &[&VcpuFd]) -> Result<PvDump> {
        if !self.protected {
            return Err(Error::invalid_input(
                "PV dump",
                "the guest is not protected",
            ));
        }
        let Some(info) = self.info_dump else {
            return Err(Error::unsupported(
                "PV dump",
                "the host lacks KVM_CAP_S390_PROTECTED_DUMP (no KVM_PV_INFO_DUMP sizes)",
            ));
        };
        // The sizes come from KVM_PV_INFO_DUMP: check them before DUMP_INIT and before
        // allocating (the largest storage-state request covers 256 MiB).
        let size = |what: &str, n: Option<u64>| {
            n.filter(|&n| n <= MAX_DUMP_BUFFER)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    Error::invalid_input(
                        "PV dump",
                        format!("KVM_PV_INFO_DUMP {what} size exceeds {MAX_DUMP_BUFFER:#x} bytes"),
                    )
                })
        };
        let cpu_len = size("CPU buffer", Some(info.cpu_buffer_len))?;
        let per = info.config_mem_buffer_per_1m;
        let total_mib = self.machine.ram_size.div_ceil(MIB);
        size("storage state", total_mib.min(256).checked_mul(per))?;
        let completion_len = size("completion", Some(info.config_finalize_len))?;
        if let Err(e) = self.command(vm, PvCommand::DumpInit) {
            if self.header.as_ref().is_some_and(|h| !h.dump_allowed()) {
                return Err(Error::Backend {
                    context: "PV dump refused: the guest owner did not allow dumping (SE header PCF bit 34 clear)"
                        .into(),
                    source: Box::new(e),
                });
            }
            return Err(e);
        }
        let mut cpus = Vec::with_capacity(vcpus.len());
        for vcpu in vcpus {
            let mut buf = vec![0u8; cpu_len];
            self.run_retrying("KVM_PV_DUMP(CPU)", uapi::KVM_PV_DUMP, |uv| {
                uv.dump_cpu(vcpu, &mut buf)
            })?;
            cpus.push(buf);
        }
        let mut storage_state = Vec::new();
        let mut gaddr = 0u64;
        let mut left = total_mib;
        while left > 0 {
            let n = left.min(256);
            let mut buf = vec![0u8; size("storage state", n.checked_mul(per))?];
            let out = self.command(
                vm,
                PvCommand::DumpStorState {
                    gaddr,
                    buf: &mut buf,
                },
            )?;
            gaddr = match out {
                PvOutput::NextGaddr(g) => g,
                _ => gaddr + n * MIB,
            };
            storage_state.extend_from_slice(&buf);
            left -= n;
        }
        let mut completion = vec![0u8; completion_len];
        self.command(
            vm,
            PvCommand::DumpComplete {
                buf: &mut completion,
            },
        )?;
        Ok(PvDump {
            cpus,
            storage_state,
            completion,
        })
    }
}

impl<U: Ultravisor> ConfidentialBackend for S390PvGuest<U> {
    fn object_type(&self) -> &'static str {
        S390PvGuestConfig::TYPE
    }

    fn platform(&self) -> Platform {
        Platform::S390Pv
    }

    fn vm_type(&self) -> u64 {
        0
    }

    fn kvm_init(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()> {
        let host = self.uv.host_support(kvm, vm)?;
        if !host.protected {
            return Err(Error::unsupported(
                "s390-pv-guest",
                "Protected Virtualization requires KVM with KVM_CAP_S390_PROTECTED \
                 (an Ultravisor-enabled host booted with prot_virt=1)",
            ));
        }
        if !host.unpack_facility {
            return Err(Error::unsupported(
                "s390-pv-guest",
                "CPU model does not support Protected Virtualization",
            ));
        }
        if self.machine.only_migratable {
            return Err(Error::unsupported("s390-pv-guest", ONLY_MIGRATABLE));
        }
        let max = self.machine.pv_max_cpus();
        if self.machine.max_cpus > max {
            return Err(Error::invalid_input(
                "s390-pv-guest",
                format!("Protected VMs support a maximum of {max} CPUs"),
            ));
        }
        self.host = Some(host);
        Ok(())
    }

    fn vcpu_created(&mut self, _vm: &VmFd, index: usize, _vcpu: &VcpuFd) -> Result<()> {
        if index >= self.machine.max_cpus as usize {
            return Err(Error::invalid_input(
                "vCPU",
                format!(
                    "vCPU index {index} exceeds the machine's {} CPUs",
                    self.machine.max_cpus
                ),
            ));
        }
        self.vcpus += 1;
        Ok(())
    }

    fn launch_update(&mut self, _vm: &VmFd, region: &LaunchRegion<'_>) -> Result<()> {
        // s390 PV has no host-driven launch update: the guest unpacks its own image later.
        if region.page_type == PageType::Normal {
            Ok(())
        } else {
            Err(Error::invalid_input(
                "launch region",
                format!("s390 PV has no {} pages", region.page_type),
            ))
        }
    }

    fn set_vcpu_state(&mut self, _vm: &VmFd, _index: usize, _vcpu: &VcpuFd) -> Result<()> {
        Ok(())
    }

    fn finalize(&mut self, _vm: &VmFd) -> Result<()> {
        self.host().map(|_| ())
    }

    fn reset(&mut self, vm: &VmFd) -> Result<()> {
        self.machine_reset(vm, ResetKind::ReIpl)
    }

    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        self.blocker
            .then(|| MigrationBlocker::new(MIGRATION_BLOCKER))
    }

    fn device_requirements(&self) -> DeviceRequirements {
        let mut req = DeviceRequirements::protected();
        req.disable_ram_discard = self.discard_disabled;
        req
    }
}
