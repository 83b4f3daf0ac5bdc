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
