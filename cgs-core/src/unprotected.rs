//! A backend that protects nothing: the lifecycle with no confidential platform.
//!
//! Useful to VMMs that always drive [`Lifecycle`](crate::Lifecycle) (one code path whether or not
//! the guest is confidential), and to tests of the lifecycle itself on any KVM host.

use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::backend::{ConfidentialBackend, LaunchRegion};
use crate::error::Result;
use crate::migration::MigrationBlocker;
use crate::platform::Platform;

/// The no-op backend: every hook succeeds without touching KVM, migration is never blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotected {
    id: String,
    launched_bytes: u64,
}

impl Unprotected {
    /// A backend with the object id `id` (for messages).
    pub fn new(id: impl Into<String>) -> Self {
        Unprotected {
            id: id.into(),
            launched_bytes: 0,
        }
    }

    /// The object id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many bytes went through `launch_update` (they are left as they are).
    pub fn launched_bytes(&self) -> u64 {
        self.launched_bytes
    }
}

impl ConfidentialBackend for Unprotected {
    fn object_type(&self) -> &'static str {
        "unprotected"
    }

    fn platform(&self) -> Platform {
        Platform::Unprotected
    }

    fn vm_type(&self) -> u64 {
        0
    }

    fn kvm_init(&mut self, _kvm: &Kvm, _vm: &VmFd) -> Result<()> {
        Ok(())
    }

    fn launch_update(&mut self, _vm: &VmFd, region: &LaunchRegion<'_>) -> Result<()> {
        self.launched_bytes = self.launched_bytes.saturating_add(region.len() as u64);
        Ok(())
    }

    fn set_vcpu_state(&mut self, _vm: &VmFd, _index: usize, _vcpu: &VcpuFd) -> Result<()> {
        Ok(())
    }

    fn finalize(&mut self, _vm: &VmFd) -> Result<()> {
        Ok(())
    }

    fn reset(&mut self, _vm: &VmFd) -> Result<()> {
        Ok(())
    }

    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        None
    }
}
