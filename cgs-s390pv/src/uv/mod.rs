//! The Ultravisor as the host sees it through KVM: one trait, two implementations.
//!
//! [`Ultravisor`] is the `KVM_S390_PV_COMMAND` / `KVM_S390_PV_CPU_COMMAND` interface plus the
//! host capability checks. [`KvmUltravisor`](kvm::KvmUltravisor) issues the real ioctls (on an
//! s390x host; elsewhere it reports `Unsupported`); [`SimUltravisor`](sim::SimUltravisor) is a
//! software model of KVM + Ultravisor over the VMM's guest memory. The backend
//! ([`S390PvGuest`](crate::S390PvGuest)) runs the same sequence over both: it owns the order of
//! commands, the EINTR retry, and how failures are reported; an implementation only executes one
//! command and returns what KVM would (errno, UV rc/rrc, output).

pub mod kvm;
pub mod rc;
pub mod sim;

use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use cgs_core::Result;

use crate::uapi;

/// One `KVM_S390_PV_COMMAND`, with its data.
#[derive(Debug)]
pub enum PvCommand<'a> {
    /// `KVM_PV_ENABLE`: create the secure configuration and secure CPUs.
    Enable,
    /// `KVM_PV_DISABLE`: destroy it (guest memory is cleared).
    Disable,
    /// `KVM_PV_SET_SEC_PARMS` with the SE header bytes.
    SetSecParms {
        /// The SE header, copied out of guest memory.
        header: &'a [u8],
    },
    /// `KVM_PV_UNPACK` of `size` bytes at `addr` with tweak prefix `tweak`.
    Unpack {
        /// Guest address.
        addr: u64,
        /// Size in bytes.
        size: u64,
        /// Tweak prefix.
        tweak: u64,
    },
    /// `KVM_PV_VERIFY`.
    Verify,
    /// `KVM_PV_PREP_RESET`.
    PrepReset,
    /// `KVM_PV_UNSHARE_ALL`.
    UnshareAll,
    /// `KVM_PV_INFO` with `KVM_PV_INFO_VM`.
    InfoVm,
    /// `KVM_PV_INFO` with `KVM_PV_INFO_DUMP`.
    InfoDump,
    /// `KVM_PV_DUMP` / `KVM_PV_DUMP_INIT`.
    DumpInit,
    /// `KVM_PV_DUMP` / `KVM_PV_DUMP_CONFIG_STOR_STATE` from `gaddr` into `buf`.
    DumpStorState {
        /// First guest address (1 MiB aligned).
        gaddr: u64,
        /// Output buffer (a non-zero multiple of the per-1-MiB size).
        buf: &'a mut [u8],
    },
    /// `KVM_PV_DUMP` / `KVM_PV_DUMP_COMPLETE` into `buf`.
    DumpComplete {
        /// Output buffer (at least the finalize size).
        buf: &'a mut [u8],
    },
    /// `KVM_PV_ASYNC_CLEANUP_PREPARE`.
    AsyncCleanupPrepare,
    /// `KVM_PV_ASYNC_CLEANUP_PERFORM`.
    AsyncCleanupPerform,
}

impl PvCommand<'_> {
    /// The `KVM_PV_*` command number.
    pub fn id(&self) -> u32 {
        match self {
            PvCommand::Enable => uapi::KVM_PV_ENABLE,
            PvCommand::Disable => uapi::KVM_PV_DISABLE,
            PvCommand::SetSecParms { .. } => uapi::KVM_PV_SET_SEC_PARMS,
            PvCommand::Unpack { .. } => uapi::KVM_PV_UNPACK,
            PvCommand::Verify => uapi::KVM_PV_VERIFY,
            PvCommand::PrepReset => uapi::KVM_PV_PREP_RESET,
            PvCommand::UnshareAll => uapi::KVM_PV_UNSHARE_ALL,
            PvCommand::InfoVm | PvCommand::InfoDump => uapi::KVM_PV_INFO,
            PvCommand::DumpInit
            | PvCommand::DumpStorState { .. }
            | PvCommand::DumpComplete { .. } => uapi::KVM_PV_DUMP,
            PvCommand::AsyncCleanupPrepare => uapi::KVM_PV_ASYNC_CLEANUP_PREPARE,
            PvCommand::AsyncCleanupPerform => uapi::KVM_PV_ASYNC_CLEANUP_PERFORM,
        }
    }

    /// The same command with its buffers reborrowed, to issue it again (EINTR retry).
    pub fn reborrow(&mut self) -> PvCommand<'_> {
        match self {
            PvCommand::Enable => PvCommand::Enable,
            PvCommand::Disable => PvCommand::Disable,
            PvCommand::SetSecParms { header } => PvCommand::SetSecParms { header },
            PvCommand::Unpack { addr, size, tweak } => PvCommand::Unpack {
                addr: *addr,
                size: *size,
                tweak: *tweak,
            },
            PvCommand::Verify => PvCommand::Verify,
            PvCommand::PrepReset => PvCommand::PrepReset,
            PvCommand::UnshareAll => PvCommand::UnshareAll,
            PvCommand::InfoVm => PvCommand::InfoVm,
            PvCommand::InfoDump => PvCommand::InfoDump,
            PvCommand::DumpInit => PvCommand::DumpInit,
            PvCommand::DumpStorState { gaddr, buf } => {
                PvCommand::DumpStorState { gaddr: *gaddr, buf }
            }
            PvCommand::DumpComplete { buf } => PvCommand::DumpComplete { buf },
            PvCommand::AsyncCleanupPrepare => PvCommand::AsyncCleanupPrepare,
            PvCommand::AsyncCleanupPerform => PvCommand::AsyncCleanupPerform,
        }
    }

    /// A short name for messages (`KVM_PV_DUMP` subcommands are named).
    pub fn name(&self) -> &'static str {
        match self {
            PvCommand::InfoVm => "KVM_PV_INFO(VM)",
            PvCommand::InfoDump => "KVM_PV_INFO(DUMP)",
            PvCommand::DumpInit => "KVM_PV_DUMP(INIT)",
            PvCommand::DumpStorState { .. } => "KVM_PV_DUMP(CONFIG_STOR_STATE)",
            PvCommand::DumpComplete { .. } => "KVM_PV_DUMP(COMPLETE)",
            other => rc::cmd_name(other.id()),
        }
    }
}

/// `KVM_PV_INFO_VM`: what the UV supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PvInfoVm {
    /// Installed UV calls (MSB-0 bits).
    pub inst_calls_list: [u64; 4],
    /// Maximum CPUs of a secure guest.
    pub max_cpus: u64,
    /// Maximum secure guests.
    pub max_guests: u64,
    /// Highest secure guest address.
    pub max_guest_addr: u64,
    /// Feature indications.
    pub feature_indication: u64,
}

/// `KVM_PV_INFO_DUMP`: the dump buffer sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PvInfoDump {
    /// Size of one CPU's dump.
    pub cpu_buffer_len: u64,
    /// Storage-state bytes per 1 MiB of guest memory.
    pub config_mem_buffer_per_1m: u64,
    /// Size of the completion data.
    pub config_finalize_len: u64,
}

/// What a command produced besides rc/rrc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvOutput {
    /// Nothing.
    None,
    /// `KVM_PV_INFO_VM`.
    InfoVm(PvInfoVm),
    /// `KVM_PV_INFO_DUMP`.
    InfoDump(PvInfoDump),
    /// CONFIG_STOR_STATE: the next guest address.
    NextGaddr(u64),
}

/// What KVM returned for one command: the ioctl's errno (if it failed), the UV rc/rrc of the
/// last UV call it made (0 when none) and any output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvOutcome {
    /// `None` on success, else the errno.
    pub errno: Option<i32>,
    /// UV return code (0: no UV call ran).
    pub rc: u16,
    /// UV return reason code.
    pub rrc: u16,
    /// Output data.
    pub output: PvOutput,
}

impl PvOutcome {
    /// A success with rc/rrc.
    pub fn ok(rc: u16, rrc: u16, output: PvOutput) -> Self {
        PvOutcome {
            errno: None,
            rc,
            rrc,
            output,
        }
    }

    /// A failure with an errno and rc/rrc (rc 0 when no UV call ran).
    pub fn err(errno: i32, rc: u16, rrc: u16) -> Self {
        PvOutcome {
            errno: Some(errno),
            rc,
            rrc,
            output: PvOutput::None,
        }
    }

    /// Whether the ioctl succeeded.
    pub fn is_ok(&self) -> bool {
        self.errno.is_none()
    }
}

/// What the host offers for Protected Virtualization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSupport {
    /// `KVM_CAP_S390_PROTECTED`.
    pub protected: bool,
    /// `KVM_CAP_S390_PROTECTED_DUMP`.
    pub dump: bool,
    /// `KVM_CAP_S390_PROTECTED_ASYNC_DISABLE`.
    pub async_disable: bool,
    /// The unpack facility (stfle 161) is in the CPU model KVM offers.
    pub unpack_facility: bool,
}

/// The vCPU states the VMM sets on the IPL CPU of a protected guest (`KVM_SET_MP_STATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuState {
    /// `KVM_MP_STATE_LOAD`: KVM issues UV CPU_SET_STATE with OPR_LOAD (loads the header's PSW).
    Load,
    /// `KVM_MP_STATE_OPERATING`.
    Operating,
}

impl CpuState {
    /// The `KVM_MP_STATE_*` value.
    pub fn mp_state(self) -> u32 {
        match self {
            CpuState::Load => uapi::KVM_MP_STATE_LOAD,
            CpuState::Operating => uapi::KVM_MP_STATE_OPERATING,
        }
    }
}

/// A detached `KVM_PV_ASYNC_CLEANUP_PERFORM`, to run on another thread.
pub type AsyncPerform = Box<dyn FnOnce() -> Result<PvOutcome> + Send + 'static>;

/// The host's view of the Ultravisor (through KVM).
pub trait Ultravisor: Send {
    /// The firmware name used in error reports (`"s390 UV"`).
    fn firmware_name(&self) -> &'static str;

    /// Probe what the host supports. `Err(Unsupported)` when this host cannot run PV guests at all
    /// (not s390x, no KVM).
    fn host_support(&self, kvm: &Kvm, vm: &VmFd) -> Result<HostSupport>;

    /// Issue one VM command. `Err` only when the command cannot be issued at all on this host;
    /// KVM and UV failures are in the outcome.
    fn vm_command(&mut self, vm: &VmFd, cmd: PvCommand<'_>) -> Result<PvOutcome>;

    /// `KVM_S390_PV_CPU_COMMAND` with `KVM_PV_DUMP_CPU` on `vcpu` into `buf`.
    fn dump_cpu(&mut self, vcpu: &VcpuFd, buf: &mut [u8]) -> Result<PvOutcome>;

    /// `KVM_SET_MP_STATE` on a vCPU of the protected guest.
    fn set_cpu_state(&mut self, vcpu: &VcpuFd, state: CpuState) -> Result<PvOutcome>;

    /// A `KVM_PV_ASYNC_CLEANUP_PERFORM` that can run on another thread (it runs without
    /// `kvm->lock` and may take long).
    fn async_perform(&self, vm: &VmFd) -> Result<AsyncPerform>;
}

impl<U: Ultravisor + ?Sized> Ultravisor for Box<U> {
    fn firmware_name(&self) -> &'static str {
        (**self).firmware_name()
    }
    fn host_support(&self, kvm: &Kvm, vm: &VmFd) -> Result<HostSupport> {
        (**self).host_support(kvm, vm)
    }
    fn vm_command(&mut self, vm: &VmFd, cmd: PvCommand<'_>) -> Result<PvOutcome> {
        (**self).vm_command(vm, cmd)
    }
    fn dump_cpu(&mut self, vcpu: &VcpuFd, buf: &mut [u8]) -> Result<PvOutcome> {
        (**self).dump_cpu(vcpu, buf)
    }
    fn set_cpu_state(&mut self, vcpu: &VcpuFd, state: CpuState) -> Result<PvOutcome> {
        (**self).set_cpu_state(vcpu, state)
    }
    fn async_perform(&self, vm: &VmFd) -> Result<AsyncPerform> {
        (**self).async_perform(vm)
    }
}
