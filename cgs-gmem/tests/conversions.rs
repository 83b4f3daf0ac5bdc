//! Synthetic-exit tests of the one conversion path, replaying sequences modelled on the KVM
//! selftest `private_mem_conversions_test`: 4K and 2M ranges, back and forth, overlapping, odd
//! pages re-shared, driven through real kvm-ioctls `VcpuExit::Hypercall` / `MemoryFault`
//! values; contents checked after discard, tracker/attribute/listener agreement, and a fault
//! injected at every step leaving everything unchanged.

use cgs_gmem::attrs::{MemoryAttributes, RecordingAttributes, SharedOnlyHost};
use cgs_gmem::convert::{ConversionRequest, Converter, PageSizeHint, Step};
use cgs_gmem::exits::{handle_exit, ExitOutcome};
use cgs_gmem::testing::{FaultPlan, Faulty, ListenerEvent, MemDiscard, RecordingListener};
use cgs_gmem::tracker::MemState;
use cgs_gmem::uapi::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
    KVM_MEMORY_EXIT_FLAG_PRIVATE,
};
use kvm_ioctls::{HypercallExit, VcpuExit};

const BASE: u64 = 4 << 30; // the selftest's data GPA
const K4: u64 = 4096;
const M2: u64 = 2 << 20;
const RAM: u64 = 2 * M2 + 2 * K4;

type Conv = Converter<Faulty<RecordingAttributes>, Faulty<MemDiscard>>;

struct Rig {
    conv: Conv,
    attrs: FaultPlan,
    discard: FaultPlan,
    listener: FaultPlan,
    events: RecordingListener,
}

fn rig() -> Rig {
    let attrs = Faulty::new(RecordingAttributes::new((BASE + RAM) / K4));
    let discard = Faulty::new(MemDiscard::new(BASE, RAM as usize));
    let (ap, dp) = (attrs.plan(), discard.plan());
    let mut conv = Converter::new(&[(BASE, RAM)], MemState::Shared, attrs, discard).unwrap();
    let events = RecordingListener::new();
    let l = Faulty::new(events.clone());
    let lp = l.plan();
    conv.register_listener(Box::new(l)).unwrap();
    Rig {
        conv,
        attrs: ap,
        discard: dp,
        listener: lp,
        events,
    }
}

impl Rig {
    /// Issue a MAP_GPA_RANGE hypercall exit; returns (outcome, ret).
    fn hypercall(&mut self, gpa: u64, npages: u64, attrs: u64) -> (ExitOutcome, u64) {
        let mut ret = 0u64;
        let mut exit = VcpuExit::Hypercall(HypercallExit {
            nr: KVM_HC_MAP_GPA_RANGE,
            args: [gpa, npages, attrs, 0, 0, 0],
            ret: &mut ret,
            longmode: 1,
        });
        let out = handle_exit(&mut self.conv, &mut exit);
        (out, ret)
    }

    fn map(&mut self, gpa: u64, size: u64, to: MemState) {
        let mut attrs = if to.is_private() {
            KVM_MAP_GPA_RANGE_ENCRYPTED
        } else {
            0
        };
        if gpa % M2 == 0 && size % M2 == 0 {
            attrs |= KVM_MAP_GPA_RANGE_PAGE_SZ_2M;
        }
        let (out, ret) = self.hypercall(gpa, size / K4, attrs);
        assert_eq!(ret, 0, "{out:?}");
        assert!(matches!(out, ExitOutcome::Converted(_)), "{out:?}");
    }

    fn mem(&mut self) -> &mut MemDiscard {
        &mut self.conv.discard_mut().inner
    }

    fn fill(&mut self, private: bool, gpa: u64, size: u64, byte: u8) {
        let m = self.mem();
        let r = m.span(gpa, size).unwrap();
        let side = if private {
            &mut m.private
        } else {
            &mut m.shared
        };
        side[r].fill(byte);
    }

    fn check(&mut self, private: bool, gpa: u64, size: u64, byte: u8) {
        let m = self.mem();
        let r = m.span(gpa, size).unwrap();
        let side = if private { &m.private } else { &m.shared };
        assert!(
            side[r].iter().all(|&b| b == byte),
            "{} side of {gpa:#x}+{size:#x} is not {byte:#x}",
            if private { "private" } else { "shared" }
        );
    }

    /// Tracker, recorded attributes and the listener's view of shared memory all agree.
    fn check_agreement(&self) {
        let t = self.conv.tracker();
        let rec = self.conv.attrs().inner.record();
        let mut listener_shared = vec![false; (RAM / K4) as usize];
        for e in self.events.snapshot() {
            let (gpa, size, v) = match e {
                ListenerEvent::Populated(g, s) => (g, s, true),
                ListenerEvent::Discarded(g, s) => (g, s, false),
            };
            for p in (gpa - BASE) / K4..(gpa - BASE + size) / K4 {
                listener_shared[p as usize] = v;
            }
        }
        for p in 0..RAM / K4 {
            let gfn = BASE / K4 + p;
            let s = t.state(gfn).unwrap();
            assert_eq!(rec.state(gfn), Some(s), "attribute of page {p}");
            assert_eq!(
                listener_shared[p as usize],
                s == MemState::Shared,
                "listener page {p}"
            );
        }
    }

    fn snapshot(&self) -> (Vec<std::ops::Range<u64>>, Vec<std::ops::Range<u64>>, usize) {
        let all = 0..(BASE + RAM) / K4;
        (
            self.conv
                .tracker()
                .runs(all.clone(), MemState::Private)
                .collect(),
            self.conv
                .attrs()
                .inner
                .record()
                .runs(all, MemState::Private)
                .collect(),
            self.events.snapshot().len(),
        )
    }
}

/// guest_test_explicit_conversion: for each (offset, size) of the selftest, convert to private
/// and write, re-share the odd 4K frames, convert back to shared; check contents after every
/// discard and that tracker, attributes and listeners agree throughout.
#[test]
fn explicit_conversion_sequences() {
    for (off, size) in [(0, K4), (0, M2), (K4, K4), (K4, M2), (M2, K4)] {
        let mut r = rig();
        let gpa = BASE + off;
        r.fill(false, gpa, size, 0x11);
        r.fill(true, gpa, size, 0xee); // stale private data must be dropped on → shared
        r.map(gpa, size, MemState::Private);
        r.check(false, gpa, size, 0); // shared side discarded
        r.check(true, gpa, size, 0xee);
        r.fill(true, gpa, size, 0x22); // the guest writes private memory
        r.check_agreement();
        // Re-share odd 4K frames, one hypercall each.
        for p in (1..size / K4).step_by(2) {
            let g = gpa + p * K4;
            r.map(g, K4, MemState::Shared);
            r.check(true, g, K4, 0); // private copy punched
            r.fill(false, g, K4, 0x33);
        }
        r.check_agreement();
        if size > K4 {
            r.check(true, gpa, K4, 0x22); // even frames keep private data
        }
        // Back to shared as a whole: the remaining private frames are punched.
        r.map(gpa, size, MemState::Shared);
        r.check(true, gpa, size, 0);
        for p in (1..size / K4).step_by(2) {
            r.check(false, gpa + p * K4, K4, 0x33); // shared data written while shared survives
        }
        assert_eq!(
            r.conv
                .tracker()
                .count(BASE / K4..(BASE + RAM) / K4, MemState::Private),
            0
        );
        r.check_agreement();
    }
}

/// Overlapping requests only touch the pages that change, and a repeated request does no work.
#[test]
fn overlapping_and_idempotent_conversions() {
    let mut r = rig();
    r.map(BASE, M2, MemState::Private);
    let calls = r.conv.attrs().inner.calls();
    let events = r.events.snapshot().len();
    // Same range again: no attribute call, no event, nothing changed.
    let c = r.conv.to_private(BASE, M2).unwrap();
    assert!(c.changed.is_empty());
    assert_eq!(r.conv.attrs().inner.calls(), calls);
    assert_eq!(r.events.snapshot().len(), events);
    // Overlapping: [1M, 2M + 8K) private → only [2M, 2M + 8K) changes.
    let c = r.conv.to_private(BASE + M2 / 2, M2 / 2 + 2 * K4).unwrap();
    assert_eq!(c.changed, vec![(BASE + M2) / K4..(BASE + M2) / K4 + 2]);
    assert_eq!(
        r.events.snapshot().last(),
        Some(&ListenerEvent::Discarded(BASE + M2, 2 * K4))
    );
    // Punch a hole in the middle, then share a range overlapping both sides of it.
    r.conv.to_shared(BASE + 4 * K4, 4 * K4).unwrap();
    let c = r.conv.to_shared(BASE + 2 * K4, 8 * K4).unwrap();
    assert_eq!(
        c.changed,
        vec![BASE / K4 + 2..BASE / K4 + 4, BASE / K4 + 8..BASE / K4 + 10]
    );
    assert_eq!(r.conv.stats().noop, 1);
    r.check_agreement();
}

/// 2M requests must be 2M aligned; bad hypercalls get EINVAL and change nothing; other
/// hypercall numbers are left to the VMM.
#[test]
fn invalid_hypercalls_return_einval_and_change_nothing() {
    let mut r = rig();
    r.map(BASE + M2, K4, MemState::Private);
    let before = r.snapshot();
    let enc = KVM_MAP_GPA_RANGE_ENCRYPTED;
    let cases: &[(u64, u64, u64)] = &[
        (BASE + K4, 512, enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M), // 2M hint, 4K-aligned GPA
        (BASE, 513, enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M),      // 2M hint, odd size
        (BASE, 0, enc),                                       // zero pages
        (BASE + 1, 1, enc),                                   // unaligned GPA
        (BASE, 1, 0x20),                                      // reserved attribute bit
        (BASE, 1, 3),                                         // unknown page size
        (!0xfff, 2, enc),                                     // wraps
        (BASE, u64::MAX / 4096 + 1, enc),                     // npages * 4K overflows
        (0, 1, enc),                                          // outside RAM
        (BASE + RAM - K4, 2, enc),                            // runs past RAM
    ];
    for &(gpa, n, a) in cases {
        let (out, ret) = r.hypercall(gpa, n, a);
        assert_eq!(ret, libc::EINVAL as u64, "{gpa:#x} {n} {a:#x}: {out:?}");
        assert!(matches!(out, ExitOutcome::Refused { .. }));
        assert_eq!(r.snapshot(), before);
    }
    // Another hypercall number: not ours, ret untouched.
    let mut ret = 77u64;
    let mut exit = VcpuExit::Hypercall(HypercallExit {
        nr: 11,
        args: [0; 6],
        ret: &mut ret,
        longmode: 0,
    });
    assert!(matches!(
        handle_exit(&mut r.conv, &mut exit),
        ExitOutcome::NotConversion
    ));
    assert_eq!(ret, 77);
    assert!(matches!(
        handle_exit(&mut r.conv, &mut VcpuExit::Hlt),
        ExitOutcome::NotConversion
    ));
}

/// KVM_EXIT_MEMORY_FAULT converts to what the access needed; unknown flags are fatal.
#[test]
fn memory_fault_exits() {
    let mut r = rig();
    let mut exit = VcpuExit::MemoryFault {
        flags: KVM_MEMORY_EXIT_FLAG_PRIVATE,
        gpa: BASE + 3 * K4,
        size: K4,
    };
    assert!(
        matches!(handle_exit(&mut r.conv, &mut exit), ExitOutcome::Converted(c) if c.changed_pages() == 1)
    );
    assert_eq!(r.conv.state(BASE + 3 * K4), Some(MemState::Private));
    let mut exit = VcpuExit::MemoryFault {
        flags: 0,
        gpa: BASE + 3 * K4,
        size: K4,
    };
    assert!(matches!(
        handle_exit(&mut r.conv, &mut exit),
        ExitOutcome::Converted(_)
    ));
    assert_eq!(r.conv.state(BASE + 3 * K4), Some(MemState::Shared));
    let before = r.snapshot();
    for (flags, gpa) in [(1 << 5, BASE), (KVM_MEMORY_EXIT_FLAG_PRIVATE, 0x1000)] {
        let mut exit = VcpuExit::MemoryFault {
            flags,
            gpa,
            size: K4,
        };
        assert!(matches!(
            handle_exit(&mut r.conv, &mut exit),
            ExitOutcome::Fatal(_)
        ));
    }
    assert_eq!(r.snapshot(), before);
    r.check_agreement();
}

/// A fault injected at every step (attributes, discard of each run, each listener
/// notification), in both directions, leaves tracker, attributes and listener view unchanged,
/// names the step, and a retry then succeeds.
#[test]
fn fault_injection_at_every_step_leaves_state_unchanged() {
    for to in [MemState::Private, MemState::Shared] {
        for (step, n) in [
            (Step::SetAttributes, 0),
            (Step::Discard, 0),
            (Step::Discard, 1), // the second run's discard
            (Step::Notify, 0),
            (Step::Notify, 1),
        ] {
            let mut r = rig();
            // Start with two private runs so the request covers two changed runs either way.
            r.conv.to_private(BASE, 2 * K4).unwrap();
            r.conv.to_private(BASE + 4 * K4, 2 * K4).unwrap();
            if to == MemState::Private {
                r.conv.to_shared(BASE, 8 * K4).unwrap();
                r.conv.to_private(BASE + 2 * K4, 2 * K4).unwrap();
            }
            let before = r.snapshot();
            let plan = match step {
                Step::SetAttributes => &r.attrs,
                Step::Discard => &r.discard,
                _ => &r.listener,
            };
            plan.fail_after(n);
            let err = r
                .conv
                .convert(ConversionRequest::new(BASE, 8 * K4, to))
                .unwrap_err();
            assert_eq!(err.step, step, "{to} {step} {n}: {err}");
            assert!(err.rollback_errors.is_empty(), "{:?}", err.rollback_errors);
            assert!(err.to_string().contains(&step.to_string()));
            assert_eq!(err.guest_errno(), libc::EINVAL as u64);
            let after = r.snapshot();
            assert_eq!(after.0, before.0, "tracker changed ({to} {step} {n})");
            assert_eq!(after.1, before.1, "attributes changed ({to} {step} {n})");
            r.check_agreement();
            // Retry without the fault.
            let c = r
                .conv
                .convert(ConversionRequest::new(BASE, 8 * K4, to))
                .unwrap();
            assert!(c.changed_pages() > 0);
            r.check_agreement();
            assert_eq!(r.conv.stats().failed, 1);
        }
    }
}

/// A transient backend errno reaches the guest as EAGAIN.
#[test]
fn transient_failure_is_eagain() {
    let mut r = rig();
    r.attrs.fail_after_with(0, libc::EAGAIN);
    let (out, ret) = r.hypercall(BASE, 1, KVM_MAP_GPA_RANGE_ENCRYPTED);
    assert_eq!(ret, libc::EAGAIN as u64, "{out:?}");
    let (_, ret) = r.hypercall(BASE, 1, KVM_MAP_GPA_RANGE_ENCRYPTED);
    assert_eq!(ret, 0);
}

/// A listener registered late gets the shared ranges replayed; one that refuses the replay is
/// not registered and is told to drop what it accepted.
#[test]
fn listener_registration_replays_shared_ranges() {
    let mut r = rig();
    r.conv.to_private(BASE + K4, K4).unwrap();
    let late = RecordingListener::new();
    let id = r.conv.register_listener(Box::new(late.clone())).unwrap();
    assert_eq!(
        late.snapshot(),
        vec![
            ListenerEvent::Populated(BASE, K4),
            ListenerEvent::Populated(BASE + 2 * K4, RAM - 2 * K4)
        ]
    );
    r.conv.unregister_listener(id).unwrap();
    assert_eq!(late.snapshot().len(), 4);
    let refusing = Faulty::new(RecordingListener::new());
    let log = refusing.inner.clone();
    refusing.plan().fail_after(1);
    assert!(r.conv.register_listener(Box::new(refusing)).is_err());
    assert_eq!(
        log.snapshot(),
        vec![
            ListenerEvent::Populated(BASE, K4),
            ListenerEvent::Discarded(BASE, K4)
        ]
    );
}

/// A host without private memory refuses → private with a clear error and state unchanged.
#[test]
fn shared_only_host_refuses_private() {
    let mut conv = Converter::new(
        &[(0, M2)],
        MemState::Shared,
        SharedOnlyHost,
        MemDiscard::new(0, M2 as usize),
    )
    .unwrap();
    let err = conv.to_private(0, K4).unwrap_err();
    assert_eq!(err.step, Step::SetAttributes);
    assert!(
        err.to_string().contains("KVM_SET_MEMORY_ATTRIBUTES"),
        "{err}"
    );
    assert_eq!(conv.state(0), Some(MemState::Shared));
    assert!(conv.to_shared(0, M2).unwrap().changed.is_empty());
    assert!(Converter::new(
        &[(0, M2)],
        MemState::Private,
        SharedOnlyHost,
        MemDiscard::new(0, 8)
    )
    .is_err());
    let mut s = SharedOnlyHost;
    assert!(s.set(0, K4, MemState::Shared).is_ok());
}

/// 1G hints need 1G alignment; RAM layouts are validated.
#[test]
fn page_size_hints_and_layout_validation() {
    let mut r = rig();
    let req = ConversionRequest {
        page_size: PageSizeHint::Size1G,
        ..ConversionRequest::new(BASE, M2, MemState::Private)
    };
    assert_eq!(r.conv.convert(req).unwrap_err().step, Step::Validate);
    let d = || MemDiscard::new(0, 8);
    assert!(Converter::new(&[(0, 0)], MemState::Shared, SharedOnlyHost, d()).is_err());
    assert!(Converter::new(&[(1, K4)], MemState::Shared, SharedOnlyHost, d()).is_err());
    assert!(Converter::new(
        &[(0, 2 * K4), (K4, K4)],
        MemState::Shared,
        SharedOnlyHost,
        d()
    )
    .is_err());
    assert!(Converter::new(&[(!0xfff, 2 * K4)], MemState::Shared, SharedOnlyHost, d()).is_err());
    // Two adjacent RAM ranges: a request may span both; a hole between ranges is refused.
    let mut c = Converter::new(
        &[(0, K4), (K4, K4), (4 * K4, K4)],
        MemState::Shared,
        RecordingAttributes::new(8),
        MemDiscard::new(0, 8 * K4 as usize),
    )
    .unwrap();
    assert_eq!(c.to_private(0, 2 * K4).unwrap().changed_pages(), 2);
    assert_eq!(c.to_private(K4, 4 * K4).unwrap_err().step, Step::Validate);
    assert_eq!(c.state(3 * K4), None);
}
