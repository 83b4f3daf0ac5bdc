//! Setting the PRIVATE memory attribute: the second step of a conversion.
//!
//! [`MemoryAttributes`] has three implementations:
//! - [`KvmAttributes`]: `KVM_SET_MEMORY_ATTRIBUTES` on a VM whose KVM reports
//!   `KVM_MEMORY_ATTRIBUTE_PRIVATE` in `KVM_CAP_MEMORY_ATTRIBUTES`;
//! - [`SharedOnlyHost`]: a host without the ioctl (like plain KVM before private memory): every
//!   page stays shared, conversions to shared succeed without work, conversions to private fail
//!   with a clear `Unsupported` error;
//! - [`RecordingAttributes`]: a userspace record of the attribute per page (wrapped in
//!   [`crate::testing::Faulty`] it is the fault-injecting test double; the example uses it on
//!   hosts without the ioctl).
//!
//! [`HostAttributes::probe`] picks the first or the second for a VM.

use std::borrow::Borrow;

use cgs_core::{Error, Result};
use kvm_bindings::kvm_memory_attributes;
use kvm_ioctls::VmFd;

use crate::tracker::{MemState, PageTracker};
use crate::uapi::{KVM_CAP_MEMORY_ATTRIBUTES, KVM_MEMORY_ATTRIBUTE_PRIVATE};

/// Sets the shared/private attribute of GPA ranges.
pub trait MemoryAttributes {
    /// Set `[gpa, gpa + size)` (page aligned, non-empty) to `state`. Either the whole range
    /// changes or, on error, none of it.
    fn set(&mut self, gpa: u64, size: u64, state: MemState) -> Result<()>;
}

/// `KVM_SET_MEMORY_ATTRIBUTES` on a VM (`V` is `&VmFd`, `Arc<VmFd>`, …).
#[derive(Debug)]
pub struct KvmAttributes<V> {
    vm: V,
}

/// `true` when this VM's KVM supports the PRIVATE attribute.
pub fn kvm_supports_private(vm: &VmFd) -> bool {
    let mask = vm.check_extension_raw(libc::c_ulong::from(KVM_CAP_MEMORY_ATTRIBUTES));
    u64::try_from(mask).is_ok_and(|m| m & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0)
}

impl<V: Borrow<VmFd>> KvmAttributes<V> {
    /// Use `vm`'s `KVM_SET_MEMORY_ATTRIBUTES`; `Unsupported` when KVM does not report the
    /// PRIVATE attribute for it.
    pub fn new(vm: V) -> Result<Self> {
        if !kvm_supports_private(vm.borrow()) {
            return Err(Error::unsupported(
                "KVM_SET_MEMORY_ATTRIBUTES",
                "KVM_CAP_MEMORY_ATTRIBUTES does not include KVM_MEMORY_ATTRIBUTE_PRIVATE",
            ));
        }
        Ok(KvmAttributes { vm })
    }
}

impl<V: Borrow<VmFd>> MemoryAttributes for KvmAttributes<V> {
    fn set(&mut self, gpa: u64, size: u64, state: MemState) -> Result<()> {
        let attributes = if state.is_private() {
            KVM_MEMORY_ATTRIBUTE_PRIVATE
        } else {
            0
        };
        self.vm
            .borrow()
            .set_memory_attributes(kvm_memory_attributes {
                address: gpa,
                size,
                attributes,
                flags: 0,
            })
            .map_err(|e| Error::kvm("KVM_SET_MEMORY_ATTRIBUTES", e))
    }
}

/// A host without private memory: shared is the only state.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedOnlyHost;

impl MemoryAttributes for SharedOnlyHost {
    fn set(&mut self, gpa: u64, size: u64, state: MemState) -> Result<()> {
        match state {
            MemState::Shared => Ok(()),
            MemState::Private => Err(Error::unsupported(
                format!("making {gpa:#x}+{size:#x} private"),
                "this host has no KVM_SET_MEMORY_ATTRIBUTES with KVM_MEMORY_ATTRIBUTE_PRIVATE",
            )),
        }
    }
}

/// The real ioctl when the VM supports it, else the shared-only fallback.
#[derive(Debug)]
pub enum HostAttributes<V> {
    /// `KVM_SET_MEMORY_ATTRIBUTES`.
    Kvm(KvmAttributes<V>),
    /// No private memory on this host.
    SharedOnly(SharedOnlyHost),
}

impl<V: Borrow<VmFd>> HostAttributes<V> {
    /// Probe `vm`.
    pub fn probe(vm: V) -> Self {
        if kvm_supports_private(vm.borrow()) {
            HostAttributes::Kvm(KvmAttributes { vm })
        } else {
            HostAttributes::SharedOnly(SharedOnlyHost)
        }
    }
}

impl<V: Borrow<VmFd>> MemoryAttributes for HostAttributes<V> {
    fn set(&mut self, gpa: u64, size: u64, state: MemState) -> Result<()> {
        match self {
            HostAttributes::Kvm(k) => k.set(gpa, size, state),
            HostAttributes::SharedOnly(s) => s.set(gpa, size, state),
        }
    }
}

/// A userspace record of the attribute of every page: what KVM would hold, for hosts without
/// `KVM_SET_MEMORY_ATTRIBUTES` (the example) and for tests that check tracker/attribute
/// agreement. Combine with [`crate::testing::Faulty`] to inject failures.
// `repr(C)`, `calls` first: the call counter sits in the same cache line as the record's hot
// head (see `PageTracker`), not after its inline runs.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct RecordingAttributes {
    calls: usize,
    record: PageTracker,
}

impl RecordingAttributes {
    /// Record `pages` pages (GPAs `0..pages * 4 KiB`), all shared (KVM's state at VM creation).
    pub fn new(pages: u64) -> Self {
        RecordingAttributes {
            record: PageTracker::new(pages, MemState::Shared),
            calls: 0,
        }
    }

    /// The recorded attributes.
    pub fn record(&self) -> &PageTracker {
        &self.record
    }

    /// Number of successful calls so far.
    pub fn calls(&self) -> usize {
        self.calls
    }
}

impl MemoryAttributes for RecordingAttributes {
    #[inline]
    fn set(&mut self, gpa: u64, size: u64, state: MemState) -> Result<()> {
        let start = gpa >> 12;
        let end = start.saturating_add(size >> 12);
        if let Err(e) = self.record.fill(start..end, state) {
            return Err(out_of_record(e));
        }
        self.calls += 1;
        Ok(())
    }
}

/// A range outside the record (out of line).
#[cold]
#[inline(never)]
fn out_of_record(e: crate::tracker::OutOfRange) -> Error {
    Error::invalid_input("memory attributes range", e.to_string())
}
