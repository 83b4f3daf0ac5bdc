//! Inputs the fuzzers found, kept in `fuzz/regressions/<target>-<name>`, replayed through the
//! same bodies on stable.

use cgs_sev::measure::vmsa::{VcpuRole, VcpuState};

const X87_FSW: &[u8] = include_bytes!("../../fuzz/regressions/measure_vmsa-x87-fsw");
const SCOPED_THREAD_LEAK: &[u8] =
    include_bytes!("../../fuzz/regressions/measure_ovmf-scoped-thread-leak");

/// `measure_vmsa`: a VMSA page with x87 FSW set parsed, but the state has no FSW, so it did not
/// round-trip. Such a page is now refused, like any other field outside the launch state.
#[test]
fn measure_vmsa_x87_fsw() {
    assert!(VcpuState::from_vmsa(X87_FSW, VcpuRole::Bsp).is_err());
    cgs_sev::measure::fuzzing::fuzz_vmsa(X87_FSW);
}

/// `measure_ovmf`: an image whose sections are large enough to be hashed on several threads;
/// LeakSanitizer saw the workers' thread-local memory still live after the scope returned. The
/// workers are now joined one by one; the body must still run cleanly.
#[test]
fn measure_ovmf_scoped_thread_leak() {
    cgs_sev::measure::fuzzing::fuzz_ovmf(SCOPED_THREAD_LEAK);
}

const CPUID_TOTALS: &[u8] =
    include_bytes!("../../fuzz/regressions/sev_lifecycle-cpuid-totals-after-failed-update");

/// `sev_lifecycle`: an SNP launch update of two CPUID pages that both need the firmware's
/// correction. The first page is corrected, retried and measured, the second is refused (one
/// retry per range), so the update fails after the firmware measured a corrected page; the
/// launch totals dropped that correction because they were only added up on success. They now
/// count everything that reached the firmware.
#[test]
fn sev_lifecycle_cpuid_totals_after_failed_update() {
    use cgs_core::{Lifecycle, PageType};
    use cgs_sev::backend::SevBackend;
    use cgs_sev::cpuid::{CpuidFunction, CpuidPage};
    use cgs_sev::firmware::sim::{SimConfig, SimFirmware, SimPlatform};

    cgs_sev::fuzzing::fuzz_lifecycle(CPUID_TOTALS);

    let Some(kvm) =
        cgs_core::testing::kvm_or_skip("sev_lifecycle_cpuid_totals_after_failed_update")
    else {
        return;
    };
    let platform = SimPlatform::new(SimConfig::default());
    let cfg = cgs_core::config::SevSnpGuestConfig::new("snp0", 1);
    let mut guest = Lifecycle::new(SevBackend::snp(&cfg, SimFirmware::new(&platform)).unwrap());
    let vm = kvm.create_vm().unwrap();
    guest.kvm_init(&kvm, &vm).unwrap();
    let mut page = CpuidPage::default();
    page.entries.push(CpuidFunction {
        eax_in: 0x8000_001D,
        ecx_in: 3,
        edx: 0x6,
        ..Default::default()
    });
    let mut mem = [page.to_bytes().unwrap(), page.to_bytes().unwrap()].concat();
    let slice = vm_memory::VolatileSlice::from(&mut mem[..]);
    let e = guest
        .launch_update(&vm, 0x1000, slice, PageType::Cpuid)
        .unwrap_err();
    assert!(matches!(e, cgs_core::Error::InvalidInput { .. }), "{e}");
    let totals = guest.backend().snp_update_totals().unwrap();
    assert_eq!(totals.cpuid_changes.len(), 1, "{totals:?}");
    assert_eq!(guest.backend().firmware().stats().snp_pages, 1);
}
