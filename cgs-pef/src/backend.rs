//! The `pef-guest` confidential backend.

use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use cgs_core::config::PefGuestConfig;
use cgs_core::{
    ConfidentialBackend, Error, LaunchRegion, MigrationBlocker, PageType, Platform, Result,
};

use crate::uv::{KvmUltravisor, Ultravisor};

/// QEMU's message when `KVM_CAP_PPC_SECURE_GUEST` is absent (`hw/ppc/pef.c`).
pub const MSG_NO_SECURE_VMS: &str =
    "KVM implementation does not support Secure VMs (is an ultravisor running?)";
/// QEMU's message when enabling the capability fails.
pub const MSG_ENABLE_FAILED: &str = "Error enabling PEF with KVM";
/// QEMU's migration-blocker reason.
pub const MIGRATION_BLOCKER: &str = "PEF: Migration is not implemented";

/// A POWER PEF guest: QEMU's `pef-guest` object, generic over the ultravisor interface.
///
/// What the backend does is what QEMU's `hw/ppc/pef.c` does: at `kvm_init` it checks and enables
/// `KVM_CAP_PPC_SECURE_GUEST` and blocks migration; on every reset it issues `KVM_PPC_SVM_OFF`,
/// tolerating `ENOTTY` (kernels without the ioctl). The guest itself decides to become secure,
/// with the `UV_ESM` ultracall; the VMM takes no part in it, so `launch_update`,
/// `set_vcpu_state` and `finalize` have nothing to send (PEF has no host-driven launch).
#[derive(Debug)]
pub struct PefGuest<U: Ultravisor = KvmUltravisor> {
    config: PefGuestConfig,
    uv: U,
    secure_enabled: bool,
    launched_bytes: u64,
    resets: u64,
}

impl PefGuest<KvmUltravisor> {
    /// A backend that talks to this host's KVM.
    pub fn new(config: PefGuestConfig) -> Self {
        Self::with_ultravisor(config, KvmUltravisor::new())
    }
}

impl<U: Ultravisor> PefGuest<U> {
    /// A backend over the given ultravisor interface (for instance a
    /// [`SimUltravisor`](crate::SimUltravisor)).
    pub fn with_ultravisor(config: PefGuestConfig, uv: U) -> Self {
        PefGuest {
            config,
            uv,
            secure_enabled: false,
            launched_bytes: 0,
            resets: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PefGuestConfig {
        &self.config
    }

    /// The ultravisor interface.
    pub fn ultravisor(&self) -> &U {
        &self.uv
    }

    /// The ultravisor interface, for the guest-side and host-side operations a simulator offers.
    pub fn ultravisor_mut(&mut self) -> &mut U {
        &mut self.uv
    }

    /// Whether `kvm_init` enabled `KVM_CAP_PPC_SECURE_GUEST`.
    pub fn secure_guest_enabled(&self) -> bool {
        self.secure_enabled
    }

    /// Bytes the VMM loaded through `launch_update` (left as they are: the guest's ESM blob, not
    /// the host, protects them).
    pub fn launched_bytes(&self) -> u64 {
        self.launched_bytes
    }

    /// How many resets issued `KVM_PPC_SVM_OFF` successfully (or had it tolerated).
    pub fn resets(&self) -> u64 {
        self.resets
    }
}

impl<U: Ultravisor> ConfidentialBackend for PefGuest<U> {
    fn object_type(&self) -> &'static str {
        PefGuestConfig::TYPE
    }

    fn platform(&self) -> Platform {
        Platform::Pef
    }

    fn vm_type(&self) -> u64 {
        0
    }

    fn kvm_init(&mut self, _kvm: &Kvm, vm: &VmFd) -> Result<()> {
        if !self.uv.secure_guest_supported(vm)? {
            return Err(Error::unsupported(PefGuestConfig::TYPE, MSG_NO_SECURE_VMS));
        }
        self.uv
            .enable_secure_guest(vm)
            .map_err(|e| Error::Backend {
                context: MSG_ENABLE_FAILED.into(),
                source: Box::new(e),
            })?;
        self.secure_enabled = true;
        Ok(())
    }

    fn launch_update(&mut self, _vm: &VmFd, region: &LaunchRegion<'_>) -> Result<()> {
        if region.page_type != PageType::Normal {
            return Err(Error::unsupported(
                format!("page type {} for pef-guest", region.page_type),
                "PEF has no host-driven launch update; load the image as normal memory and \
                 let the guest's ESM blob protect it",
            ));
        }
        self.launched_bytes = self.launched_bytes.saturating_add(region.len() as u64);
        Ok(())
    }

    fn set_vcpu_state(&mut self, _vm: &VmFd, _index: usize, _vcpu: &VcpuFd) -> Result<()> {
        // vCPUs start as normal vCPUs; the ultravisor takes their state when the guest calls
        // UV_ESM.
        Ok(())
    }

    fn finalize(&mut self, _vm: &VmFd) -> Result<()> {
        // QEMU sets `ready` at the end of kvm_init: nothing is left to do.
        Ok(())
    }

    fn reset(&mut self, vm: &VmFd) -> Result<()> {
        match self.uv.svm_off(vm) {
            Ok(()) => {}
            // QEMU tolerates kernels without KVM_PPC_SVM_OFF.
            Err(e) if e.errno() == Some(libc::ENOTTY) => {}
            Err(e) => return Err(e),
        }
        self.resets += 1;
        Ok(())
    }

    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        // QEMU adds the blocker in kvm_init and never removes it; a PEF guest is never
        // migratable, so the blocker stands from the start.
        Some(MigrationBlocker::new(MIGRATION_BLOCKER))
    }
}
