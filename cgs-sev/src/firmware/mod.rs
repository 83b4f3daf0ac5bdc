//! The AMD secure processor as the launch code sees it: one trait, two implementations.
//!
//! [`SevFirmware`] has one method per `KVM_MEMORY_ENCRYPT_OP` command the launch flows use, with
//! typed parameters. [`kvm::KvmFirmware`] issues the real ioctls on the VM fd (every failure becomes
//! `Error::Kvm { op }`, `Error::Firmware` with the named status, or `Error::Unsupported` for
//! `ENOTTY`, "this KVM has no SEV"); [`sim::SimFirmware`] is a software model of the secure
//! processor with real state, real status codes and real cryptography, so every launch runs on a
//! plain KVM VM. The launch state machines ([`crate::launch`]) and the backend
//! ([`crate::backend`]) run unchanged over both.
//!
//! Memory is passed as vm-memory [`VolatileSlice`]s of the VMM's mapping: the real implementation
//! hands their addresses to KVM, the simulator reads and writes through them. vCPU save areas
//! are passed as the [`VmsaPage`]s built by [`crate::measure::vmsa`]: KVM builds its own from the
//! vCPU registers (which the backend programmed from the same builder), the simulator measures
//! the pages it is given.
//!
//! The migration work extends this trait with `SEND_*` / `RECEIVE_*`; the transport crypto they
//! need is in [`crate::session`].

pub mod kvm;
pub mod sim;
pub mod status;

use cgs_core::{Error, PageType, Result};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::VolatileSlice;

use crate::measure::vmsa::VmsaPage;
// Live migration (issue 7): parameter types of the SEND_*/RECEIVE_* methods below.
pub use crate::migration::firmware::SevMigrationFirmware;
use crate::session::{FirmwareBuild, LaunchMeasurement, PacketHeader};
use crate::uapi;

pub use status::{status_of, SevStatus, SEV_FIRMWARE};

/// Which SEV flavour a guest context is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Legacy SEV: memory encryption.
    Sev,
    /// SEV-ES: plus encrypted register state.
    SevEs,
    /// SEV-SNP: plus memory integrity.
    SevSnp,
}

impl Flavour {
    /// The `KVM_CREATE_VM` type for INIT2.
    pub fn vm_type(self) -> u64 {
        match self {
            Flavour::Sev => uapi::KVM_X86_SEV_VM,
            Flavour::SevEs => uapi::KVM_X86_SEV_ES_VM,
            Flavour::SevSnp => uapi::KVM_X86_SNP_VM,
        }
    }

    /// The cgs-core platform.
    pub fn platform(self) -> cgs_core::Platform {
        match self {
            Flavour::Sev => cgs_core::Platform::Sev,
            Flavour::SevEs => cgs_core::Platform::SevEs,
            Flavour::SevSnp => cgs_core::Platform::SevSnp,
        }
    }
}

/// How the guest context is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitParams {
    /// `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` on a `KVM_X86_DEFAULT_VM` (SEV and SEV-ES only).
    Legacy(Flavour),
    /// `KVM_SEV_INIT2` on a `KVM_X86_SEV(_ES)_VM` / `KVM_X86_SNP_VM`.
    Init2 {
        /// The flavour (decides the VM type).
        flavour: Flavour,
        /// VMSA `SEV_FEATURES` (a subset of [`SevFirmware::vmsa_features`]; 0 for SEV).
        vmsa_features: u64,
        /// GHCB protocol version (0 = KVM's default).
        ghcb_version: u16,
    },
}

impl InitParams {
    /// The flavour being initialised.
    pub fn flavour(&self) -> Flavour {
        match *self {
            InitParams::Legacy(f) => f,
            InitParams::Init2 { flavour, .. } => flavour,
        }
    }
}

/// LAUNCH_START parameters.
#[derive(Debug, Clone, Copy)]
pub struct LaunchStart<'a> {
    /// Handle of a guest to share keys with (0: a new context).
    pub handle: u32,
    /// The guest policy.
    pub policy: u32,
    /// The guest owner's DH certificate, if any.
    pub dh_cert: Option<&'a [u8]>,
    /// The session blob, if any.
    pub session: Option<&'a [u8]>,
}

/// SNP_LAUNCH_START parameters (policy already validated by [`crate::policy::SnpPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpLaunchStart {
    /// The guest policy.
    pub policy: u64,
    /// Guest OS visible workarounds.
    pub gosvw: [u8; 16],
}

/// An SNP_LAUNCH_UPDATE page type (`KVM_SEV_SNP_PAGE_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SnpPageType {
    /// Measured with contents.
    Normal = uapi::KVM_SEV_SNP_PAGE_TYPE_NORMAL,
    /// Zero pages.
    Zero = uapi::KVM_SEV_SNP_PAGE_TYPE_ZERO,
    /// Not measured.
    Unmeasured = uapi::KVM_SEV_SNP_PAGE_TYPE_UNMEASURED,
    /// The secrets page.
    Secrets = uapi::KVM_SEV_SNP_PAGE_TYPE_SECRETS,
    /// The CPUID page.
    Cpuid = uapi::KVM_SEV_SNP_PAGE_TYPE_CPUID,
}

impl SnpPageType {
    /// The cgs-core page type's SNP type (VMSA pages are not a launch-update type).
    pub fn from_page_type(t: PageType) -> Result<Self> {
        Ok(match t {
            PageType::Normal => SnpPageType::Normal,
            PageType::Zero => SnpPageType::Zero,
            PageType::Unmeasured => SnpPageType::Unmeasured,
            PageType::Secrets => SnpPageType::Secrets,
            PageType::Cpuid => SnpPageType::Cpuid,
            PageType::Vmsa => {
                return Err(Error::invalid_input(
                    "SNP page type",
                    "VMSA pages are measured by SNP_LAUNCH_FINISH, not launch-updated",
                ))
            }
        })
    }

    /// The raw value.
    pub fn raw(self) -> u8 {
        self as u8
    }

    /// The cgs-core page type.
    pub fn to_page_type(self) -> PageType {
        match self {
            SnpPageType::Normal => PageType::Normal,
            SnpPageType::Zero => PageType::Zero,
            SnpPageType::Unmeasured => PageType::Unmeasured,
            SnpPageType::Secrets => PageType::Secrets,
            SnpPageType::Cpuid => PageType::Cpuid,
        }
    }
}

/// One SNP_LAUNCH_UPDATE call in progress, shaped like the kernel's in/out struct: the firmware
/// advances `gfn_start` and `done` by the pages it processed, so a caller loops until
/// [`remaining`](Self::remaining) is zero.
#[derive(Debug)]
pub struct SnpUpdate<'a> {
    /// Guest frame number of the next page.
    pub gfn_start: u64,
    /// The whole source range (the VMM's mapping of the guest pages).
    pub source: VolatileSlice<'a>,
    /// Bytes of `source` already processed.
    pub done: usize,
    /// Page type of the range.
    pub page_type: SnpPageType,
}

impl SnpUpdate<'_> {
    /// Bytes still to process.
    pub fn remaining(&self) -> usize {
        self.source.len().saturating_sub(self.done)
    }
}

/// SNP_LAUNCH_FINISH parameters.
#[derive(Debug, Clone, Copy)]
pub struct SnpLaunchFinish<'a> {
    /// The 96-byte ID block, if any.
    pub id_block: Option<&'a [u8; uapi::KVM_SEV_SNP_ID_BLOCK_SIZE]>,
    /// The 4096-byte ID authentication structure (required with an ID block).
    pub id_auth: Option<&'a [u8; uapi::KVM_SEV_SNP_ID_AUTH_SIZE]>,
    /// Whether `id_auth` carries an author key.
    pub author_key: bool,
    /// Disable the VCEK for reports.
    pub vcek_disabled: bool,
    /// Host data placed in every attestation report.
    pub host_data: [u8; uapi::KVM_SEV_SNP_FINISH_DATA_SIZE],
}

/// GUEST_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestStatus {
    /// Firmware handle.
    pub handle: u32,
    /// Guest policy.
    pub policy: u32,
    /// Firmware guest state (`SEV_GUEST_STATE_*`: 1 LUPDATE, 2 LSECRET, 3 RUNNING, …).
    pub state: u32,
}

/// The secure processor, as the SEV/SEV-ES/SNP launch flows use it.
///
/// Every method is one firmware command on the guest context bound to `vm`. Implementations
/// check nothing about *order* that the firmware would not check (the launch state machines do
/// that before a command is issued), and report failures as the firmware would: a refused command
/// is `Error::Firmware` with the status name, a KVM-level refusal is `Error::Kvm` with the errno.
pub trait SevFirmware: SevMigrationFirmware + Send {
    /// The firmware's name in errors (`"SEV"`, `"SEV simulator"`).
    fn name(&self) -> &'static str;

    /// The `KVM_CREATE_VM` type to use for a guest of `flavour` (`legacy`: INIT instead of
    /// INIT2). The simulator models the SEV VM types on top of a `KVM_X86_DEFAULT_VM`.
    fn kvm_vm_type(&self, flavour: Flavour, legacy: bool) -> u64;

    /// The VMSA `SEV_FEATURES` KVM accepts in INIT2 (`KVM_X86_SEV_VMSA_FEATURES`).
    fn vmsa_features(&self, kvm: &Kvm) -> Result<u64>;

    /// The host's C-bit position (CPUID 0x8000001F EBX\[5:0\]), which the guest's `cbitpos` must
    /// match.
    fn c_bit_position(&self, kvm: &Kvm) -> Result<u32>;

    /// The SNP policy bits the kernel accepts (`KVM_X86_SNP_POLICY_BITS`, 7.x kernels), if it
    /// says.
    fn snp_policy_bits(&self, _kvm: &Kvm) -> Option<u64> {
        None
    }

    /// Firmware API version and build (PLATFORM_STATUS).
    fn build(&self) -> Result<FirmwareBuild>;

    /// INIT / ES_INIT / INIT2.
    fn init(&mut self, vm: &VmFd, params: &InitParams) -> Result<()>;

    /// `KVM_MEMORY_ENCRYPT_REG_REGION`: pin the VMM's mapping of a guest RAM region for an
    /// SEV/SEV-ES guest (QEMU does it for every RAM block; SNP uses guest_memfd instead).
    fn register_region(&mut self, vm: &VmFd, region: &VolatileSlice<'_>) -> Result<()>;

    /// LAUNCH_START; returns the guest handle.
    fn launch_start(&mut self, vm: &VmFd, params: &LaunchStart<'_>) -> Result<u32>;

    /// LAUNCH_UPDATE_DATA: encrypt `data` (the VMM's mapping of guest memory at `gpa`) in place
    /// and add it to the launch digest.
    fn launch_update_data(&mut self, vm: &VmFd, gpa: u64, data: &VolatileSlice<'_>) -> Result<()>;

    /// LAUNCH_UPDATE_VMSA: encrypt and measure every vCPU's save area (SEV-ES).
    fn launch_update_vmsa(&mut self, vm: &VmFd, vmsas: &[VmsaPage]) -> Result<()>;

    /// LAUNCH_MEASURE.
    fn launch_measure(&mut self, vm: &VmFd) -> Result<LaunchMeasurement>;

    /// LAUNCH_SECRET: check the packet's MAC, decrypt it with the TEK into `target` (the VMM's
    /// mapping of guest memory at `gpa`).
    fn launch_secret(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        header: &PacketHeader,
        ciphertext: &[u8],
        target: &VolatileSlice<'_>,
    ) -> Result<()>;

    /// LAUNCH_FINISH.
    fn launch_finish(&mut self, vm: &VmFd) -> Result<()>;

    /// GET_ATTESTATION_REPORT (legacy SEV report, 0xD0 bytes).
    fn attestation_report(&mut self, vm: &VmFd, mnonce: [u8; 16]) -> Result<Vec<u8>>;

    /// GUEST_STATUS.
    fn guest_status(&mut self, vm: &VmFd) -> Result<GuestStatus>;

    /// DBG_DECRYPT: read guest memory at `gpa` (the VMM's mapping `src`) in the clear into
    /// `dst` (same length; 16-byte aligned). Refused unless the policy allows debugging.
    fn dbg_decrypt(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        src: &VolatileSlice<'_>,
        dst: &mut [u8],
    ) -> Result<()>;

    /// SNP_LAUNCH_START.
    fn snp_launch_start(&mut self, vm: &VmFd, params: &SnpLaunchStart) -> Result<()>;

    /// Make `[gpa, gpa + len)` private (`KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)`; the simulator
    /// assigns the pages to the guest in its RMP).
    fn snp_set_private(&mut self, vm: &VmFd, gpa: u64, len: u64) -> Result<()>;

    /// One SNP_LAUNCH_UPDATE call: may process only part of the range (advancing `update`) or
    /// fail with `EAGAIN`; the caller loops.
    fn snp_launch_update(&mut self, vm: &VmFd, update: &mut SnpUpdate<'_>) -> Result<()>;

    /// SNP_LAUNCH_FINISH: measure the vCPU save areas, check the ID block, seal the launch.
    fn snp_launch_finish(
        &mut self,
        vm: &VmFd,
        params: &SnpLaunchFinish<'_>,
        vmsas: &[VmsaPage],
    ) -> Result<()>;

    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS`: let the VMM supply certificates for extended guest
    /// requests (`KVM_EXIT_SNP_REQ_CERTS`). `Error::Unsupported` on kernels without it.
    fn snp_enable_req_certs(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()>;
}
