//! The guest's migration opt-in on real KVM: a guest writes and reads back
//! `MSR_KVM_MIGRATION_CONTROL`, the VMM sees both through the MSR filter, and the blocker lifts.

use cgs_core::testing::{kvm_or_skip, map_guest_memory, set_real_mode_entry};
use cgs_core::Platform;
use cgs_sev::migration::optin::{self, MigrationControl, OptIn, MSR_KVM_MIGRATION_CONTROL};
use kvm_ioctls::{MsrExitReason, VcpuExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

#[rustfmt::skip]
const GUEST: &[u8] = &[
    0x66, 0xb9, 0x08, 0x4d, 0x56, 0x4b, // mov ecx, MSR_KVM_MIGRATION_CONTROL
    0x66, 0x31, 0xd2,                   // xor edx, edx
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, KVM_MIGRATION_READY
    0x0f, 0x30,                         // wrmsr
    0x66, 0x31, 0xc0,                   // xor eax, eax
    0x0f, 0x32,                         // rdmsr
    0xe7, 0x80,                         // out 0x80, ax
    0xf4,                               // hlt
];

#[test]
fn guest_opts_in_through_the_msr() {
    let Some(kvm) = kvm_or_skip("guest_opts_in_through_the_msr") else {
        return;
    };
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
    map_guest_memory(&vm, &mem).unwrap();
    mem.write_slice(GUEST, GuestAddress(0x1000)).unwrap();
    optin::install(&vm).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    set_real_mode_entry(&vcpu, 0x1000).unwrap();

    let mut ctl = MigrationControl::new();
    assert!(ctl.blocker(Platform::Sev).is_some());
    let mut seen = Vec::new();
    loop {
        match vcpu.run().unwrap() {
            VcpuExit::X86Wrmsr(mut exit) => {
                assert_eq!(exit.reason, MsrExitReason::Filter);
                assert_eq!(exit.index, MSR_KVM_MIGRATION_CONTROL);
                assert!(ctl.handle_wrmsr(&mut exit));
                seen.push("wrmsr");
            }
            VcpuExit::X86Rdmsr(mut exit) => {
                assert!(ctl.handle_rdmsr(&mut exit));
                seen.push("rdmsr");
            }
            VcpuExit::IoOut(0x80, data) => {
                assert_eq!(data, &[1, 0], "the guest read back KVM_MIGRATION_READY");
                seen.push("out");
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    assert_eq!(seen, ["wrmsr", "rdmsr", "out"]);
    assert_eq!(ctl.state(), OptIn::Ready);
    assert_eq!(ctl.blocker(Platform::Sev), None);
    // A reset takes the opt-in away again.
    ctl.reset();
    assert!(ctl.blocker(Platform::Sev).is_some());
}
