//! The pef-guest backend through cgs_core::Lifecycle on a real KVM VM, over the simulated and the
//! real ultravisor.

mod common;

use cgs_core::config::PefGuestConfig;
use cgs_core::testing::{
    kvm_or_skip, map_guest_memory, run_to_halt, serial_payload, set_real_mode_entry,
};
use cgs_core::{
    ConfidentialBackend, Error, Lifecycle, PageType, Platform, State, VIRTIO_F_ACCESS_PLATFORM,
};
use cgs_pef::papr::H_SUCCESS;
use cgs_pef::uv::OP_SVM_OFF;
use cgs_pef::{
    GuestMode, KvmUltravisor, PageState, PefGuest, SimUltravisor, Ultravisor, MIGRATION_BLOCKER,
    MSG_ENABLE_FAILED, MSG_NO_SECURE_VMS, PAGE_SIZE,
};
use common::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

fn pef(sim: SimUltravisor) -> Lifecycle<PefGuest<SimUltravisor>> {
    Lifecycle::new(PefGuest::with_ultravisor(PefGuestConfig::new("pef0"), sim))
}

fn sim_over(mem: &GuestMemoryMmap) -> SimUltravisor {
    SimUltravisor::new(config(), mem).unwrap()
}

#[test]
fn backend_identity_requirements_and_blocker() {
    let mem = memory();
    let guest = pef(sim_over(&mem));
    let b = guest.backend();
    assert_eq!(b.object_type(), "pef-guest");
    assert_eq!(b.platform(), Platform::Pef);
    assert_eq!(b.vm_type(), 0);
    assert!(!b.requires_guest_memfd());
    let req = guest.device_requirements();
    assert!(req.virtio_access_platform && req.virtio_disable_legacy && req.disable_mem_merge);
    assert_eq!(req.apply_virtio_features(0), 1 << VIRTIO_F_ACCESS_PLATFORM);
    assert_eq!(
        guest.migration_blocker().unwrap().reason,
        "PEF: Migration is not implemented"
    );
    assert_eq!(MIGRATION_BLOCKER, "PEF: Migration is not implemented");
}

#[test]
fn full_lifecycle_runs_the_guest_goes_secure_and_resets_to_normal() {
    let Some(kvm) = kvm_or_skip("full_lifecycle_runs_the_guest_goes_secure_and_resets_to_normal")
    else {
        return;
    };
    let mem = memory();
    // The VMM loads a real x86 payload at 0x1000 (page 0) and the owner's sealed image.
    let payload = serial_payload(0x1000, b"hello from a PEF guest").unwrap();
    mem.write_slice(&payload, GuestAddress(0x1000)).unwrap();
    prepare_guest_image(&mem);

    let mut guest = pef(sim_over(&mem));
    let vm = guest.create_vm(&kvm).unwrap();
    map_guest_memory(&vm, &mem).unwrap();
    guest.kvm_init(&kvm, &vm).unwrap();
    assert!(guest.backend().secure_guest_enabled());
    assert!(guest.backend().ultravisor().svm_enabled());
    assert!(guest.migration_blocker().is_some());
    let mut vcpu = guest.create_vcpu(&vm, 0).unwrap();
    guest
        .launch_update_memory(
            &vm,
            &mem,
            GuestAddress(0),
            PAGE_SIZE as usize,
            PageType::Normal,
        )
        .unwrap();
    assert_eq!(guest.backend().launched_bytes(), PAGE_SIZE);
    set_real_mode_entry(&vcpu, 0x1000).unwrap();
    guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();
    guest.finalize(&vm).unwrap();
    assert_eq!(guest.state(), State::Ready);

    // The guest runs as a normal guest first (on POWER: SLOF and the boot loader).
    let out = run_to_halt(&guest, &mut vcpu, 100).unwrap();
    assert_eq!(out, b"hello from a PEF guest");

    // Its boot loader then calls UV_ESM; from here on the host cannot see its memory.
    let sim = guest.backend_mut().ultravisor_mut();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_SUCCESS);
    assert!(sim.is_secure());
    let mut buf = [0u8; 4];
    assert!(sim.host_read(0x1000, &mut buf).is_err());
    let mut host_view = vec![0u8; payload.len()];
    mem.read_slice(&mut host_view, GuestAddress(0x1000))
        .unwrap();
    assert!(
        host_view.iter().all(|b| *b == 0),
        "the host mapping holds nothing of the guest"
    );
    let mut guest_view = vec![0u8; payload.len()];
    sim.guest_read(0x1000, &mut guest_view).unwrap();
    assert_eq!(guest_view, payload);
    assert!(guest.migration_blocker().is_some());

    // A reset while a vCPU runs: EBUSY, nothing changes, the VMM must stop vCPUs first.
    guest.backend_mut().ultravisor_mut().set_running_vcpus(1);
    let err = guest.reset(&vm).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EBUSY));
    assert!(
        err.to_string().starts_with("KVM_PPC_SVM_OFF ioctl failed"),
        "{err}"
    );
    assert!(guest.backend().ultravisor().is_secure());
    assert_eq!(guest.state(), State::Ready);

    guest.backend_mut().ultravisor_mut().set_running_vcpus(0);
    guest.reset(&vm).unwrap();
    assert_eq!(guest.backend().resets(), 1);
    let sim = guest.backend().ultravisor();
    assert_eq!(sim.mode(), GuestMode::Normal);
    assert_eq!(sim.count(PageState::Normal), MEM_PAGES as usize);
    assert_eq!(sim.terminations(), 1);
    let mut scrubbed = vec![0u8; SECRET.len()];
    sim.host_read(SECRET_GPA, &mut scrubbed).unwrap();
    assert_eq!(scrubbed, vec![0u8; SECRET.len()]);
    // Migration stays blocked after reset, as in QEMU.
    assert!(guest.migration_blocker().is_some());
    guest.ensure_ready().unwrap();
}

#[test]
fn kvm_init_without_an_ultravisor_gives_qemus_message() {
    let Some(kvm) = kvm_or_skip("kvm_init_without_an_ultravisor_gives_qemus_message") else {
        return;
    };
    let mem = memory();
    let mut cfg = config();
    cfg.secure_guests_available = false;
    let mut guest = pef(SimUltravisor::new(cfg, &mem).unwrap());
    let vm = guest.create_vm(&kvm).unwrap();
    let err = guest.kvm_init(&kvm, &vm).unwrap_err();
    match &err {
        Error::Unsupported { what, why } => {
            assert_eq!(what, "pef-guest");
            assert_eq!(why, MSG_NO_SECURE_VMS);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "pef-guest is not supported: KVM implementation does not support Secure VMs (is an \
         ultravisor running?)"
    );
    assert_eq!(guest.state(), State::New);
    assert!(!guest.backend().secure_guest_enabled());
    assert!(guest.ensure_ready().is_err());
}

#[test]
fn kvm_init_enable_cap_failure_gives_qemus_message_and_can_be_retried() {
    let Some(kvm) =
        kvm_or_skip("kvm_init_enable_cap_failure_gives_qemus_message_and_can_be_retried")
    else {
        return;
    };
    let mem = memory();
    let mut sim = sim_over(&mem);
    sim.fail_next_enable_cap(libc::EPERM);
    let mut guest = pef(sim);
    let vm = guest.create_vm(&kvm).unwrap();
    let err = guest.kvm_init(&kvm, &vm).unwrap_err();
    match &err {
        Error::Backend { context, source } => {
            assert_eq!(context, MSG_ENABLE_FAILED);
            let inner = source.downcast_ref::<Error>().unwrap();
            assert_eq!(inner.errno(), Some(libc::EPERM));
            assert!(inner
                .to_string()
                .starts_with("KVM_ENABLE_CAP(KVM_CAP_PPC_SECURE_GUEST) failed"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with("Error enabling PEF with KVM: "),
        "{err}"
    );
    assert_eq!(guest.state(), State::New);
    assert!(!guest.backend().ultravisor().svm_enabled());
    // The failure was transient: the next kvm_init succeeds.
    guest.kvm_init(&kvm, &vm).unwrap();
    assert_eq!(guest.state(), State::Launching);
}

fn ready_guest(
    kvm: &kvm_ioctls::Kvm,
) -> (
    GuestMemoryMmap,
    Lifecycle<PefGuest<SimUltravisor>>,
    kvm_ioctls::VmFd,
    kvm_ioctls::VcpuFd,
) {
    let mem = memory();
    prepare_guest_image(&mem);
    let mut guest = pef(sim_over(&mem));
    let vm = guest.create_vm(kvm).unwrap();
    guest.kvm_init(kvm, &vm).unwrap();
    let vcpu = guest.create_vcpu(&vm, 0).unwrap();
    guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();
    guest.finalize(&vm).unwrap();
    (mem, guest, vm, vcpu)
}

#[test]
fn reset_tolerates_enotty_like_qemu_and_reports_other_errors() {
    let Some(kvm) = kvm_or_skip("reset_tolerates_enotty_like_qemu_and_reports_other_errors") else {
        return;
    };
    let (_mem, mut guest, vm, _vcpu) = ready_guest(&kvm);
    guest
        .backend_mut()
        .ultravisor_mut()
        .fail_next_svm_off(libc::ENOTTY);
    guest.reset(&vm).unwrap();
    assert_eq!(guest.backend().resets(), 1);
    for errno in [libc::EINVAL, libc::ENOMEM, libc::EBUSY] {
        guest
            .backend_mut()
            .ultravisor_mut()
            .fail_next_svm_off(errno);
        let err = guest.reset(&vm).unwrap_err();
        assert_eq!(err.errno(), Some(errno));
        assert!(matches!(err, Error::Kvm { op, .. } if op == OP_SVM_OFF));
    }
    assert_eq!(guest.backend().resets(), 1);
    // A normal (never secure) guest resets fine.
    guest.reset(&vm).unwrap();
    assert_eq!(guest.backend().resets(), 2);
    assert_eq!(guest.backend().ultravisor().terminations(), 0);
}

#[test]
fn non_normal_launch_pages_are_refused() {
    let Some(kvm) = kvm_or_skip("non_normal_launch_pages_are_refused") else {
        return;
    };
    let mem = memory();
    let mut guest = pef(sim_over(&mem));
    let vm = guest.create_vm(&kvm).unwrap();
    guest.kvm_init(&kvm, &vm).unwrap();
    for t in [
        PageType::Zero,
        PageType::Unmeasured,
        PageType::Secrets,
        PageType::Cpuid,
    ] {
        let err = guest
            .launch_update_memory(&vm, &mem, GuestAddress(0), 4096, t)
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{t}: {err:?}");
    }
    assert_eq!(guest.backend().launched_bytes(), 0);
}

#[test]
fn every_illegal_lifecycle_order_is_refused_before_the_ultravisor() {
    let Some(kvm) = kvm_or_skip("every_illegal_lifecycle_order_is_refused_before_the_ultravisor")
    else {
        return;
    };
    let mem = memory();
    let mut guest = pef(sim_over(&mem));
    let vm = guest.create_vm(&kvm).unwrap();
    let slice = || mem.get_slice(GuestAddress(0), 4096).unwrap();
    let events_before = guest.backend().ultravisor().events().count();
    let expect_state = |r: cgs_core::Result<()>, op: &str| match r {
        Err(Error::InvalidState { op: got, .. }) => assert_eq!(got, op),
        other => panic!("{op}: {other:?}"),
    };

    // New: everything but kvm_init.
    assert!(matches!(
        guest.create_vcpu(&vm, 0),
        Err(Error::InvalidState { .. })
    ));
    expect_state(
        guest.launch_update(&vm, 0, slice(), PageType::Normal),
        "launch_update",
    );
    expect_state(guest.finalize(&vm), "finalize");
    expect_state(guest.reset(&vm), "reset");
    assert!(matches!(guest.ensure_ready(), Err(Error::NotReady { .. })));
    assert_eq!(guest.backend().ultravisor().events().count(), events_before);

    // Launching: no second kvm_init, no reset, no finalize without vCPUs, no run.
    guest.kvm_init(&kvm, &vm).unwrap();
    let events_launching = guest.backend().ultravisor().events().count();
    expect_state(guest.kvm_init(&kvm, &vm), "kvm_init");
    expect_state(guest.reset(&vm), "reset");
    assert!(matches!(
        guest.finalize(&vm),
        Err(Error::InvalidInput { .. })
    ));
    let mut vcpu = guest.create_vcpu(&vm, 0).unwrap();
    assert!(matches!(
        guest.finalize(&vm),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(guest.run(&mut vcpu), Err(Error::NotReady { .. })));
    assert!(matches!(
        guest.set_vcpu_state(&vm, 1, &vcpu),
        Err(Error::InvalidInput { .. })
    ));
    guest.set_vcpu_state(&vm, 0, &vcpu).unwrap();
    assert!(matches!(
        guest.set_vcpu_state(&vm, 0, &vcpu),
        Err(Error::InvalidInput { .. })
    ));
    guest.finalize(&vm).unwrap();
    assert_eq!(
        guest.backend().ultravisor().events().count(),
        events_launching
    );

    // Ready: no kvm_init, vCPU creation, launch update, vCPU state or second finalize.
    expect_state(guest.kvm_init(&kvm, &vm), "kvm_init");
    assert!(matches!(
        guest.create_vcpu(&vm, 1),
        Err(Error::InvalidState { .. })
    ));
    expect_state(
        guest.launch_update(&vm, 0, slice(), PageType::Normal),
        "launch_update",
    );
    expect_state(guest.set_vcpu_state(&vm, 0, &vcpu), "set_vcpu_state");
    expect_state(guest.finalize(&vm), "finalize");
    assert_eq!(
        guest.backend().ultravisor().events().count(),
        events_launching
    );
    guest.ensure_ready().unwrap();
}

#[test]
fn real_ultravisor_reports_unsupported_on_this_host() {
    let Some(kvm) = kvm_or_skip("real_ultravisor_reports_unsupported_on_this_host") else {
        return;
    };
    if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")) {
        eprintln!("SKIP real_ultravisor_reports_unsupported_on_this_host: powerpc host");
        return;
    }
    let mut guest = Lifecycle::new(PefGuest::new(PefGuestConfig::new("pef0")));
    let vm = guest.create_vm(&kvm).unwrap();
    let err = guest.kvm_init(&kvm, &vm).unwrap_err();
    match &err {
        Error::Unsupported { what, why } => {
            assert!(what.contains("KVM_CAP_PPC_SECURE_GUEST"), "{what}");
            assert!(why.contains(std::env::consts::ARCH), "{why}");
            assert!(why.contains("powerpc"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(guest.state(), State::New);
    // Each real call refuses the same way rather than sending a powerpc request number.
    let mut uv = KvmUltravisor::new();
    assert_eq!(uv.name(), "KVM");
    assert!(matches!(
        uv.enable_secure_guest(&vm),
        Err(Error::Unsupported { .. })
    ));
    match uv.svm_off(&vm) {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("KVM_PPC_SVM_OFF")),
        other => panic!("{other:?}"),
    }
    assert_eq!(uv.ioctls(), cgs_pef::ioctl::KvmIoctls::HOST);
}
