//! The lifecycle's ordering contract on a real KVM VM: every illegal transition is refused with a
//! typed error naming the expected and actual state, and never reaches the backend.

use std::sync::{Arc, Mutex};

use cgs_core::testing::{
    kvm_or_skip, map_guest_memory, run_to_halt, serial_payload, set_real_mode_entry,
};
use cgs_core::{
    ConfidentialBackend, Error, LaunchRegion, Lifecycle, MigrationBlocker, PageType, Platform,
    State, Unprotected,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// A backend that records every hook it receives and can be told to fail one.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<String>>>,
    fail: Option<&'static str>,
}

impl Recorder {
    fn log(&self, what: impl Into<String>) -> cgs_core::Result<()> {
        let what = what.into();
        let name = what.split(' ').next().unwrap_or("").to_string();
        self.calls.lock().unwrap().push(what);
        if self.fail == Some(name.as_str()) {
            return Err(Error::unsupported(name, "told to fail"));
        }
        Ok(())
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl ConfidentialBackend for Recorder {
    fn object_type(&self) -> &'static str {
        "recorder-guest"
    }
    fn platform(&self) -> Platform {
        Platform::SevSnp
    }
    fn vm_type(&self) -> u64 {
        0
    }
    fn kvm_init(&mut self, _: &Kvm, _: &VmFd) -> cgs_core::Result<()> {
        self.log("kvm_init")
    }
    fn vcpu_created(&mut self, _: &VmFd, index: usize, _: &VcpuFd) -> cgs_core::Result<()> {
        self.log(format!("vcpu_created {index}"))
    }
    fn launch_update(&mut self, _: &VmFd, r: &LaunchRegion<'_>) -> cgs_core::Result<()> {
        self.log(format!(
            "launch_update {:#x}+{:#x} {}",
            r.gpa,
            r.len(),
            r.page_type.name()
        ))
    }
    fn set_vcpu_state(&mut self, _: &VmFd, index: usize, _: &VcpuFd) -> cgs_core::Result<()> {
        self.log(format!("set_vcpu_state {index}"))
    }
    fn finalize(&mut self, _: &VmFd) -> cgs_core::Result<()> {
        self.log("finalize")
    }
    fn reset(&mut self, _: &VmFd) -> cgs_core::Result<()> {
        self.log("reset")
    }
    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        Some(MigrationBlocker::new("recorder: not migratable"))
    }
}

fn state_err(r: cgs_core::Result<impl std::fmt::Debug>, op: &str, actual: State) {
    match r {
        Err(Error::InvalidState {
            op: o,
            actual: a,
            expected,
        }) => {
            assert_eq!((o, a), (op, actual), "expected {expected}");
            let msg = Error::InvalidState {
                op: o,
                expected,
                actual: a,
            }
            .to_string();
            assert!(msg.contains(op) && msg.contains(actual.name()), "{msg}");
        }
        other => panic!("{op} in {actual}: expected InvalidState, got {other:?}"),
    }
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
}

#[test]
fn illegal_transitions_in_every_state() {
    let Some(kvm) = kvm_or_skip("illegal_transitions_in_every_state") else {
        return;
    };
    let rec = Recorder::default();
    let mut guest = Lifecycle::new(rec.clone());
    let mem = memory();
    let vm = guest.create_vm(&kvm).unwrap();
    map_guest_memory(&vm, &mem).unwrap();
    // A second VM only lends us a vCPU fd for calls that must be refused before KVM is touched.
    let other_vm = kvm.create_vm().unwrap();
    let mut stray_vcpu = other_vm.create_vcpu(0).unwrap();
    let slice = || mem.get_slice(GuestAddress(0), 0x1000).unwrap();

    // New.
    assert_eq!(guest.state(), State::New);
    state_err(guest.create_vcpu(&vm, 0), "create_vcpu", State::New);
    state_err(
        guest.launch_update(&vm, 0, slice(), PageType::Normal),
        "launch_update",
        State::New,
    );
    state_err(
        guest.launch_update_memory(&vm, &mem, GuestAddress(0), 0x1000, PageType::Normal),
        "launch_update",
        State::New,
    );
    state_err(
        guest.set_vcpu_state(&vm, 0, &stray_vcpu),
        "set_vcpu_state",
        State::New,
    );
    state_err(guest.finalize(&vm), "finalize", State::New);
    state_err(guest.reset(&vm), "reset", State::New);
    assert!(matches!(
        guest.run(&mut stray_vcpu),
        Err(Error::NotReady {
            state: State::New,
            ..
        })
    ));
    assert!(rec.calls().is_empty(), "{:?}", rec.calls());

    // Launching.
    guest.kvm_init(&kvm, &vm).unwrap();
    assert_eq!(guest.state(), State::Launching);
    state_err(guest.kvm_init(&kvm, &vm), "kvm_init", State::Launching);
    state_err(guest.create_vm(&kvm), "create_vm", State::Launching);
    state_err(guest.reset(&vm), "reset", State::Launching);
    let err = guest.run(&mut stray_vcpu).unwrap_err();
    assert!(matches!(
        err,
        Error::NotReady {
            state: State::Launching,
            ..
        }
    ));
    assert!(err.to_string().contains("finalize was not called"), "{err}");
    // Finalize without vCPUs, and with a vCPU whose state is not set.
    assert!(matches!(
        guest.finalize(&vm),
        Err(Error::InvalidInput { .. })
    ));
    let vcpu = guest.create_vcpu(&vm, 0).unwrap();
    assert!(matches!(
        guest.create_vcpu(&vm, 0),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        guest.finalize(&vm),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        guest.set_vcpu_state(&vm, 1, &vcpu),
        Err(Error::InvalidInput { .. })
    ));
    // Bad regions.
    let bad = mem.get_slice(GuestAddress(0), 0x800).unwrap();
    assert!(matches!(
        guest.launch_update(&vm, 0, bad, PageType::Normal),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        guest.launch_update(&vm, 0x10, slice(), PageType::Normal),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        guest.launch_update(&vm, u64::MAX - 0xfff, slice(), PageType::Normal),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        guest.launch_update(&vm, 0, slice(), PageType::Vmsa),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        guest.launch_update_memory(&vm, &mem, GuestAddress(0xf000), 0x2000, PageType::Normal),
        Err(Error::InvalidInput { .. })
    ));
    guest
        .launch_update(&vm, 0x1000, slice(), PageType::Normal)
        .unwrap();
    guest
        .launch_update_memory(&vm, &mem, GuestAddress(0x2000), 0x2000, PageType::Zero)
        .unwrap();
    guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();
    assert!(matches!(
        guest.set_vcpu_state(&vm, 0, &vcpu),
        Err(Error::InvalidInput { .. })
    ));
    guest.finalize(&vm).unwrap();

    // Ready.
    assert!(guest.is_ready());
    state_err(guest.create_vm(&kvm), "create_vm", State::Ready);
    state_err(guest.kvm_init(&kvm, &vm), "kvm_init", State::Ready);
    state_err(guest.create_vcpu(&vm, 1), "create_vcpu", State::Ready);
    state_err(
        guest.launch_update(&vm, 0, slice(), PageType::Normal),
        "launch_update",
        State::Ready,
    );
    state_err(
        guest.set_vcpu_state(&vm, 0, &vcpu),
        "set_vcpu_state",
        State::Ready,
    );
    state_err(guest.finalize(&vm), "finalize", State::Ready);
    guest.reset(&vm).unwrap();
    assert_eq!(guest.state(), State::Ready);
    assert_eq!(
        guest.migration_blocker().unwrap().reason,
        "recorder: not migratable"
    );
    assert!(guest.device_requirements().virtio_access_platform);
    assert!(guest.device_requirements().require_guest_memfd);

    assert_eq!(
        rec.calls(),
        vec![
            "kvm_init",
            "vcpu_created 0",
            "launch_update 0x1000+0x1000 normal",
            "launch_update 0x2000+0x2000 zero",
            "set_vcpu_state 0",
            "finalize",
            "reset",
        ]
    );
}

#[test]
fn failing_hooks_leave_the_state_unchanged() {
    let Some(kvm) = kvm_or_skip("failing_hooks_leave_the_state_unchanged") else {
        return;
    };
    for hook in [
        "kvm_init",
        "vcpu_created",
        "set_vcpu_state",
        "finalize",
        "reset",
    ] {
        let rec = Recorder {
            fail: Some(hook),
            ..Default::default()
        };
        let mut guest = Lifecycle::new(rec.clone());
        let vm = guest.create_vm(&kvm).unwrap();
        let r = guest.kvm_init(&kvm, &vm);
        if hook == "kvm_init" {
            assert!(matches!(r, Err(Error::Unsupported { .. })));
            assert_eq!(guest.state(), State::New);
            continue;
        }
        let vcpu = guest.create_vcpu(&vm, 0);
        if hook == "vcpu_created" {
            assert!(vcpu.is_err());
            assert_eq!(guest.vcpu_count(), 0);
            continue;
        }
        let vcpu = vcpu.unwrap();
        let r = guest.set_vcpu_state(&vm, 0, &vcpu);
        if hook == "set_vcpu_state" {
            assert!(r.is_err());
            // Not marked as set: finalize still refuses.
            assert!(matches!(
                guest.finalize(&vm),
                Err(Error::InvalidInput { .. })
            ));
            continue;
        }
        let r = guest.finalize(&vm);
        if hook == "finalize" {
            assert!(r.is_err());
            assert_eq!(guest.state(), State::Launching);
            continue;
        }
        assert!(guest.reset(&vm).is_err());
        assert_eq!(guest.state(), State::Ready);
    }
}

#[test]
fn ready_guest_runs_and_unfinalized_guest_is_refused() {
    let Some(kvm) = kvm_or_skip("ready_guest_runs_and_unfinalized_guest_is_refused") else {
        return;
    };
    for finalize in [false, true] {
        let mut guest = Lifecycle::new(Unprotected::new("cgs0"));
        let mem = memory();
        let vm = guest.create_vm(&kvm).unwrap();
        map_guest_memory(&vm, &mem).unwrap();
        guest.kvm_init(&kvm, &vm).unwrap();
        let payload = serial_payload(0x1000, b"ready\n").unwrap();
        mem.write_slice(&payload, GuestAddress(0x1000)).unwrap();
        guest
            .launch_update_memory(
                &vm,
                &mem,
                GuestAddress(0x1000),
                payload.len(),
                PageType::Normal,
            )
            .unwrap();
        let mut vcpu = guest.create_vcpu(&vm, 0).unwrap();
        set_real_mode_entry(&vcpu, 0x1000).unwrap();
        guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();
        let guard = guest.run_guard();
        assert!(matches!(guard.ensure_ready(), Err(Error::NotReady { .. })));
        if finalize {
            guest.finalize(&vm).unwrap();
            // The guard handed out before finalize sees the change (vCPU threads hold clones).
            std::thread::spawn(move || guard.ensure_ready())
                .join()
                .unwrap()
                .unwrap();
            let out = run_to_halt(&guest, &mut vcpu, 100).unwrap();
            assert_eq!(out, b"ready\n");
            assert_eq!(guest.backend().launched_bytes(), 4096);
            assert!(guest.migration_blocker().is_none());
        } else {
            let err = run_to_halt(&guest, &mut vcpu, 100).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::NotReady { .. }));
            assert!(
                msg.contains("not ready") || msg.contains("does not support"),
                "{msg}"
            );
        }
    }
}
