//! [`IncomingSev`]: the cgs-core backend of a legacy SEV guest that arrives by migration.
//!
//! An incoming guest is not launched: its SEV context is initialised (`INIT`/`INIT2`, no
//! `LAUNCH_START`), its memory, shared-page list and vCPU state come from the migration stream.
//! The lifecycle is the usual one, so the ready guard protects it the same way:
//!
//! ```text
//! kvm_init         INIT / INIT2 only
//! create_vcpu      as many vCPUs as the source had
//! receive          the stream: RECEIVE_START, pages, RECEIVE_FINISH (IncomingSev::receive)
//! set_vcpu_state   restores each vCPU from the stream
//! finalize         only if the whole stream was received and verified, and the firmware runs it
//! ```
//!
//! If the stream is refused at any point, `set_vcpu_state` and `finalize` fail and the guest never
//! becomes ready. The guest had opted in to migration on the source, so after arrival its
//! migration control ([`IncomingSev::control_mut`]) is `Ready`; a guest reset clears it.

use std::io::Read;

use cgs_core::{ConfidentialBackend, Error, LaunchRegion, MigrationBlocker, Platform, Result};
use cgs_gmem::tracker::PageTracker;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::error::MigrationError;
use super::incoming::{Incoming, Received};
use super::optin::{MigrationControl, KVM_MIGRATION_READY};
use crate::firmware::{Flavour, InitParams, SevFirmware};

/// QEMU object type of the guest.
const OBJECT_TYPE: &str = "sev-guest";
/// Firmware `GUEST_STATUS` state RUNNING.
const STATE_RUNNING: u32 = 3;
/// Blocker reason until the incoming migration completed.
pub const REASON_INCOMING: &str = "SEV: an incoming migration has not completed";

/// The backend of an SEV guest received by live migration.
#[derive(Debug)]
pub struct IncomingSev<F> {
    id: String,
    fw: F,
    legacy: bool,
    initialised: bool,
    vcpus: usize,
    received: Option<Received>,
    restored: Vec<bool>,
    control: MigrationControl,
}

impl<F: SevFirmware> IncomingSev<F> {
    /// An incoming `sev-guest` with object id `id` on firmware `fw`; `legacy` selects
    /// `KVM_SEV_INIT` on a default VM instead of `KVM_SEV_INIT2` on a `KVM_X86_SEV_VM`.
    pub fn new(id: impl Into<String>, fw: F, legacy: bool) -> Self {
        IncomingSev {
            id: id.into(),
            fw,
            legacy,
            initialised: false,
            vcpus: 0,
            received: None,
            restored: Vec::new(),
            control: MigrationControl::new(),
        }
    }

    /// The object id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The firmware.
    pub fn firmware(&self) -> &F {
        &self.fw
    }

    /// The firmware, for platform-specific inspection.
    pub fn firmware_mut(&mut self) -> &mut F {
        &mut self.fw
    }

    /// The guest's migration control (route its `MSR_KVM_MIGRATION_CONTROL` exits here).
    pub fn control_mut(&mut self) -> &mut MigrationControl {
        &mut self.control
    }

    /// What was received, once [`receive`](Self::receive) succeeded.
    pub fn received(&self) -> Option<&Received> {
        self.received.as_ref()
    }

    /// Receive the whole stream from `input` (until end of file) into `vm` and `mem`, after
    /// `kvm_init` and after the vCPUs were created. `tracker` gets the guest's shared ranges.
    pub fn receive(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        tracker: &mut PageTracker,
        input: &mut impl Read,
    ) -> std::result::Result<&Received, MigrationError> {
        if !self.initialised || self.received.is_some() || self.vcpus == 0 {
            return Err(MigrationError::Platform(Error::invalid_input(
                "incoming migration",
                "receive once, after kvm_init and create_vcpu",
            )));
        }
        let vcpus = u32::try_from(self.vcpus)
            .map_err(|_| Error::invalid_input("vCPU count", "too many vCPUs"))?;
        let mut inc = Incoming::new(&mut self.fw, vm, mem, vcpus)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            inc.feed(&buf[..n])?;
        }
        let got = inc.finish(tracker)?;
        self.restored = vec![false; got.vcpus.len()];
        self.control.write(KVM_MIGRATION_READY);
        Ok(self.received.insert(got))
    }
}

impl<F: SevFirmware> ConfidentialBackend for IncomingSev<F> {
    fn object_type(&self) -> &'static str {
        OBJECT_TYPE
    }

    fn platform(&self) -> Platform {
        Platform::Sev
    }

    fn vm_type(&self) -> u64 {
        self.fw.kvm_vm_type(Flavour::Sev, self.legacy)
    }

    fn kvm_init(&mut self, _kvm: &Kvm, vm: &VmFd) -> Result<()> {
        let params = if self.legacy {
            InitParams::Legacy(Flavour::Sev)
        } else {
            InitParams::Init2 {
                flavour: Flavour::Sev,
                vmsa_features: 0,
                ghcb_version: 0,
            }
        };
        self.fw.init(vm, &params)?;
        self.initialised = true;
        Ok(())
    }

    fn vcpu_created(&mut self, _vm: &VmFd, index: usize, _vcpu: &VcpuFd) -> Result<()> {
        self.vcpus = self.vcpus.max(index + 1);
        Ok(())
    }

    fn launch_update(&mut self, _vm: &VmFd, _region: &LaunchRegion<'_>) -> Result<()> {
        Err(Error::unsupported(
            "launch_update of an incoming SEV guest",
            "its memory comes from the migration stream (IncomingSev::receive)",
        ))
    }

    fn set_vcpu_state(&mut self, _vm: &VmFd, index: usize, vcpu: &VcpuFd) -> Result<()> {
        let got = self.received.as_ref().ok_or_else(|| {
            Error::invalid_input(
                "vCPU state",
                "no migration stream was received and verified (IncomingSev::receive)",
            )
        })?;
        let state = got.vcpus.get(index).ok_or_else(|| {
            Error::invalid_input(
                "vCPU index",
                format!("the stream has {} vCPUs", got.vcpus.len()),
            )
        })?;
        state.restore(vcpu)?;
        if let Some(r) = self.restored.get_mut(index) {
            *r = true;
        }
        Ok(())
    }

    fn finalize(&mut self, vm: &VmFd) -> Result<()> {
        if self.received.is_none() || self.restored.iter().any(|r| !r) {
            return Err(Error::invalid_input(
                "incoming migration",
                "the stream was not received completely, or a vCPU was not restored",
            ));
        }
        let status = self.fw.guest_status(vm)?;
        if status.state != STATE_RUNNING {
            return Err(Error::invalid_input(
                "incoming migration",
                format!(
                    "the firmware guest state is {}, not RUNNING (RECEIVE_FINISH missing)",
                    status.state
                ),
            ));
        }
        Ok(())
    }

    fn reset(&mut self, _vm: &VmFd) -> Result<()> {
        // Legacy SEV vCPUs are resettable; the guest must opt in again.
        self.control.reset();
        Ok(())
    }

    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        if self.received.is_none() {
            return Some(MigrationBlocker::new(REASON_INCOMING));
        }
        self.control.blocker(Platform::Sev)
    }
}
