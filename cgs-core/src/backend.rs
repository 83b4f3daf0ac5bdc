//! The backend contract: what a confidential-guest platform implements.
//!
//! [`ConfidentialBackend`] mirrors QEMU's `ConfidentialGuestSupportClass` (`kvm_init`,
//! `kvm_reset`, `set_guest_state`, the `ready` flag, migration blockers, `require_guest_memfd`)
//! in a form any Rust VMM can call: the VMM keeps ownership of kvm-ioctls' [`Kvm`], [`VmFd`] and
//! [`VcpuFd`] and of its vm-memory guest memory, and lends them to the backend for each step.
//!
//! A backend owns: the platform's firmware context (SEV guest handle, s390 secure configuration,
//! POWER ultravisor state), its launch measurement, the decision whether migration is blocked, and
//! the protected state of vCPUs. It does **not** own guest memory layout, memslots, vCPU threads,
//! devices or the run loop; those stay with the VMM.
//!
//! Backends do not check the *order* of calls: [`Lifecycle`](crate::Lifecycle) does that once for
//! every platform, so a hook is only ever called in its legal state. A hook that fails must leave
//! the backend as it was before the call (or, when the platform makes that impossible, say so in
//! its error).

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::VolatileSlice;

use crate::devices::DeviceRequirements;
use crate::error::Result;
use crate::migration::MigrationBlocker;
use crate::platform::{PageType, Platform};

/// One guest-physical range handed to [`ConfidentialBackend::launch_update`].
///
/// `data` is the host mapping of the range (contiguous in the VMM's address space). Backends that
/// encrypt in place (SEV `LAUNCH_UPDATE_DATA`, the simulators) write through it; SNP passes its
/// address to `SNP_LAUNCH_UPDATE` as the source.
#[derive(Debug)]
pub struct LaunchRegion<'a> {
    /// Guest-physical address of the first byte (page aligned).
    pub gpa: u64,
    /// The host mapping of the range; its length is the region's length (a multiple of 4 KiB).
    pub data: VolatileSlice<'a>,
    /// How the platform treats the pages.
    pub page_type: PageType,
}

impl LaunchRegion<'_> {
    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the region is empty (never true for regions built by [`Lifecycle`](crate::Lifecycle)).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Host user-space address of the first byte, as KVM's `uaddr` fields expect it.
    pub fn host_addr(&self) -> u64 {
        self.data.ptr_guard().as_ptr() as u64
    }

    /// Copy the region's current contents out (for measurement by simulators).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.data.len()];
        self.data.copy_to(&mut buf[..]);
        buf
    }
}

/// A confidential-guest platform backend.
///
/// Implemented by `cgs-sev` (SEV, SEV-ES, SEV-SNP), `cgs-s390pv`, `cgs-pef` and by
/// [`Unprotected`](crate::Unprotected). Each backend talks to its firmware through a trait with a
/// real (ioctl) and a simulated implementation; the backend logic is the same over both.
///
/// The hooks are called by [`Lifecycle`](crate::Lifecycle) in this order:
///
/// 1. [`vm_type`](Self::vm_type) when the VMM creates the VM;
/// 2. [`kvm_init`](Self::kvm_init) once, after `KVM_CREATE_VM` and before any vCPU exists;
/// 3. [`vcpu_created`](Self::vcpu_created) per vCPU, [`launch_update`](Self::launch_update) per
///    region and [`set_vcpu_state`](Self::set_vcpu_state) per vCPU, in any interleaving;
/// 4. [`finalize`](Self::finalize) once; afterwards the guest is *ready* and may run;
/// 5. [`reset`](Self::reset) on every guest reset.
///
/// [`migration_blocker`](Self::migration_blocker) and
/// [`device_requirements`](Self::device_requirements) may be queried at any time.
pub trait ConfidentialBackend: Send {
    /// The QEMU `-object` type this backend implements (`"sev-snp-guest"`).
    fn object_type(&self) -> &'static str;

    /// The platform (and flavour) this backend protects the guest with.
    fn platform(&self) -> Platform;

    /// The `KVM_CREATE_VM` machine type (x86: `KVM_X86_*_VM`; 0 elsewhere).
    fn vm_type(&self) -> u64;

    /// Whether guest private memory must be backed by guest_memfd.
    fn requires_guest_memfd(&self) -> bool {
        self.platform().requires_guest_memfd()
    }

    /// Platform initialisation after VM creation and before any vCPU: capability checks, firmware
    /// INIT / LAUNCH_START, enabling capabilities, adding the migration blocker.
    fn kvm_init(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()>;

    /// Told about each vCPU right after the VMM created it (index in creation order, KVM id).
    fn vcpu_created(&mut self, _vm: &VmFd, _index: usize, _vcpu: &VcpuFd) -> Result<()> {
        Ok(())
    }

    /// Encrypt / measure / launch-update one guest region.
    fn launch_update(&mut self, vm: &VmFd, region: &LaunchRegion<'_>) -> Result<()>;

    /// Establish the initial protected state of one vCPU. After this call the vCPU's registers
    /// belong to the backend: it may read them (to measure them) or set them (from its own VMSA
    /// builder, so that what KVM runs is what the measurement predicted).
    fn set_vcpu_state(&mut self, vm: &VmFd, index: usize, vcpu: &VcpuFd) -> Result<()>;

    /// Finish the launch (LAUNCH_MEASURE/LAUNCH_FINISH, switching to secure mode, …). On success
    /// the guest is ready to run.
    fn finalize(&mut self, vm: &VmFd) -> Result<()>;

    /// The guest is being reset. Platforms whose vCPU state is protected return
    /// `Error::Unsupported` (the VMM must tear the VM down); PEF issues `KVM_PPC_SVM_OFF`; s390 PV
    /// leaves the secure configuration.
    fn reset(&mut self, vm: &VmFd) -> Result<()>;

    /// Why the guest cannot be migrated right now, if it cannot.
    fn migration_blocker(&self) -> Option<MigrationBlocker>;

    /// What the VMM's devices and memory must do for this guest.
    fn device_requirements(&self) -> DeviceRequirements {
        let mut req = if self.platform().is_protected() {
            DeviceRequirements::protected()
        } else {
            DeviceRequirements::unprotected()
        };
        req.require_guest_memfd = self.requires_guest_memfd();
        req
    }
}

impl<B: ConfidentialBackend + ?Sized> ConfidentialBackend for Box<B> {
    fn object_type(&self) -> &'static str {
        (**self).object_type()
    }
    fn platform(&self) -> Platform {
        (**self).platform()
    }
    fn vm_type(&self) -> u64 {
        (**self).vm_type()
    }
    fn requires_guest_memfd(&self) -> bool {
        (**self).requires_guest_memfd()
    }
    fn kvm_init(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()> {
        (**self).kvm_init(kvm, vm)
    }
    fn vcpu_created(&mut self, vm: &VmFd, index: usize, vcpu: &VcpuFd) -> Result<()> {
        (**self).vcpu_created(vm, index, vcpu)
    }
    fn launch_update(&mut self, vm: &VmFd, region: &LaunchRegion<'_>) -> Result<()> {
        (**self).launch_update(vm, region)
    }
    fn set_vcpu_state(&mut self, vm: &VmFd, index: usize, vcpu: &VcpuFd) -> Result<()> {
        (**self).set_vcpu_state(vm, index, vcpu)
    }
    fn finalize(&mut self, vm: &VmFd) -> Result<()> {
        (**self).finalize(vm)
    }
    fn reset(&mut self, vm: &VmFd) -> Result<()> {
        (**self).reset(vm)
    }
    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        (**self).migration_blocker()
    }
    fn device_requirements(&self) -> DeviceRequirements {
        (**self).device_requirements()
    }
}
