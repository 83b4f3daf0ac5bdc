//! The machine the backend protects and the resets it distinguishes.

/// The machine the backend protects (QEMU takes these from the machine state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineSpec {
    /// `-smp maxcpus`.
    pub max_cpus: u32,
    /// Guest RAM size in bytes (`maxram`): decides async cleanup (> 2 GiB) and the dump range.
    pub ram_size: u64,
    /// The CPU model has the extended-length SCCB facility (moves SCLP CPU entries to 144).
    pub extended_length_sccb: bool,
    /// QEMU `--only-migratable`.
    pub only_migratable: bool,
}

impl MachineSpec {
    /// A machine with `max_cpus` CPUs, `ram_size` bytes of RAM, extended-length SCCB on.
    pub fn new(max_cpus: u32, ram_size: u64) -> Self {
        MachineSpec {
            max_cpus,
            ram_size,
            extended_length_sccb: true,
            only_migratable: false,
        }
    }

    /// The most CPUs a protected guest can have: the SCLP Read-Info page holds the CPU entries
    /// (16 bytes each) from offset 144 (extended-length SCCB) or 128 to the end of the page.
    pub fn pv_max_cpus(&self) -> u32 {
        let offset = if self.extended_length_sccb { 144 } else { 128 };
        (4096 - offset) / 16
    }
}

/// The reset the guest or the VMM asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// Re-IPL, external reset, load clear: leave protected mode.
    ReIpl,
    /// diag 308 subcode 0 (reset modified clear) while protected.
    ModifiedClear,
    /// diag 308 subcode 1 (reset load normal) while protected.
    LoadNormal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pv_max_cpus_follows_qemu() {
        let mut m = MachineSpec::new(4, 1 << 30);
        assert_eq!(m.pv_max_cpus(), 247);
        m.extended_length_sccb = false;
        assert_eq!(m.pv_max_cpus(), 248);
    }
}
