//! The guest's migration opt-in: `MSR_KVM_MIGRATION_CONTROL` (`KVM_MIGRATION_READY`).
//!
//! An SEV guest may only be migrated once it says so: it has told the hypervisor which pages are
//! shared (`KVM_HC_MAP_GPA_RANGE`, tracked by cgs-gmem) and sets bit 0 of
//! `MSR_KVM_MIGRATION_CONTROL` (0x4B564D08). KVM itself ignores the MSR, so the VMM filters it
//! ([`install`]: `KVM_X86_SET_MSR_FILTER` + `KVM_CAP_X86_USER_SPACE_MSR` with
//! `KVM_MSR_EXIT_REASON_FILTER`) and hands each `KVM_EXIT_X86_RDMSR` / `KVM_EXIT_X86_WRMSR` for it to
//! [`MigrationControl`]. Until the guest writes `KVM_MIGRATION_READY` the SEV migration blocker
//! stays (with the reason); a write of anything else is refused like KVM's own MSR handler does
//! (`#GP`) and blocks with QEMU's reason. A guest reset (reboot, kexec) clears the opt-in, together
//! with the shared-page list (which the VMM resets in its page-state tracker).

use kvm_bindings::{kvm_enable_cap, CpuId, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER};
use kvm_ioctls::{
    MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, ReadMsrExit, VmFd, WriteMsrExit,
};

use cgs_core::{ConfidentialBackend, Error, MigrationBlocker, Platform, Result};
use cgs_gmem::tracker::{MemState, PageTracker};

use crate::backend::SevBackend;
use crate::firmware::SevFirmware;

/// `MSR_KVM_MIGRATION_CONTROL`.
pub const MSR_KVM_MIGRATION_CONTROL: u32 = 0x4b56_4d08;
/// `KVM_MIGRATION_READY`: bit 0 of the MSR.
pub const KVM_MIGRATION_READY: u64 = 1;
/// `KVM_FEATURE_MIGRATION_CONTROL`: bit of CPUID `0x40000001` EAX advertising the MSR.
pub const KVM_FEATURE_MIGRATION_CONTROL: u32 = 17;
/// `KVM_FEATURE_HC_MAP_GPA_RANGE`: bit of CPUID `0x40000001` EAX advertising hypercall 12.
pub const KVM_FEATURE_HC_MAP_GPA_RANGE: u32 = 16;
/// The KVM paravirtual features CPUID leaf.
pub const KVM_CPUID_FEATURES: u32 = 0x4000_0001;

/// Blocker reason while a legacy SEV guest has not opted in (the backend's initial blocker).
pub const REASON_NOT_OPTED_IN: &str = crate::backend::BLOCKER_SEV;
/// Blocker reason after the guest wrote an invalid value (QEMU's wording).
pub const REASON_REFUSED: &str = "State blocked by migration control MSR";
/// Blocker reason for SEV-ES guests.
pub const REASON_SEV_ES: &str = crate::backend::BLOCKER_SEV_ES;
/// Blocker reason for SEV-SNP guests.
pub const REASON_SNP: &str = crate::backend::BLOCKER_SEV_SNP;

/// Where the guest's opt-in stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptIn {
    /// Not (or no longer) enabled by the guest.
    #[default]
    NotReady,
    /// The guest wrote `KVM_MIGRATION_READY`.
    Ready,
    /// The guest wrote an invalid value (reserved bits): refused with `#GP`, migration blocked
    /// until it writes a valid value.
    Refused(u64),
}

/// The migration-control MSR of one guest.
#[derive(Debug, Clone, Default)]
pub struct MigrationControl {
    state: OptIn,
}

/// Filter `MSR_KVM_MIGRATION_CONTROL` reads and writes to user space on `vm` (any time; before the
/// vCPUs run is best). All other MSRs keep KVM's handling.
pub fn install(vm: &VmFd) -> Result<()> {
    let cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        args: [u64::from(KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(|e| Error::kvm("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)", e))?;
    // A clear bit denies the access, which (with the capability above) exits to user space.
    let bitmap = [0u8; 1];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: MSR_KVM_MIGRATION_CONTROL,
        msr_count: 1,
        bitmap: &bitmap,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
        .map_err(|e| Error::kvm("KVM_X86_SET_MSR_FILTER", e))
}

/// Advertise `KVM_FEATURE_MIGRATION_CONTROL` (and `KVM_FEATURE_HC_MAP_GPA_RANGE`) in the guest's
/// CPUID, so the guest knows it may use them. Fails if `cpuid` has no KVM features leaf.
pub fn advertise(cpuid: &mut CpuId) -> Result<()> {
    let leaf = cpuid
        .as_mut_slice()
        .iter_mut()
        .find(|e| e.function == KVM_CPUID_FEATURES)
        .ok_or_else(|| {
            Error::invalid_input("CPUID", "no KVM paravirtual features leaf 0x40000001")
        })?;
    leaf.eax |= (1 << KVM_FEATURE_MIGRATION_CONTROL) | (1 << KVM_FEATURE_HC_MAP_GPA_RANGE);
    Ok(())
}

impl MigrationControl {
    /// A guest that has not opted in.
    pub fn new() -> Self {
        MigrationControl::default()
    }

    /// The current opt-in state.
    pub fn state(&self) -> OptIn {
        self.state
    }

    /// Whether the guest enabled migration.
    pub fn is_ready(&self) -> bool {
        self.state == OptIn::Ready
    }

    /// The guest wrote `value` to the MSR. Returns `false` when the write must fail with `#GP`
    /// (reserved bits set), as KVM's own handler would.
    pub fn write(&mut self, value: u64) -> bool {
        if value & !KVM_MIGRATION_READY != 0 {
            self.state = OptIn::Refused(value);
            return false;
        }
        self.state = if value & KVM_MIGRATION_READY != 0 {
            OptIn::Ready
        } else {
            OptIn::NotReady
        };
        true
    }

    /// What a guest read of the MSR returns.
    pub fn read(&self) -> u64 {
        if self.is_ready() {
            KVM_MIGRATION_READY
        } else {
            0
        }
    }

    /// Handle a `KVM_EXIT_X86_WRMSR`. Returns `false` if the exit is for another MSR (left alone).
    pub fn handle_wrmsr(&mut self, exit: &mut WriteMsrExit<'_>) -> bool {
        if exit.index != MSR_KVM_MIGRATION_CONTROL {
            return false;
        }
        *exit.error = u8::from(!self.write(exit.data));
        true
    }

    /// Handle a `KVM_EXIT_X86_RDMSR`. Returns `false` if the exit is for another MSR.
    pub fn handle_rdmsr(&self, exit: &mut ReadMsrExit<'_>) -> bool {
        if exit.index != MSR_KVM_MIGRATION_CONTROL {
            return false;
        }
        *exit.data = self.read();
        *exit.error = 0;
        true
    }

    /// The guest was reset: the opt-in is gone.
    pub fn reset(&mut self) {
        self.state = OptIn::NotReady;
    }

    /// A guest reset (reboot, kexec): the opt-in is gone and the shared-page list with it (every
    /// page of `tracker` is private again, as for a freshly launched SEV guest).
    pub fn guest_reset(&mut self, tracker: &mut PageTracker) {
        self.reset();
        let pages = tracker.pages();
        if pages > 0 {
            // The range is the tracker's own, so it cannot be out of range.
            let _ = tracker.set(0..pages, MemState::Private);
        }
    }

    /// Why a guest of `platform` with this opt-in state cannot be migrated, if it cannot.
    ///
    /// Legacy SEV is migratable once the guest opted in; SEV-ES and SEV-SNP never are through KVM;
    /// any other platform is not this module's business (`None`).
    pub fn blocker(&self, platform: Platform) -> Option<MigrationBlocker> {
        match platform {
            Platform::Sev => match self.state {
                OptIn::Ready => None,
                OptIn::NotReady => Some(MigrationBlocker::new(REASON_NOT_OPTED_IN)),
                OptIn::Refused(_) => Some(MigrationBlocker::new(REASON_REFUSED)),
            },
            Platform::SevEs => Some(MigrationBlocker::new(REASON_SEV_ES)),
            Platform::SevSnp => Some(MigrationBlocker::new(REASON_SNP)),
            _ => None,
        }
    }
}

/// Set the SEV backend's migration blocker from the guest's opt-in state: call it after every
/// `MSR_KVM_MIGRATION_CONTROL` write, and on a guest reset after [`MigrationControl::guest_reset`]
/// (the backend's own `reset` does not know about the opt-in). SEV-ES and SNP backends stay
/// blocked.
pub fn apply<F: SevFirmware>(ctl: &MigrationControl, backend: &mut SevBackend<F>) -> Result<()> {
    let blocker = ctl.blocker(backend.platform());
    backend.set_migration_blocker(blocker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_in_transitions_and_blockers() {
        let mut c = MigrationControl::new();
        assert_eq!(
            c.blocker(Platform::Sev).unwrap().reason,
            REASON_NOT_OPTED_IN
        );
        assert!(c.write(KVM_MIGRATION_READY));
        assert!(c.is_ready());
        assert_eq!(c.read(), 1);
        assert_eq!(c.blocker(Platform::Sev), None);
        assert_eq!(c.blocker(Platform::SevEs).unwrap().reason, REASON_SEV_ES);
        assert_eq!(c.blocker(Platform::SevSnp).unwrap().reason, REASON_SNP);
        assert!(!c.write(0x2), "reserved bit");
        assert_eq!(c.state(), OptIn::Refused(2));
        assert_eq!(c.read(), 0);
        assert_eq!(c.blocker(Platform::Sev).unwrap().reason, REASON_REFUSED);
        assert!(c.write(1));
        assert!(c.write(0), "the guest may withdraw");
        assert_eq!(c.state(), OptIn::NotReady);
        c.write(1);
        c.reset();
        assert_eq!(c.state(), OptIn::NotReady);
        assert!(c.blocker(Platform::Sev).is_some());
    }
}
