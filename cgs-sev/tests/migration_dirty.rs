//! Dirty logging on real KVM: a guest that writes memory, the pages it wrote, nothing else; and
//! vCPU state captured after a pending port write and restored into a fresh VM.

use cgs_core::testing::{kvm_or_skip, map_guest_memory, set_real_mode_entry};
use cgs_sev::migration::dirty::DirtyLog;
use cgs_sev::migration::testing::*;
use cgs_sev::migration::vcpu::VcpuState;
use kvm_ioctls::VcpuExit;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x10000;

fn guest(kvm: &kvm_ioctls::Kvm) -> (kvm_ioctls::VmFd, GuestMemoryMmap, kvm_ioctls::VcpuFd) {
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    map_guest_memory(&vm, &mem).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    (vm, mem, vcpu)
}

/// Run until the guest reported `n` more progress writes; returns the last counter value.
fn run_progress(vcpu: &mut kvm_ioctls::VcpuFd, n: usize) -> u16 {
    let mut last = 0;
    for _ in 0..n {
        match vcpu.run().unwrap() {
            VcpuExit::IoOut(PROGRESS_PORT, data) => {
                last = u16::from_le_bytes([data[0], data[1]]);
            }
            other => panic!("unexpected exit {other:?}"),
        }
    }
    last
}

#[test]
fn dirty_log_reports_exactly_the_written_pages() {
    let Some(kvm) = kvm_or_skip("dirty_log_reports_exactly_the_written_pages") else {
        return;
    };
    let (vm, mem, mut vcpu) = guest(&kvm);
    let payload = counter_payload(60000, b"x", false).unwrap();
    mem.write_slice(&payload, GuestAddress(u64::from(COUNTER_LOAD_ADDR)))
        .unwrap();
    set_real_mode_entry(&vcpu, COUNTER_LOAD_ADDR).unwrap();
    let log = DirtyLog::enable(&vm, &mem, 0).unwrap();
    assert_eq!(log.slots().len(), 1);
    assert!(log.fetch(&vm).unwrap().is_empty(), "nothing ran yet");

    // Three iterations: counter page + data pages 1, 2, 3.
    assert_eq!(run_progress(&mut vcpu, 3), 3);
    let dirty = log.fetch(&vm).unwrap();
    assert_eq!(
        dirty,
        vec![
            0,
            DATA_BASE + 0x1000,
            DATA_BASE + 0x2000,
            DATA_BASE + 0x3000
        ]
    );
    // The log was cleared by the fetch.
    assert!(log.fetch(&vm).unwrap().is_empty());

    // Eight more iterations touch all eight data pages; the code page (only read) stays clean.
    run_progress(&mut vcpu, 8);
    let dirty = log.fetch(&vm).unwrap();
    let mut want = vec![0];
    want.extend((0..8).map(|i| DATA_BASE + i * 0x1000));
    assert_eq!(dirty, want);
    assert!(!dirty.contains(&u64::from(COUNTER_LOAD_ADDR)));
    assert_eq!(mem.read_obj::<u16>(GuestAddress(COUNTER_ADDR)).unwrap(), 11);
    log.disable(&vm).unwrap();
}

#[test]
fn vcpu_state_moves_between_vms() {
    let Some(kvm) = kvm_or_skip("vcpu_state_moves_between_vms") else {
        return;
    };
    let (_vm, mem, mut vcpu) = guest(&kvm);
    let payload = counter_payload(20, b"resumed\n", false).unwrap();
    mem.write_slice(&payload, GuestAddress(u64::from(COUNTER_LOAD_ADDR)))
        .unwrap();
    set_real_mode_entry(&vcpu, COUNTER_LOAD_ADDR).unwrap();
    assert_eq!(run_progress(&mut vcpu, 5), 5);
    // Stopped on a port write KVM has not completed yet: capture completes it first.
    let st = VcpuState::capture(&mut vcpu).unwrap();
    assert_eq!(
        st.regs.rip,
        u64::from(COUNTER_LOAD_ADDR) + 0x15,
        "after out 0x80, ax"
    );
    assert_eq!(st.regs.rax & 0xffff, 5);

    // A second VM with a copy of the memory and the state continues the count and prints.
    let (_vm2, mem2, mut vcpu2) = guest(&kvm);
    let mut buf = vec![0u8; MEM];
    mem.read_slice(&mut buf, GuestAddress(0)).unwrap();
    mem2.write_slice(&buf, GuestAddress(0)).unwrap();
    st.restore(&vcpu2).unwrap();
    assert_eq!(run_progress(&mut vcpu2, 1), 6);
    let mut out = Vec::new();
    loop {
        match vcpu2.run().unwrap() {
            VcpuExit::IoOut(PROGRESS_PORT, _) => {}
            VcpuExit::IoOut(0x3f8, d) => out.extend_from_slice(d),
            VcpuExit::Hlt => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    assert_eq!(out, b"resumed\n");
    assert_eq!(
        mem2.read_obj::<u16>(GuestAddress(COUNTER_ADDR)).unwrap(),
        20
    );
}
