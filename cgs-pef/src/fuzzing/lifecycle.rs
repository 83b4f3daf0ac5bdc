//! The `pef_lifecycle` fuzz target: arbitrary orders of [`Lifecycle`] calls on a
//! `pef-guest` over the simulated ultravisor, interleaved with the guest's ultracalls and
//! injected host failures, checked step by step against a model of what each call must do.
//!
//! # Why one shared VM
//!
//! The lifecycle's hooks take kvm-ioctls' [`VmFd`](kvm_ioctls::VmFd) and [`Lifecycle::create_vcpu`] really creates
//! vCPUs, so the target needs `/dev/kvm`. `KVM_CREATE_VM` costs about 4 ms on this project's
//! (nested) test host, a VM with a vCPU about 11 ms: a VM per input would fuzz at about 100
//! inputs per second and 1 million executions would take hours. The PEF backend over the
//! simulator never issues an ioctl on the VM, so one VM serves every input; each input's
//! vCPUs get KVM ids from a range no earlier input used (the VM is replaced when the ids run
//! out), which keeps every input's outcome independent of the inputs before it. Creating a vCPU
//! still costs about 1 ms, so an input creates at most [`MAX_VCPUS`] of them; `KVM_RUN` itself is
//! not fuzzed (the lifecycle tests and the examples run guests): the run operation checks the
//! ready guard, which must refuse every guest that is not ready before it reaches KVM.

use std::sync::{Mutex, OnceLock};

use cgs_core::fuzzing::{expect_outcome, page_type_from_byte};
use cgs_core::testing::SharedVm;
use kvm_ioctls::VcpuFd;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use cgs_core::config::PefGuestConfig;
use cgs_core::{validate_region, DeviceRequirements, Error, Lifecycle, PageType, RunGuard, State};

use super::{decode_call, encode_call, ultracall_step, FUZZ_CALL_LEN, FUZZ_MEM_PAGES, FUZZ_PAGE};
use crate::uv::sim::{GuestMode, PageState, SimEvent};
use crate::{PefGuest, SimUltravisor, MIGRATION_BLOCKER, MSG_ENABLE_FAILED, MSG_NO_SECURE_VMS};

/// At most this many vCPUs reach KVM per input (each costs about 1 ms).
pub const MAX_VCPUS: usize = 2;
/// vCPU ids an input chooses from (one more than [`MAX_VCPUS`], so duplicates and the cap are
/// both reachable).
pub const VCPU_IDS: u64 = 3;

/// Selectors of the lifecycle operations (`selector & 0x7f`); 0..16 are the ultracall steps of
/// [`ultracall_step`].
pub mod op {
    /// `Lifecycle::kvm_init`.
    pub const KVM_INIT: u8 = 16;
    /// `Lifecycle::create_vcpu` with id `a % VCPU_IDS`.
    pub const CREATE_VCPU: u8 = 17;
    /// `Lifecycle::launch_update_memory` at `a` for `b` bytes, page type from `b >> 56`.
    pub const LAUNCH_UPDATE_MEMORY: u8 = 18;
    /// `Lifecycle::launch_update` of a slice of guest memory, claimed to be at `a`.
    pub const LAUNCH_UPDATE: u8 = 19;
    /// `Lifecycle::set_vcpu_state` for index `a`.
    pub const SET_VCPU_STATE: u8 = 20;
    /// `Lifecycle::finalize`.
    pub const FINALIZE: u8 = 21;
    /// `Lifecycle::run` and the ready guards.
    pub const RUN: u8 = 22;
    /// `Lifecycle::reset` (`KVM_PPC_SVM_OFF`).
    pub const RESET: u8 = 23;
    /// `migration_blocker` and `device_requirements`.
    pub const QUERIES: u8 = 24;
    /// The simulator's next `KVM_ENABLE_CAP` fails with an errno chosen by `b`.
    pub const FAIL_ENABLE_CAP: u8 = 25;
    /// The simulator's next `KVM_PPC_SVM_OFF` fails with an errno chosen by `b`.
    pub const FAIL_SVM_OFF: u8 = 26;
    /// `b % 3` vCPUs are inside `KVM_RUN` from now on.
    pub const SET_RUNNING: u8 = 27;
    /// Number of selectors; others wrap around.
    pub const COUNT: u8 = 28;
}

/// Errnos the failure-injection operations choose from (ENOTTY: a kernel without
/// `KVM_PPC_SVM_OFF`, which reset tolerates).
const ERRNOS: [i32; 5] = [
    libc::EINVAL,
    libc::EBUSY,
    libc::ENOTTY,
    libc::ENOMEM,
    libc::EFAULT,
];

/// The shared KVM VM (see the module documentation).
type Host = SharedVm;

fn host() -> Option<&'static Mutex<Host>> {
    static HOST: OnceLock<Option<Mutex<Host>>> = OnceLock::new();
    HOST.get_or_init(|| SharedVm::open("pef_lifecycle fuzz target").map(Mutex::new))
        .as_ref()
}

/// What the simulator looks like from outside, to check that refused calls change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimView {
    svm_enabled: bool,
    mode: GuestMode,
    pages: [usize; 4],
    terminations: u64,
    last_event: Option<SimEvent>,
}

fn view(sim: &SimUltravisor) -> SimView {
    SimView {
        svm_enabled: sim.svm_enabled(),
        mode: sim.mode(),
        pages: [
            sim.count(PageState::Normal),
            sim.count(PageState::Secure),
            sim.count(PageState::Shared),
            sim.count(PageState::PagedOut),
        ],
        terminations: sim.terminations(),
        last_event: sim.last_event().copied(),
    }
}

/// The model: what the lifecycle, the backend and the simulator's host side must have done.
#[derive(Debug)]
struct Model {
    state: State,
    secure_available: bool,
    /// KVM ids of the created vCPUs and whether their state was set.
    vcpus: Vec<(u64, bool)>,
    launched: u64,
    resets: u64,
    fail_enable_cap: Option<i32>,
    fail_svm_off: Option<i32>,
    running: usize,
}

/// What a call must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Ok,
    InvalidState,
    InvalidInput,
    Unsupported,
    NotReady,
    Backend,
    Kvm(i32),
}

fn outcome(r: &cgs_core::Result<()>) -> Want {
    match r {
        Ok(()) => Want::Ok,
        Err(Error::InvalidState { .. }) => Want::InvalidState,
        Err(Error::InvalidInput { .. }) => Want::InvalidInput,
        Err(Error::Unsupported { .. }) => Want::Unsupported,
        Err(Error::NotReady { .. }) => Want::NotReady,
        Err(Error::Backend { .. }) => Want::Backend,
        Err(e @ Error::Kvm { .. }) => Want::Kvm(e.errno().unwrap_or(0)),
        // Any other class is never right for these calls.
        Err(_) => Want::Kvm(-1),
    }
}

fn check(step: usize, what: &str, got: &cgs_core::Result<()>, want: Want) {
    expect_outcome(step, what, outcome(got), want, got.as_ref().err());
}

/// What launching `[gpa, +len)` of `page_type` must return in state `Launching`, when `backed`
/// says whether guest memory covers it.
fn want_launch(gpa: u64, len: u64, page_type: PageType, backed: bool) -> Want {
    if validate_region(gpa, len, page_type).is_err() || !backed {
        Want::InvalidInput
    } else if page_type != PageType::Normal {
        Want::Unsupported
    } else {
        Want::Ok
    }
}

/// Arbitrary sequences of `Lifecycle` calls (kvm_init, create_vcpu, launch updates,
/// set_vcpu_state, finalize, the run guard, reset, migration blocker) on a `pef-guest` over
/// the simulated ultravisor, interleaved with guest ultracalls, hcalls, host accesses, vCPUs
/// entering `KVM_RUN` and injected ioctl failures. After every step: each call returned what
/// the model of the lifecycle and the backend says (a call in the wrong state a typed
/// `InvalidState` and no change anywhere), the simulator's invariants hold, and the lifecycle,
/// its ready guards, the backend and the simulator agree with the model.
///
/// The first input byte configures the host (bit 0: no secure memory, bit 1: hash-page-table
/// guest); then come [`FUZZ_CALL_LEN`]-byte calls: selector (`% op::COUNT`, top bit folds the
/// arguments), `a`, `b`. Without `/dev/kvm` this prints SKIP once and does nothing (it panics
/// when `CGS_REQUIRE_KVM=1`).
#[allow(clippy::panic)]
pub fn fuzz_lifecycle(data: &[u8]) {
    let Some(host) = host() else {
        return;
    };
    let mut host = match host.lock() {
        Ok(h) => h,
        // A panic in an earlier input poisoned the lock; the Host itself is still whole.
        Err(poisoned) => poisoned.into_inner(),
    };
    let Some((&flags, calls)) = data.split_first() else {
        return;
    };
    let (mem, sim) = super::fuzz_guest_memory(|c| {
        c.secure_guests_available = flags & 1 == 0;
        c.radix_guest = flags & 2 == 0;
    });
    let id_base = host.fresh_ids(VCPU_IDS);
    let host: &mut Host = &mut host;
    let mut guest = Lifecycle::new(PefGuest::with_ultravisor(PefGuestConfig::new("pef0"), sim));
    let early_guard: RunGuard = guest.run_guard();
    let mut vcpus: Vec<VcpuFd> = Vec::new();
    let mut m = Model {
        state: State::New,
        secure_available: flags & 1 == 0,
        vcpus: Vec::new(),
        launched: 0,
        resets: 0,
        fail_enable_cap: None,
        fail_svm_off: None,
        running: 0,
    };
    let mem_len = FUZZ_MEM_PAGES * FUZZ_PAGE;

    for (step, call) in calls.chunks_exact(FUZZ_CALL_LEN).enumerate() {
        let (selector, a, b) = decode_call(call);
        let fold = selector & 0x80 != 0;
        let before = view(guest.backend().ultravisor());
        let sel = (selector & 0x7f) % op::COUNT;
        // Whether the call may have changed the simulator.
        let mut sim_may_change = true;
        match sel {
            0..=15 => {
                ultracall_step(guest.backend_mut().ultravisor_mut(), selector, a, b);
            }
            op::KVM_INIT => {
                let r = guest.kvm_init(&host.kvm, &host.vm);
                let want = if m.state != State::New {
                    Want::InvalidState
                } else if !m.secure_available {
                    Want::Unsupported
                } else if m.fail_enable_cap.take().is_some() {
                    Want::Backend
                } else {
                    Want::Ok
                };
                check(step, "kvm_init", &r, want);
                match &r {
                    Ok(()) => m.state = State::Launching,
                    Err(Error::Unsupported { what, why }) => {
                        if what != "pef-guest" || why != MSG_NO_SECURE_VMS {
                            panic!("step {step}: kvm_init: unexpected message {what}: {why}");
                        }
                    }
                    Err(Error::Backend { context, .. }) if context != MSG_ENABLE_FAILED => {
                        panic!("step {step}: kvm_init: unexpected context {context}");
                    }
                    Err(_) => {}
                }
                sim_may_change = want != Want::InvalidState;
            }
            op::CREATE_VCPU => {
                let id = id_base + a % VCPU_IDS;
                let dup = m.vcpus.iter().any(|v| v.0 == id);
                if m.state == State::Launching && !dup && m.vcpus.len() >= MAX_VCPUS {
                    // Would reach KVM once more than an input may (see the module docs).
                    continue;
                }
                let r = guest.create_vcpu(&host.vm, id).map(|v| vcpus.push(v));
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else if dup {
                    Want::InvalidInput
                } else {
                    Want::Ok
                };
                check(step, "create_vcpu", &r, want);
                if r.is_ok() {
                    m.vcpus.push((id, false));
                }
                sim_may_change = false;
            }
            op::LAUNCH_UPDATE_MEMORY => {
                let gpa = if fold { a % (mem_len + FUZZ_PAGE) } else { a };
                let len = if fold {
                    (b & 0xffff) % (mem_len + 2 * FUZZ_PAGE)
                } else {
                    b & 0x00ff_ffff_ffff_ffff
                };
                let pt = page_type_from_byte((b >> 56) as u8);
                let r = usize::try_from(len)
                    .map_err(|_| Error::invalid_input("fuzz", "length"))
                    .and_then(|l| {
                        guest.launch_update_memory(&host.vm, &mem, GuestAddress(gpa), l, pt)
                    });
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else {
                    let backed =
                        usize::try_from(len).is_ok_and(|l| mem.check_range(GuestAddress(gpa), l));
                    want_launch(gpa, len, pt, backed)
                };
                check(step, "launch_update_memory", &r, want);
                if r.is_ok() {
                    m.launched += len;
                }
                sim_may_change = false;
            }
            op::LAUNCH_UPDATE => {
                // A slice of guest memory (at `b`'s offset) that the caller claims is at `a`:
                // the lifecycle can only check the claim's shape.
                let off = (b & 0xffff) % mem_len;
                let len = ((b >> 16) & 0xffff).min(mem_len - off);
                let gpa = if fold { a % (mem_len + FUZZ_PAGE) } else { a };
                let pt = page_type_from_byte((b >> 56) as u8);
                let slice = match mem.get_slice(GuestAddress(off), len as usize) {
                    Ok(s) => s,
                    Err(e) => panic!("step {step}: slice [{off:#x}, +{len:#x}): {e}"),
                };
                // SAFETY: `slice` maps `len` bytes of `mem`, which outlives this call; the new
                // slice covers exactly those bytes and only drops the dirty-bitmap type.
                let plain = unsafe {
                    vm_memory::VolatileSlice::new(slice.ptr_guard_mut().as_ptr(), len as usize)
                };
                let r = guest.launch_update(&host.vm, gpa, plain, pt);
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else {
                    want_launch(gpa, len, pt, true)
                };
                check(step, "launch_update", &r, want);
                if r.is_ok() {
                    m.launched += len;
                }
                sim_may_change = false;
            }
            op::SET_VCPU_STATE => {
                let index = (a % (MAX_VCPUS as u64 + 1)) as usize;
                let vcpu = vcpus.get(index).unwrap_or(&host.stray);
                let r = guest.set_vcpu_state(&host.vm, index, vcpu);
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else if m.vcpus.get(index).is_none_or(|v| v.1) {
                    Want::InvalidInput
                } else {
                    Want::Ok
                };
                check(step, "set_vcpu_state", &r, want);
                if r.is_ok() {
                    m.vcpus[index].1 = true;
                }
                sim_may_change = false;
            }
            op::FINALIZE => {
                let r = guest.finalize(&host.vm);
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else if m.vcpus.is_empty() || m.vcpus.iter().any(|v| !v.1) {
                    Want::InvalidInput
                } else {
                    Want::Ok
                };
                check(step, "finalize", &r, want);
                if r.is_ok() {
                    m.state = State::Ready;
                }
                sim_may_change = false;
            }
            op::RUN => {
                if m.state != State::Ready {
                    // The guard must refuse before KVM_RUN; a ready guest is not run (module docs).
                    let vcpu = match vcpus.first_mut() {
                        Some(v) => v,
                        None => &mut host.stray,
                    };
                    let r = guest.run(vcpu).map(|_| ());
                    check(step, "run", &r, Want::NotReady);
                    let r = guest.run_guard().run(vcpu).map(|_| ());
                    check(step, "run_guard().run", &r, Want::NotReady);
                }
                sim_may_change = false;
            }
            op::RESET => {
                let r = guest.reset(&host.vm);
                let injected = if m.state == State::Ready {
                    m.fail_svm_off.take()
                } else {
                    None
                };
                let want = match (m.state, injected) {
                    (State::New | State::Launching, _) => Want::InvalidState,
                    (State::Ready, Some(libc::ENOTTY)) => Want::Ok,
                    (State::Ready, Some(errno)) => Want::Kvm(errno),
                    (State::Ready, None) if m.running > 0 => Want::Kvm(libc::EBUSY),
                    (State::Ready, None) => Want::Ok,
                };
                check(step, "reset", &r, want);
                let sim = guest.backend().ultravisor();
                let after = view(sim);
                let unchanged = (after.mode, after.pages, after.terminations)
                    == (before.mode, before.pages, before.terminations);
                match want {
                    // A tolerated ENOTTY did nothing (QEMU carries on).
                    Want::Ok if injected == Some(libc::ENOTTY) => {
                        m.resets += 1;
                        if !unchanged {
                            panic!("step {step}: tolerated reset changed {before:?} -> {after:?}");
                        }
                    }
                    // KVM_PPC_SVM_OFF returns the guest and every page to normal.
                    Want::Ok => {
                        m.resets += 1;
                        if after.mode != GuestMode::Normal
                            || after.pages[0] as u64 != FUZZ_MEM_PAGES
                        {
                            panic!("step {step}: reset left {after:?}");
                        }
                    }
                    Want::InvalidState => {}
                    // A failed reset changes nothing (the VMM must tear the VM down or retry).
                    _ if !unchanged => {
                        panic!("step {step}: failed reset changed {before:?} -> {after:?}");
                    }
                    _ => {}
                }
                sim_may_change = want != Want::InvalidState;
            }
            op::QUERIES => {
                match guest.migration_blocker() {
                    Some(b) if b.reason == MIGRATION_BLOCKER => {}
                    other => panic!("step {step}: migration blocker {other:?}"),
                }
                let mut req = DeviceRequirements::protected();
                req.require_guest_memfd = false;
                if guest.device_requirements() != req {
                    panic!(
                        "step {step}: device requirements {:?}",
                        guest.device_requirements()
                    );
                }
                sim_may_change = false;
            }
            op::FAIL_ENABLE_CAP => {
                let errno = ERRNOS[(b % ERRNOS.len() as u64) as usize];
                guest
                    .backend_mut()
                    .ultravisor_mut()
                    .fail_next_enable_cap(errno);
                m.fail_enable_cap = Some(errno);
            }
            op::FAIL_SVM_OFF => {
                let errno = ERRNOS[(b % ERRNOS.len() as u64) as usize];
                guest
                    .backend_mut()
                    .ultravisor_mut()
                    .fail_next_svm_off(errno);
                m.fail_svm_off = Some(errno);
            }
            _ => {
                m.running = (b % 3) as usize;
                guest
                    .backend_mut()
                    .ultravisor_mut()
                    .set_running_vcpus(m.running);
            }
        }
        check_consistency(step, &guest, &early_guard, &m);
        if !sim_may_change && view(guest.backend().ultravisor()) != before {
            panic!("step {step}: a call that must not reach the simulator changed it");
        }
    }
}

/// The lifecycle, its guards, the backend and the simulator agree with the model.
#[allow(clippy::panic)]
fn check_consistency(
    step: usize,
    guest: &Lifecycle<PefGuest<SimUltravisor>>,
    early_guard: &RunGuard,
    m: &Model,
) {
    let backend = guest.backend();
    let sim = backend.ultravisor();
    if let Err(e) = sim.check_invariants() {
        panic!("step {step}: simulator invariant broken: {e}");
    }
    let ready = m.state == State::Ready;
    let facts = [
        ("state", guest.state() == m.state),
        ("is_ready", guest.is_ready() == ready),
        ("ensure_ready", guest.ensure_ready().is_ok() == ready),
        (
            "run_guard",
            guest.run_guard().ensure_ready().is_ok() == ready,
        ),
        (
            "early run_guard",
            early_guard.ensure_ready().is_ok() == ready,
        ),
        ("vcpu_count", guest.vcpu_count() == m.vcpus.len()),
        (
            "secure_guest_enabled",
            backend.secure_guest_enabled() == (m.state != State::New),
        ),
        (
            "svm_enabled",
            sim.svm_enabled() == backend.secure_guest_enabled(),
        ),
        ("launched_bytes", backend.launched_bytes() == m.launched),
        ("resets", backend.resets() == m.resets),
    ];
    if let Some((name, _)) = facts.iter().find(|(_, ok)| !ok) {
        panic!(
            "step {step}: {name} disagrees with the model {m:?}: {:?}, state {}",
            sim,
            guest.state()
        );
    }
}

/// Seed inputs for the `pef_lifecycle` target: a whole launch (init, vCPU, image, state,
/// finalize, the guest going secure, a refused and two accepted resets), the illegal orders
/// (every call before `kvm_init`, twice, out of range, wrong page types, finalize too early) and
/// hosts whose capability is missing or fails to enable.
pub fn seeds_lifecycle() -> Vec<Vec<u8>> {
    let c = |sel: u8, a: u64, b: u64| encode_call(sel, a, b);
    let normal = |len: u64| len; // page type byte 0 (normal) in b's top byte
    let launch = [
        c(op::KVM_INIT, 0, 0),
        c(op::CREATE_VCPU, 0, 0),
        c(op::LAUNCH_UPDATE_MEMORY, 0, normal(2 * FUZZ_PAGE)),
        c(
            op::LAUNCH_UPDATE,
            2 * FUZZ_PAGE,
            (FUZZ_PAGE << 16) | (2 * FUZZ_PAGE),
        ),
        c(op::SET_VCPU_STATE, 0, 0),
        c(op::RUN, 0, 0),
        c(op::FINALIZE, 0, 0),
        c(op::RUN, 0, 0),
        c(0, 0, 0), // the guest calls UV_ESM with its sealed blob
        c(op::QUERIES, 0, 0),
        c(op::SET_RUNNING, 0, 1),
        c(op::RESET, 0, 0), // EBUSY: a vCPU runs
        c(op::SET_RUNNING, 0, 0),
        c(op::RESET, 0, 0),
        c(op::FAIL_SVM_OFF, 0, 2), // ENOTTY: tolerated
        c(op::RESET, 0, 0),
        c(op::FAIL_SVM_OFF, 0, 0), // EINVAL: refused
        c(op::RESET, 0, 0),
    ];
    let illegal = [
        c(op::FINALIZE, 0, 0),
        c(op::RUN, 0, 0),
        c(op::RESET, 0, 0),
        c(op::CREATE_VCPU, 0, 0),
        c(op::LAUNCH_UPDATE_MEMORY, 0, normal(FUZZ_PAGE)),
        c(op::SET_VCPU_STATE, 0, 0),
        c(op::KVM_INIT, 0, 0),
        c(op::KVM_INIT, 0, 0),
        c(op::FINALIZE, 0, 0),
        c(op::CREATE_VCPU, 1, 0),
        c(op::CREATE_VCPU, 1, 0),
        c(op::SET_VCPU_STATE, 1, 0),
        c(op::LAUNCH_UPDATE_MEMORY, 0, (4 << 56) | FUZZ_PAGE), // VMSA
        c(op::LAUNCH_UPDATE_MEMORY, 0, (5 << 56) | FUZZ_PAGE), // secrets page
        c(op::LAUNCH_UPDATE_MEMORY, 0x10, normal(FUZZ_PAGE)),
        c(
            op::LAUNCH_UPDATE_MEMORY,
            3 * FUZZ_PAGE,
            normal(2 * FUZZ_PAGE),
        ),
        c(op::LAUNCH_UPDATE_MEMORY, !0xfff, normal(2 * FUZZ_PAGE)),
        c(op::CREATE_VCPU, 2, 0),
        c(op::FINALIZE, 0, 0),
        c(op::SET_VCPU_STATE, 0, 0),
        c(op::SET_VCPU_STATE, 0, 0),
        c(op::SET_VCPU_STATE, 1, 0),
        c(op::FINALIZE, 0, 0),
        c(op::FINALIZE, 0, 0),
        c(op::KVM_INIT, 0, 0),
        c(op::CREATE_VCPU, 2, 0),
    ];
    let no_secure_memory = [c(op::KVM_INIT, 0, 0), c(0, 0, 0), c(op::KVM_INIT, 0, 0)];
    let enable_fails = [
        c(op::FAIL_ENABLE_CAP, 0, 3),
        c(op::KVM_INIT, 0, 0),
        c(0, 0, 0),
        c(op::KVM_INIT, 0, 0),
        c(0, 0, 0),
    ];
    let seed = |flags: u8, calls: &[[u8; FUZZ_CALL_LEN]]| {
        let mut v = vec![flags];
        v.extend(calls.concat());
        v
    };
    vec![
        seed(0, &launch),
        seed(0, &illegal),
        seed(1, &no_secure_memory),
        seed(0, &enable_fails),
        seed(2, &launch),
    ]
}
