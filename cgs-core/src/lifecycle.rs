//! The ordered confidential-guest lifecycle.
//!
//! [`Lifecycle`] wraps a [`ConfidentialBackend`] and enforces the order every platform follows:
//!
//! ```text
//!  New ──kvm_init──▶ Launching ──finalize──▶ Ready ──reset──▶ Ready
//!                     │  create_vcpu            │  run (the ready guard)
//!                     │  launch_update          │  migration_blocker
//!                     │  set_vcpu_state         │
//! ```
//!
//! A call in the wrong state returns [`Error::InvalidState`] naming the expected and actual state,
//! and reaches neither the backend nor KVM. The ready guard ([`Lifecycle::ensure_ready`],
//! [`Lifecycle::run`]) refuses to run a guest whose backend has not finalized, the way QEMU refuses
//! with "accelerator does not support confidential guest …": silently running a guest without the
//! protection that was asked for would be worse than not running it.
//!
//! What stays with the VMM: creating memslots and guest memory (including guest_memfd when
//! [`ConfidentialBackend::requires_guest_memfd`] says so), loading firmware into memory, vCPU
//! threads, devices and the run loop. The lifecycle borrows kvm-ioctls' [`Kvm`], [`VmFd`] and
//! [`VcpuFd`] for each call and never keeps them.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use vm_memory::{GuestAddress, GuestMemoryBackend, VolatileSlice};

use crate::backend::{ConfidentialBackend, LaunchRegion};
use crate::devices::DeviceRequirements;
use crate::error::{Error, Result};
use crate::migration::MigrationBlocker;
use crate::platform::PageType;
use crate::probe::{vm_type_name, KVM_CAP_VM_TYPES};

/// The size of a guest page as the launch path sees it.
pub const PAGE_SIZE: u64 = 4096;

/// Where a guest is in its confidential lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Configured; the VM may be created, `kvm_init` has not run.
    New,
    /// `kvm_init` done: vCPUs may be created, regions launch-updated, vCPU state set.
    Launching,
    /// Finalized: the guest may run.
    Ready,
}

impl State {
    /// The state's name as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            State::New => "new",
            State::Launching => "launching",
            State::Ready => "ready",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy)]
struct VcpuSlot {
    id: u64,
    state_set: bool,
}

/// A confidential guest's lifecycle: a backend plus the state machine that orders its hooks.
///
/// ```no_run
/// use cgs_core::{Lifecycle, PageType, Unprotected};
/// use kvm_ioctls::Kvm;
///
/// # fn main() -> cgs_core::Result<()> {
/// let kvm = Kvm::new().map_err(|e| cgs_core::Error::kvm("open /dev/kvm", e))?;
/// let mut guest = Lifecycle::new(Unprotected::new("cgs0"));
/// let vm = guest.create_vm(&kvm)?;
/// guest.kvm_init(&kvm, &vm)?;
/// let mut vcpu = guest.create_vcpu(&vm, 0)?;
/// // ... set up memory, then guest.launch_update(&vm, gpa, slice, PageType::Normal)? ...
/// guest.set_vcpu_state(&vm, 0, &vcpu)?;
/// guest.finalize(&vm)?;
/// let exit = guest.run(&mut vcpu)?;
/// # let _ = exit;
/// # Ok(())
/// # }
/// ```
pub struct Lifecycle<B: ConfidentialBackend> {
    backend: B,
    state: State,
    vcpus: Vec<VcpuSlot>,
    ready: Arc<AtomicBool>,
}

/// A cheap, clonable ready guard for vCPU threads.
///
/// [`Lifecycle::run_guard`] hands one to each vCPU thread; it answers the same question as
/// [`Lifecycle::ensure_ready`] without borrowing the lifecycle, so the thread that owns the
/// lifecycle can finalize while vCPU threads wait.
#[derive(Debug, Clone)]
pub struct RunGuard {
    object_type: &'static str,
    ready: Arc<AtomicBool>,
}

impl RunGuard {
    /// `Ok` once the guest is ready; `Error::NotReady` before.
    pub fn ensure_ready(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::NotReady {
                object_type: self.object_type,
                state: State::Launching,
                hint: "finalize was not called",
            })
        }
    }

    /// Run a vCPU once (`KVM_RUN`) after checking the guard.
    pub fn run<'a>(&self, vcpu: &'a mut VcpuFd) -> Result<VcpuExit<'a>> {
        self.ensure_ready()?;
        vcpu.run().map_err(|e| Error::kvm("KVM_RUN", e))
    }
}

impl<B: ConfidentialBackend + fmt::Debug> fmt::Debug for Lifecycle<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("backend", &self.backend)
            .field("state", &self.state)
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

impl<B: ConfidentialBackend> Lifecycle<B> {
    /// Wrap a configured backend; the lifecycle starts in [`State::New`].
    pub fn new(backend: B) -> Self {
        Lifecycle {
            backend,
            state: State::New,
            vcpus: Vec::new(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the guest may run (QEMU's `ready` flag).
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The backend, for platform-specific queries (launch digest, attestation, …).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, for platform-specific run-time operations (s390 PV protect/unprotect, SEV
    /// migration). Do not call the [`ConfidentialBackend`] hooks through it: that bypasses the
    /// ordering this type enforces.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Give the backend back.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Number of vCPUs created through [`create_vcpu`](Self::create_vcpu).
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    fn expect(&self, op: &'static str, want: State, expected: &'static str) -> Result<()> {
        if self.state == want {
            Ok(())
        } else {
            Err(Error::InvalidState {
                op,
                expected,
                actual: self.state,
            })
        }
    }

    /// Create the KVM VM with the backend's machine type (state `New`).
    ///
    /// When the host lists its VM types (`KVM_CAP_VM_TYPES`) and the backend's is missing, this
    /// fails with QEMU's "vm-type … not supported by KVM" instead of a bare `EINVAL`.
    pub fn create_vm(&self, kvm: &Kvm) -> Result<VmFd> {
        self.expect("create_vm", State::New, "new")?;
        let vm_type = self.backend.vm_type();
        if vm_type != 0 {
            let types = kvm.check_extension_raw(KVM_CAP_VM_TYPES.into());
            if types <= 0 || vm_type >= 32 || (types as u64) & (1u64 << vm_type) == 0 {
                return Err(Error::unsupported(
                    format!("vm-type {}", vm_type_name(vm_type)),
                    format!(
                        "not supported by KVM (KVM_CAP_VM_TYPES = {:#x}) for {}",
                        types.max(0),
                        self.backend.object_type()
                    ),
                ));
            }
        }
        kvm.create_vm_with_type(vm_type)
            .map_err(|e| Error::kvm("KVM_CREATE_VM", e))
    }

    /// Platform initialisation (state `New` → `Launching`). Must run after the VM exists and
    /// before any vCPU is created.
    pub fn kvm_init(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()> {
        self.expect("kvm_init", State::New, "new")?;
        self.backend.kvm_init(kvm, vm)?;
        self.state = State::Launching;
        Ok(())
    }

    /// Create a vCPU with KVM id `id` and tell the backend (state `Launching`). Its index, which
    /// [`set_vcpu_state`](Self::set_vcpu_state) takes, is its position in creation order
    /// (`vcpu_count() - 1` right after this call).
    pub fn create_vcpu(&mut self, vm: &VmFd, id: u64) -> Result<VcpuFd> {
        self.expect(
            "create_vcpu",
            State::Launching,
            "launching (after kvm_init, before finalize)",
        )?;
        if self.vcpus.iter().any(|v| v.id == id) {
            return Err(Error::invalid_input(
                "vCPU id",
                format!("vCPU {id} was already created"),
            ));
        }
        let vcpu = vm
            .create_vcpu(id)
            .map_err(|e| Error::kvm("KVM_CREATE_VCPU", e))?;
        let index = self.vcpus.len();
        self.backend.vcpu_created(vm, index, &vcpu)?;
        self.vcpus.push(VcpuSlot {
            id,
            state_set: false,
        });
        Ok(vcpu)
    }

    /// Launch-update one host-contiguous region at `gpa` (state `Launching`).
    ///
    /// `gpa` and the length must be multiples of 4 KiB, the length non-zero and the range must not
    /// wrap. [`PageType::Vmsa`] is refused: vCPU save areas come from
    /// [`set_vcpu_state`](Self::set_vcpu_state).
    pub fn launch_update(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        data: VolatileSlice<'_>,
        page_type: PageType,
    ) -> Result<()> {
        self.expect_launching("launch_update")?;
        self.update_region(vm, gpa, data, page_type)
    }

    fn expect_launching(&self, op: &'static str) -> Result<()> {
        self.expect(
            op,
            State::Launching,
            "launching (after kvm_init, before finalize)",
        )
    }

    fn update_region(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        data: VolatileSlice<'_>,
        page_type: PageType,
    ) -> Result<()> {
        validate_region(gpa, data.len() as u64, page_type)?;
        self.backend.launch_update(
            vm,
            &LaunchRegion {
                gpa,
                data,
                page_type,
            },
        )
    }

    /// Launch-update `len` bytes of the VMM's guest memory at `gpa`, split at vm-memory region
    /// boundaries (state `Launching`). The whole range is checked before any part is updated.
    pub fn launch_update_memory<M: GuestMemoryBackend>(
        &mut self,
        vm: &VmFd,
        mem: &M,
        gpa: GuestAddress,
        len: usize,
        page_type: PageType,
    ) -> Result<()> {
        self.expect_launching("launch_update")?;
        validate_region(gpa.0, len as u64, page_type)?;
        if !mem.check_range(gpa, len) {
            return Err(Error::invalid_input(
                "launch region",
                format!(
                    "[{:#x}, +{:#x}) is not entirely backed by guest memory",
                    gpa.0, len
                ),
            ));
        }
        let mut offset = 0u64;
        for slice in mem.get_slices(gpa, len) {
            let slice = slice
                .map_err(|e| Error::invalid_input("launch region", format!("guest memory: {e}")))?;
            let piece_gpa = gpa.0 + offset;
            let piece_len = slice.len();
            // SAFETY: `slice` is a live mapping of `piece_len` bytes of guest memory borrowed from
            // `mem` for the duration of this call; the new slice covers exactly the same bytes and
            // does not outlive `mem`'s borrow. Only the dirty-bitmap type is dropped.
            let plain = unsafe { VolatileSlice::new(slice.ptr_guard_mut().as_ptr(), piece_len) };
            self.update_region(vm, piece_gpa, plain, page_type)?;
            offset += piece_len as u64;
        }
        Ok(())
    }

    /// Establish vCPU `index`'s initial protected state (state `Launching`). Every created vCPU
    /// needs this once before [`finalize`](Self::finalize).
    pub fn set_vcpu_state(&mut self, vm: &VmFd, index: usize, vcpu: &VcpuFd) -> Result<()> {
        self.expect_launching("set_vcpu_state")?;
        let slot = self.vcpus.get(index).copied().ok_or_else(|| {
            Error::invalid_input(
                "vCPU index",
                format!(
                    "vCPU index {index} does not exist ({} created)",
                    self.vcpus.len()
                ),
            )
        })?;
        if slot.state_set {
            return Err(Error::invalid_input(
                "vCPU index",
                format!("the initial state of vCPU index {index} was already set"),
            ));
        }
        self.backend.set_vcpu_state(vm, index, vcpu)?;
        self.vcpus[index].state_set = true;
        Ok(())
    }

    /// Finish the launch (state `Launching` → `Ready`). Needs at least one vCPU, each with its
    /// initial state set.
    pub fn finalize(&mut self, vm: &VmFd) -> Result<()> {
        self.expect("finalize", State::Launching, "launching (after kvm_init)")?;
        if self.vcpus.is_empty() {
            return Err(Error::invalid_input(
                "launch",
                "finalize needs at least one vCPU (create_vcpu)",
            ));
        }
        if let Some(index) = self.vcpus.iter().position(|v| !v.state_set) {
            return Err(Error::invalid_input(
                "launch",
                format!("vCPU index {index} has no initial state (set_vcpu_state) yet"),
            ));
        }
        self.backend.finalize(vm)?;
        self.state = State::Ready;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The ready guard: `Ok` only when the guest may run. Call it before the first `KVM_RUN` of
    /// every vCPU (or use [`run`](Self::run), which does).
    pub fn ensure_ready(&self) -> Result<()> {
        if self.state == State::Ready {
            return Ok(());
        }
        let hint = match self.state {
            State::New => "kvm_init and finalize were not called",
            State::Launching => "finalize was not called",
            State::Ready => "",
        };
        Err(Error::NotReady {
            object_type: self.backend.object_type(),
            state: self.state,
            hint,
        })
    }

    /// A ready guard for vCPU threads (see [`RunGuard`]).
    pub fn run_guard(&self) -> RunGuard {
        RunGuard {
            object_type: self.backend.object_type(),
            ready: Arc::clone(&self.ready),
        }
    }

    /// Run a vCPU once (`KVM_RUN`) after checking the ready guard.
    ///
    /// A `KVM_RUN` failure becomes `Error::Kvm { op: "KVM_RUN", .. }`; for `EFAULT` with
    /// `KVM_EXIT_MEMORY_FAULT`, read the fault from the vCPU's `kvm_run` (see cgs-gmem).
    pub fn run<'a>(&self, vcpu: &'a mut VcpuFd) -> Result<VcpuExit<'a>> {
        self.ensure_ready()?;
        vcpu.run().map_err(|e| Error::kvm("KVM_RUN", e))
    }

    /// Reset the guest (state `Ready`). On error (for instance SEV-ES/SNP, whose vCPUs are not
    /// resettable) the state is unchanged and the VMM must tear the VM down.
    pub fn reset(&mut self, vm: &VmFd) -> Result<()> {
        self.expect("reset", State::Ready, "ready")?;
        self.backend.reset(vm)
    }

    /// Why the guest cannot be migrated right now, if it cannot.
    pub fn migration_blocker(&self) -> Option<MigrationBlocker> {
        self.backend.migration_blocker()
    }

    /// What devices and memory must do for this guest.
    pub fn device_requirements(&self) -> DeviceRequirements {
        self.backend.device_requirements()
    }
}

/// Check a launch region's shape: aligned, non-empty, no wrap, not a VMSA.
pub fn validate_region(gpa: u64, len: u64, page_type: PageType) -> Result<()> {
    if page_type == PageType::Vmsa {
        return Err(Error::invalid_input(
            "launch region",
            "VMSA pages come from set_vcpu_state, not launch_update",
        ));
    }
    if len == 0 {
        return Err(Error::invalid_input("launch region", "length is zero"));
    }
    if gpa % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
        return Err(Error::invalid_input(
            "launch region",
            format!("[{gpa:#x}, +{len:#x}) is not 4 KiB aligned"),
        ));
    }
    if gpa.checked_add(len).is_none() {
        return Err(Error::invalid_input(
            "launch region",
            format!("[{gpa:#x}, +{len:#x}) wraps the address space"),
        ));
    }
    Ok(())
}
