//! Migration through cgs-core's lifecycle on real KVM and the simulator: the source is a
//! `sev-guest` launched by the SEV backend whose guest opts in through the MSR (lifting the
//! blocker); the destination is an [`IncomingSev`] lifecycle that becomes ready only after the
//! whole stream was verified, and never with a corrupt one.

use cgs_core::testing::kvm_or_skip;
use cgs_core::{ConfidentialBackend, Error, Lifecycle};
use cgs_gmem::tracker::{MemState, PageTracker};
use cgs_sev::firmware::sim::{GuestState, SimConfig, SimFirmware, SimPlatform};
use cgs_sev::firmware::SevMigrationFirmware;
use cgs_sev::migration::backend::{IncomingSev, REASON_INCOMING};
use cgs_sev::migration::dirty::DirtyLog;
use cgs_sev::migration::optin::{self, MigrationControl, REASON_NOT_OPTED_IN};
use cgs_sev::migration::outgoing::Outgoing;
use cgs_sev::migration::testing::*;
use cgs_sev::migration::vcpu::VcpuState;
use cgs_sev::policy::SevPolicy;
use kvm_ioctls::{Kvm, VcpuExit};

const MSG: &[u8] = b"resumed through the lifecycle\n";
const TARGET: u16 = 300;

/// Run the source until its guest opted in and made `n` progress writes.
fn run_source(src: &mut BackendGuest, ctl: &mut MigrationControl, n: usize) {
    let guard = src.guest.run_guard();
    let mut seen = 0;
    while seen < n {
        match guard.run(&mut src.vcpu).unwrap() {
            VcpuExit::X86Wrmsr(mut exit) => {
                assert!(ctl.handle_wrmsr(&mut exit));
                optin::apply(ctl, src.guest.backend_mut()).unwrap();
            }
            VcpuExit::IoOut(PROGRESS_PORT, _) => seen += 1,
            other => panic!("unexpected exit {other:?}"),
        }
    }
}

fn migrate(kvm: &Kvm) -> (Vec<u8>, std::sync::Arc<SimPlatform>, VcpuState) {
    let a = SimPlatform::new(SimConfig::default());
    let b = SimPlatform::new(SimConfig::default());
    let mut src = launch_with_backend(kvm, &a, SevPolicy::NODBG, TARGET, MSG, true).unwrap();
    optin::install(&src.vm).unwrap();
    let mut ctl = MigrationControl::new();
    assert!(
        src.guest.migration_blocker().is_some(),
        "blocked until the guest opts in"
    );
    run_source(&mut src, &mut ctl, 5);
    assert_eq!(src.guest.migration_blocker(), None, "the guest opted in");

    let log = DirtyLog::enable(&src.vm, &src.mem, 0).unwrap();
    let target = SimFirmware::new(&b).platform_certs().unwrap();
    let blocker = src.guest.migration_blocker();
    let guard = src.guest.run_guard();
    let fw = src.guest.backend_mut().firmware_mut();
    let mut out = Outgoing::start(fw, &src.vm, &src.mem, 1, blocker, &target, Vec::new()).unwrap();
    out.full_round(&src.tracker).unwrap();
    for _ in 0..2 {
        for _ in 0..4 {
            assert!(matches!(
                guard.run(&mut src.vcpu).unwrap(),
                VcpuExit::IoOut(PROGRESS_PORT, _)
            ));
        }
        out.round(&log.fetch(&src.vm).unwrap(), &src.tracker)
            .unwrap();
    }
    let state = VcpuState::capture(&mut src.vcpu).unwrap();
    out.round(&log.fetch(&src.vm).unwrap(), &src.tracker)
        .unwrap();
    let (bytes, stats) = out.finish(&src.tracker, &[state]).unwrap();
    assert_eq!(stats.rounds, 4);
    assert_eq!(
        src.guest.backend().firmware().guest_state(),
        Some(GuestState::Sent)
    );
    // A reset on the source clears the opt-in and the shared list.
    src.tracker.set(0..1, MemState::Shared).unwrap();
    ctl.guest_reset(&mut src.tracker);
    assert_eq!(src.tracker.state(0), Some(MemState::Private));
    optin::apply(&ctl, src.guest.backend_mut()).unwrap();
    assert_eq!(
        src.guest.migration_blocker().unwrap().reason,
        REASON_NOT_OPTED_IN
    );
    (bytes, b, state)
}

struct Dest {
    guest: Lifecycle<IncomingSev<SimFirmware>>,
    vm: kvm_ioctls::VmFd,
    mem: vm_memory::GuestMemoryMmap,
    vcpu: kvm_ioctls::VcpuFd,
    tracker: PageTracker,
}

fn destination(kvm: &Kvm, platform: &std::sync::Arc<SimPlatform>) -> Dest {
    let mut guest = Lifecycle::new(IncomingSev::new("sev0", SimFirmware::new(platform), false));
    let vm = guest.create_vm(kvm).unwrap();
    let mem = backend_guest_memory().unwrap();
    cgs_core::testing::map_guest_memory(&vm, &mem).unwrap();
    guest.kvm_init(kvm, &vm).unwrap();
    let vcpu = guest.create_vcpu(&vm, 0).unwrap();
    Dest {
        guest,
        vm,
        mem,
        vcpu,
        tracker: PageTracker::new(BACKEND_TRACKER_PAGES, MemState::Private),
    }
}

#[test]
fn incoming_guest_becomes_ready_only_after_the_stream() {
    let Some(kvm) = kvm_or_skip("incoming_guest_becomes_ready_only_after_the_stream") else {
        return;
    };
    let (bytes, b, state) = migrate(&kvm);

    let mut d = destination(&kvm, &b);
    assert_eq!(d.guest.migration_blocker().unwrap().reason, REASON_INCOMING);
    // Nothing can be launched into an incoming guest, and it cannot finalize or run yet.
    assert!(d.guest.set_vcpu_state(&d.vm, 0, &d.vcpu).is_err());
    assert!(d.guest.finalize(&d.vm).is_err());
    assert!(matches!(
        d.guest.run(&mut d.vcpu),
        Err(Error::NotReady { .. })
    ));

    let got = d
        .guest
        .backend_mut()
        .receive(&d.vm, &d.mem, &mut d.tracker, &mut bytes.as_slice())
        .unwrap();
    assert_eq!(got.vcpus, vec![state]);
    d.guest.set_vcpu_state(&d.vm, 0, &d.vcpu).unwrap();
    d.guest.finalize(&d.vm).unwrap();
    assert!(d.guest.is_ready());
    assert_eq!(d.guest.migration_blocker(), None, "the guest had opted in");
    let (progress, serial) = run_to_end(&mut d.vcpu, 10_000).unwrap();
    assert_eq!(*progress.last().unwrap(), TARGET);
    assert_eq!(serial, MSG);
    // A reset takes the opt-in away.
    d.guest.reset(&d.vm).unwrap();
    assert_eq!(
        d.guest.migration_blocker().unwrap().reason,
        REASON_NOT_OPTED_IN
    );
}

#[test]
fn a_corrupt_stream_leaves_the_incoming_guest_unready() {
    let Some(kvm) = kvm_or_skip("a_corrupt_stream_leaves_the_incoming_guest_unready") else {
        return;
    };
    let (mut bytes, b, _) = migrate(&kvm);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let mut d = destination(&kvm, &b);
    let err = d
        .guest
        .backend_mut()
        .receive(&d.vm, &d.mem, &mut d.tracker, &mut bytes.as_slice())
        .unwrap_err();
    eprintln!("refused as expected: {err}");
    assert!(d.guest.backend().received().is_none());
    assert!(d.guest.set_vcpu_state(&d.vm, 0, &d.vcpu).is_err());
    assert!(d.guest.finalize(&d.vm).is_err());
    assert!(!d.guest.is_ready());
    assert!(matches!(
        d.guest.run(&mut d.vcpu),
        Err(Error::NotReady { .. })
    ));
    assert_ne!(
        d.guest.backend().firmware().guest_state(),
        Some(GuestState::Running)
    );
    // A launch update is refused on an incoming guest.
    use vm_memory::GuestMemoryBackend;
    let slice = d.mem.get_slice(vm_memory::GuestAddress(0), 4096).unwrap();
    let region = cgs_core::LaunchRegion {
        gpa: 0,
        data: slice,
        page_type: cgs_core::PageType::Normal,
    };
    assert!(matches!(
        d.guest.backend_mut().launch_update(&d.vm, &region),
        Err(Error::Unsupported { .. })
    ));
}
