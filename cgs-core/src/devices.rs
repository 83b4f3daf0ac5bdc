//! What devices must do for a protected guest.
//!
//! A protected guest's memory cannot be read by the host, so virtio devices must use the DMA API
//! (bounce buffers in shared memory) instead of assuming direct access. QEMU forces
//! `virtio-device.iommu_platform=on` and `virtio-pci.disable-legacy=on` and turns memory merging
//! off whenever a confidential-guest-support object is present; s390 PV additionally disables RAM
//! discard (ballooning) while protected. A backend reports these as [`DeviceRequirements`]; the VMM
//! applies them when it builds its devices.

use serde::{Deserialize, Serialize};

/// The virtio feature bit `VIRTIO_F_ACCESS_PLATFORM` (a.k.a. `VIRTIO_F_IOMMU_PLATFORM`), bit 33.
pub const VIRTIO_F_ACCESS_PLATFORM: u32 = 33;

/// Device and memory policy a protected guest needs from the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceRequirements {
    /// Offer `VIRTIO_F_ACCESS_PLATFORM` on every virtio device (QEMU `iommu_platform=on`).
    pub virtio_access_platform: bool,
    /// Do not offer legacy (pre-1.0) virtio interfaces (QEMU `disable-legacy=on`).
    pub virtio_disable_legacy: bool,
    /// Turn off KSM/memory merging for guest RAM (QEMU `mem-merge=off`).
    pub disable_mem_merge: bool,
    /// Refuse RAM discard (balloon inflation, free page reporting) while the guest is protected.
    pub disable_ram_discard: bool,
    /// Guest RAM must be backed by guest_memfd (QEMU `require_guest_memfd`).
    pub require_guest_memfd: bool,
}

impl DeviceRequirements {
    /// No requirements: an unprotected guest.
    pub const fn unprotected() -> Self {
        DeviceRequirements {
            virtio_access_platform: false,
            virtio_disable_legacy: false,
            disable_mem_merge: false,
            disable_ram_discard: false,
            require_guest_memfd: false,
        }
    }

    /// QEMU's defaults for any confidential guest.
    pub const fn protected() -> Self {
        DeviceRequirements {
            virtio_access_platform: true,
            virtio_disable_legacy: true,
            disable_mem_merge: true,
            disable_ram_discard: false,
            require_guest_memfd: false,
        }
    }

    /// Apply the virtio part to a device's offered feature bits.
    ///
    /// ```
    /// use cgs_core::{DeviceRequirements, VIRTIO_F_ACCESS_PLATFORM};
    /// let features = DeviceRequirements::protected().apply_virtio_features(0);
    /// assert_eq!(features, 1 << VIRTIO_F_ACCESS_PLATFORM);
    /// ```
    pub fn apply_virtio_features(&self, features: u64) -> u64 {
        if self.virtio_access_platform {
            features | (1u64 << VIRTIO_F_ACCESS_PLATFORM)
        } else {
            features
        }
    }
}
