//! SEV live migration end to end on the simulated firmware and real KVM VMs: two platforms with
//! their own keys, a guest that keeps writing memory, dirty rounds, the destination resuming the
//! guest; and every refusal (NOSEND policy, blocked guest, tampered or replayed packets, corrupt
//! streams) with the destination never becoming ready.

use std::sync::Arc;

use cgs_core::testing::kvm_or_skip;
use cgs_core::{Error, MigrationBlocker};
use cgs_gmem::tracker::MemState;
use cgs_sev::firmware::sim::{GuestState, SimConfig, SimPlatform};
use cgs_sev::firmware::{status_of, SevFirmware, SevMigrationFirmware, SevStatus};
use cgs_sev::migration::dirty::DirtyLog;
use cgs_sev::migration::error::MigrationError;
use cgs_sev::migration::firmware::PlatformCerts;
use cgs_sev::migration::incoming::Incoming;
use cgs_sev::migration::outgoing::Outgoing;
use cgs_sev::migration::stream::{self, Record, StreamError, FRAME_HEADER_LEN, PREAMBLE_LEN};
use cgs_sev::migration::testing::*;
use cgs_sev::migration::vcpu::VcpuState;
use cgs_sev::policy::SevPolicy;
use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress};

const TARGET: u16 = 400;
const MSG: &[u8] = b"hello from the migrated guest\n";
/// A page the guest declared shared (it holds data page 7 of the counter guest).
const SHARED_GPA: u64 = DATA_BASE + 7 * 0x1000;

struct Migrated {
    bytes: Vec<u8>,
    source_mem: Vec<u8>,
    state: VcpuState,
    last: u16,
}

/// Run a source guest on `src_platform` with three dirty rounds and return the stream for a
/// destination on `dst_platform`.
fn migrate_out(
    kvm: &Kvm,
    src_platform: &Arc<SimPlatform>,
    dst_platform: &Arc<SimPlatform>,
) -> Migrated {
    let mut g =
        launch_counter_guest(kvm, src_platform, SevPolicy::NODBG, TARGET, MSG, false).unwrap();
    g.tracker
        .set(SHARED_GPA / 4096..SHARED_GPA / 4096 + 1, MemState::Shared)
        .unwrap();
    let log = DirtyLog::enable(&g.vm, &g.mem, 0).unwrap();
    run_progress(&mut g.vcpu, 10).unwrap();

    let target = certs_of(dst_platform);
    let mut out = Outgoing::start(&mut g.fw, &g.vm, &g.mem, 1, None, &target, Vec::new()).unwrap();
    assert_eq!(out.full_round(&g.tracker).unwrap(), 16);
    // The guest keeps running between rounds (the source VMM would run it in its vCPU thread).
    let mut rounds = Vec::new();
    for _ in 0..2 {
        log.fetch(&g.vm).unwrap();
        run_progress(&mut g.vcpu, 3).unwrap();
        let dirty = log.fetch(&g.vm).unwrap();
        assert!(dirty.contains(&0), "the counter page is dirty");
        rounds.push(out.round(&dirty, &g.tracker).unwrap());
    }
    assert!(rounds.iter().all(|&n| (1..=4).contains(&n)), "{rounds:?}");
    let last = run_progress(&mut g.vcpu, 2).unwrap();
    // Stop-and-copy.
    let state = VcpuState::capture(&mut g.vcpu).unwrap();
    let dirty = log.fetch(&g.vm).unwrap();
    out.round(&dirty, &g.tracker).unwrap();
    let (bytes, stats) = out.finish(&g.tracker, &[state]).unwrap();
    assert_eq!(stats.rounds, 4);
    assert!(stats.shared_pages >= 1);
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert_eq!(g.fw.guest_state(), Some(GuestState::Sent));
    let mut source_mem = vec![0u8; TEST_MEM_SIZE];
    g.mem.read_slice(&mut source_mem, GuestAddress(0)).unwrap();
    Migrated {
        bytes,
        source_mem,
        state,
        last,
    }
}

fn platforms() -> (Arc<SimPlatform>, Arc<SimPlatform>) {
    (
        SimPlatform::new(SimConfig::default()),
        SimPlatform::new(SimConfig::default()),
    )
}

/// Feed `bytes` to a fresh destination; returns the result and the destination's firmware state.
/// The platform certificates of a destination on `platform`.
fn certs_of(platform: &Arc<SimPlatform>) -> PlatformCerts {
    cgs_sev::firmware::sim::SimFirmware::new(platform)
        .platform_certs()
        .unwrap()
}

/// Feeds a corrupt `bytes` to a destination on `platform`: the stream decoder must refuse it and
/// the destination must not be running. Returns the decoder's error.
fn refused_stream(kvm: &Kvm, platform: &Arc<SimPlatform>, bytes: &[u8]) -> StreamError {
    let (res, state) = migrate_in(kvm, platform, bytes);
    assert_ne!(state, Some(GuestState::Running), "{res:?}");
    match res {
        Err(MigrationError::Stream(e)) => e,
        other => panic!("expected a stream error, got {other:?}"),
    }
}

fn migrate_in(
    kvm: &Kvm,
    platform: &Arc<SimPlatform>,
    bytes: &[u8],
) -> (Result<(), MigrationError>, Option<GuestState>) {
    let mut d = destination_guest(kvm, platform).unwrap();
    let res = (|| {
        let mut inc = Incoming::new(&mut d.fw, &d.vm, &d.mem, 1)?;
        for chunk in bytes.chunks(1000) {
            inc.feed(chunk)?;
        }
        inc.finish(&mut d.tracker).map(|_| ())
    })();
    let state = d.fw.guest_state();
    (res, state)
}

#[test]
fn guest_migrates_and_resumes_on_another_platform() {
    let Some(kvm) = kvm_or_skip("guest_migrates_and_resumes_on_another_platform") else {
        return;
    };
    let (a, b) = platforms();
    let m = migrate_out(&kvm, &a, &b);

    let mut d = destination_guest(&kvm, &b).unwrap();
    let mut inc = Incoming::new(&mut d.fw, &d.vm, &d.mem, 1).unwrap();
    for chunk in m.bytes.chunks(777) {
        inc.feed(chunk).unwrap();
    }
    let got = inc.finish(&mut d.tracker).unwrap();
    assert_eq!(d.fw.guest_state(), Some(GuestState::Running));
    assert_eq!(got.vcpus, vec![m.state]);
    assert_eq!(got.rounds, 4);
    assert_eq!(got.shared.len(), 1);
    assert_eq!(got.shared[0].gpa, SHARED_GPA);
    assert_eq!(d.tracker.state(SHARED_GPA / 4096), Some(MemState::Shared));
    assert_eq!(d.tracker.state(0), Some(MemState::Private));
    let mut dst_mem = vec![0u8; TEST_MEM_SIZE];
    d.mem.read_slice(&mut dst_mem, GuestAddress(0)).unwrap();
    assert_eq!(dst_mem, m.source_mem, "memory arrived intact");
    // The host sees ciphertext of the private pages on the destination, under the new key.
    let view = d.fw.host_view(0x1000, &dst_mem[0x1000..0x2000]).unwrap();
    assert_ne!(view, dst_mem[0x1000..0x2000]);

    got.vcpus[0].restore(&d.vcpu).unwrap();
    let (progress, serial) = run_to_end(&mut d.vcpu, 10_000).unwrap();
    assert_eq!(
        progress[0],
        m.last + 1,
        "the guest continues where it stopped"
    );
    assert_eq!(*progress.last().unwrap(), TARGET);
    assert_eq!(serial, MSG);
}

#[test]
fn nosend_policy_is_refused_by_the_firmware() {
    let Some(kvm) = kvm_or_skip("nosend_policy_is_refused_by_the_firmware") else {
        return;
    };
    let (a, b) = platforms();
    let mut g = launch_counter_guest(
        &kvm,
        &a,
        SevPolicy::NODBG | SevPolicy::NOSEND,
        10,
        b"x",
        false,
    )
    .unwrap();
    let target = certs_of(&b);
    let err = Outgoing::start(&mut g.fw, &g.vm, &g.mem, 1, None, &target, Vec::new()).unwrap_err();
    match err {
        MigrationError::Platform(e @ Error::Firmware { .. }) => {
            assert_eq!(status_of(&e), Some(SevStatus::POLICY_FAILURE));
            assert!(e.to_string().contains("NOSEND"), "{e}");
        }
        other => panic!("expected POLICY_FAILURE, got {other:?}"),
    }
    assert_eq!(
        g.fw.guest_state(),
        Some(GuestState::Running),
        "the guest keeps running"
    );
}

#[test]
fn a_blocked_guest_is_refused_before_the_firmware() {
    let Some(kvm) = kvm_or_skip("a_blocked_guest_is_refused_before_the_firmware") else {
        return;
    };
    let (a, b) = platforms();
    let mut g = launch_counter_guest(&kvm, &a, SevPolicy::NODBG, 10, b"x", false).unwrap();
    let target = certs_of(&b);
    let blocker =
        cgs_sev::migration::optin::MigrationControl::new().blocker(cgs_core::Platform::Sev);
    let err =
        Outgoing::start(&mut g.fw, &g.vm, &g.mem, 1, blocker, &target, Vec::new()).unwrap_err();
    assert!(
        matches!(err, MigrationError::Blocked(MigrationBlocker { .. })),
        "{err:?}"
    );
    assert_eq!(g.fw.guest_state(), Some(GuestState::Running));
}

#[test]
fn an_sev_es_guest_stays_blocked() {
    let Some(kvm) = kvm_or_skip("an_sev_es_guest_stays_blocked") else {
        return;
    };
    use cgs_sev::firmware::{Flavour, InitParams, LaunchStart};
    let (a, b) = platforms();
    let mut g = destination_guest(&kvm, &a).unwrap();
    // A fresh VM on platform A, initialised and launched as SEV-ES instead.
    let mut fw = cgs_sev::firmware::sim::SimFirmware::new(&a);
    fw.init(&g.vm, &InitParams::Legacy(Flavour::SevEs)).unwrap();
    fw.launch_start(
        &g.vm,
        &LaunchStart {
            handle: 0,
            policy: SevPolicy::NODBG | SevPolicy::ES,
            dh_cert: None,
            session: None,
        },
    )
    .unwrap();
    fw.launch_measure(&g.vm).unwrap();
    fw.launch_finish(&g.vm).unwrap();
    g.fw = fw;
    let target = certs_of(&b);
    let err = Outgoing::start(&mut g.fw, &g.vm, &g.mem, 1, None, &target, Vec::new()).unwrap_err();
    match err {
        MigrationError::Blocked(b) => assert!(b.reason.contains("SEV-ES"), "{b}"),
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(g.fw.guest_state(), Some(GuestState::Running));
}

#[test]
fn abandoning_a_migration_cancels_it() {
    let Some(kvm) = kvm_or_skip("abandoning_a_migration_cancels_it") else {
        return;
    };
    let (a, b) = platforms();
    let mut g = launch_counter_guest(&kvm, &a, SevPolicy::NODBG, 10, b"x", false).unwrap();
    let target = certs_of(&b);
    {
        let mut out =
            Outgoing::start(&mut g.fw, &g.vm, &g.mem, 1, None, &target, Vec::new()).unwrap();
        out.full_round(&g.tracker).unwrap();
        // Dropped without finish.
    }
    assert_eq!(
        g.fw.guest_state(),
        Some(GuestState::Running),
        "SEND_CANCEL on drop"
    );
    let out = Outgoing::start(&mut g.fw, &g.vm, &g.mem, 1, None, &target, Vec::new()).unwrap();
    out.cancel().unwrap();
    assert_eq!(g.fw.guest_state(), Some(GuestState::Running));
}

/// Offset of record `n` in a stream.
fn record_offset(bytes: &[u8], n: usize) -> usize {
    let mut off = PREAMBLE_LEN;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
        off += FRAME_HEADER_LEN + len;
    }
    off
}

fn find_record(bytes: &[u8], pred: impl Fn(&Record) -> bool) -> usize {
    let recs = stream::decode_all(bytes).unwrap();
    recs.iter().position(pred).unwrap()
}

#[test]
fn corrupt_streams_never_make_the_destination_ready() {
    let Some(kvm) = kvm_or_skip("corrupt_streams_never_make_the_destination_ready") else {
        return;
    };
    let (a, b) = platforms();
    let m = migrate_out(&kvm, &a, &b);
    let bytes = &m.bytes;

    // Truncated anywhere.
    for cut in [100, bytes.len() - 1] {
        let e = refused_stream(&kvm, &b, &bytes[..cut]);
        assert!(
            matches!(e, StreamError::Truncated { .. }),
            "cut {cut}: {e:?}"
        );
    }

    // A flipped byte in a shared page: only the checksum sees it.
    let shared = find_record(bytes, |r| matches!(r, Record::SharedPage(_)));
    let mut b1 = bytes.clone();
    b1[record_offset(bytes, shared) + FRAME_HEADER_LEN + 8 + 5] ^= 0x40;
    let e = refused_stream(&kvm, &b, &b1);
    assert!(matches!(e, StreamError::ChecksumMismatch), "{e:?}");

    // A flipped byte in an encrypted page: the destination firmware rejects the packet.
    let enc = find_record(bytes, |r| matches!(r, Record::EncryptedPage(_)));
    let mut b2 = bytes.clone();
    b2[record_offset(bytes, enc) + FRAME_HEADER_LEN + 8 + 52 + 4 + 100] ^= 0x01;
    let (res, state) = migrate_in(&kvm, &b, &b2);
    match res {
        Err(MigrationError::Platform(e)) => {
            assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT), "{e}")
        }
        other => panic!("tampered packet accepted: {other:?}"),
    }
    assert_eq!(state, Some(GuestState::ReceiveUpdate));

    // Wrong version.
    let mut b3 = bytes.clone();
    b3[8] = 9;
    let e = refused_stream(&kvm, &b, &b3);
    assert!(
        matches!(e, StreamError::UnsupportedVersion { found: 9, .. }),
        "{e:?}"
    );

    // Reordered and replayed records.
    let r = (
        record_offset(bytes, enc),
        record_offset(bytes, enc + 1),
        record_offset(bytes, enc + 2),
    );
    let mut b4 = bytes[..r.0].to_vec();
    b4.extend_from_slice(&bytes[r.1..r.2]);
    b4.extend_from_slice(&bytes[r.0..r.1]);
    b4.extend_from_slice(&bytes[r.2..]);
    let e = refused_stream(&kvm, &b, &b4);
    assert!(matches!(e, StreamError::Reordered { .. }), "{e:?}");
    let mut b5 = bytes[..r.1].to_vec();
    b5.extend_from_slice(&bytes[r.0..r.1]);
    b5.extend_from_slice(&bytes[r.1..]);
    let e = refused_stream(&kvm, &b, &b5);
    assert!(matches!(e, StreamError::Replayed { .. }), "{e:?}");

    // A destination whose platform is not the one the session was made for.
    let c = SimPlatform::new(SimConfig::default());
    let (res, state) = migrate_in(&kvm, &c, bytes);
    match res {
        Err(MigrationError::Platform(e)) => {
            assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT), "{e}")
        }
        other => panic!("foreign platform accepted the session: {other:?}"),
    }
    assert_eq!(state, None, "no context was created");

    // And the intact stream still works.
    let (res, state) = migrate_in(&kvm, &b, bytes);
    res.unwrap();
    assert_eq!(state, Some(GuestState::Running));
}

#[test]
fn replayed_and_tampered_packets_are_rejected_by_the_firmware() {
    let Some(kvm) = kvm_or_skip("replayed_and_tampered_packets_are_rejected_by_the_firmware")
    else {
        return;
    };
    let (a, b) = platforms();
    let m = migrate_out(&kvm, &a, &b);
    let recs = stream::decode_all(&m.bytes).unwrap();
    let (Record::Header(h), Record::Session(s)) = (&recs[0], &recs[1]) else {
        panic!("stream does not start with header and session");
    };
    // The last packet of the stream carries the page's final contents.
    let pkt = recs
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::EncryptedPage(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    let mut d = destination_guest(&kvm, &b).unwrap();
    let page = d.mem.get_slice(GuestAddress(pkt.gpa), 4096).unwrap();
    use vm_memory::GuestMemoryBackend;

    // Before RECEIVE_START there is no context.
    let e =
        d.fw.receive_update_data(&d.vm, pkt.gpa, &pkt.header, &pkt.transport, &page)
            .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_GUEST));
    // A policy that does not match the session's policy MAC.
    let wrong = cgs_sev::migration::firmware::ReceiveStart {
        policy: h.policy | SevPolicy::NOKS,
        source_pdh: &s.pdh_cert,
        session: &s.session,
    };
    assert_eq!(
        status_of(&d.fw.receive_start(&d.vm, &wrong).unwrap_err()),
        Some(SevStatus::POLICY_FAILURE)
    );
    d.fw.receive_start(
        &d.vm,
        &cgs_sev::migration::firmware::ReceiveStart {
            policy: h.policy,
            source_pdh: &s.pdh_cert,
            session: &s.session,
        },
    )
    .unwrap();
    assert_eq!(d.fw.guest_state(), Some(GuestState::ReceiveUpdate));
    // Tampered MAC, tampered IV, compressed flag, short transport.
    let mut h2 = pkt.header;
    h2.mac[0] ^= 1;
    let e =
        d.fw.receive_update_data(&d.vm, pkt.gpa, &h2, &pkt.transport, &page)
            .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT));
    let mut h3 = pkt.header;
    h3.iv[15] ^= 1;
    let e =
        d.fw.receive_update_data(&d.vm, pkt.gpa, &h3, &pkt.transport, &page)
            .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT));
    let mut h4 = pkt.header;
    h4.flags = 1;
    let e =
        d.fw.receive_update_data(&d.vm, pkt.gpa, &h4, &pkt.transport, &page)
            .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_PARAM));
    let e =
        d.fw.receive_update_data(&d.vm, pkt.gpa, &pkt.header, &pkt.transport[..4080], &page)
            .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_LEN));
    // Nothing was written by the refused packets.
    let mut buf = [0u8; 4096];
    d.mem.read_slice(&mut buf, GuestAddress(pkt.gpa)).unwrap();
    assert_eq!(buf, [0u8; 4096]);
    // The genuine packet is accepted once; its replay is refused.
    d.fw.receive_update_data(&d.vm, pkt.gpa, &pkt.header, &pkt.transport, &page)
        .unwrap();
    d.mem.read_slice(&mut buf, GuestAddress(pkt.gpa)).unwrap();
    let off = pkt.gpa as usize;
    assert!(
        buf[..] == m.source_mem[off..off + 4096],
        "decrypted to the source's page"
    );
    let e =
        d.fw.receive_update_data(&d.vm, pkt.gpa, &pkt.header, &pkt.transport, &page)
            .unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT));
    assert!(e.to_string().contains("replayed"), "{e}");
    // RECEIVE_START twice is refused; RECEIVE_FINISH makes it run.
    let ok = cgs_sev::migration::firmware::ReceiveStart {
        policy: h.policy,
        source_pdh: &s.pdh_cert,
        session: &s.session,
    };
    assert_eq!(
        status_of(&d.fw.receive_start(&d.vm, &ok).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
    d.fw.receive_finish(&d.vm).unwrap();
    assert_eq!(d.fw.guest_state(), Some(GuestState::Running));
    let e = d.fw.receive_finish(&d.vm).unwrap_err();
    assert_eq!(status_of(&e), Some(SevStatus::INVALID_GUEST_STATE));
}

#[test]
fn send_commands_follow_the_firmware_state_machine() {
    let Some(kvm) = kvm_or_skip("send_commands_follow_the_firmware_state_machine") else {
        return;
    };
    let (a, b) = platforms();
    let mut g = launch_counter_guest(&kvm, &a, SevPolicy::NODBG, 10, b"x", false).unwrap();
    let target = certs_of(&b);
    use vm_memory::GuestMemoryBackend;
    let page = g.mem.get_slice(GuestAddress(0x1000), 4096).unwrap();
    let st = |e: Error| status_of(&e);
    // Nothing before SEND_START.
    assert_eq!(
        st(g.fw.send_update_data(&g.vm, 0x1000, &page).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
    assert_eq!(
        st(g.fw.send_finish(&g.vm).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
    assert_eq!(
        st(g.fw.send_cancel(&g.vm).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
    // A bad target certificate.
    let mut bad = target.clone();
    bad.pdh[12] ^= 0xff;
    assert_eq!(
        st(g.fw.send_start(&g.vm, &bad).unwrap_err()),
        Some(SevStatus::INVALID_CERTIFICATE)
    );
    bad.pdh.truncate(100);
    assert!(g.fw.send_start(&g.vm, &bad).is_err());
    let session = g.fw.send_start(&g.vm, &target).unwrap();
    assert_eq!(session.policy, SevPolicy::NODBG);
    assert_eq!(session.session.len(), 128);
    assert_eq!(g.fw.guest_state(), Some(GuestState::SendUpdate));
    assert_eq!(
        st(g.fw.send_start(&g.vm, &target).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
    // Launch commands are refused while sending.
    assert!(g.fw.launch_measure(&g.vm).is_err());
    // A range crossing a page is refused by KVM, a length not a multiple of 16 by the firmware.
    let cross = g.mem.get_slice(GuestAddress(0x1800), 4096).unwrap();
    assert_eq!(
        g.fw.send_update_data(&g.vm, 0x1800, &cross)
            .unwrap_err()
            .errno(),
        Some(libc::EINVAL)
    );
    let odd = g.mem.get_slice(GuestAddress(0x1000), 100).unwrap();
    assert_eq!(
        st(g.fw.send_update_data(&g.vm, 0x1000, &odd).unwrap_err()),
        Some(SevStatus::INVALID_LEN)
    );
    // Two packets of the same page differ (fresh IVs) and are not the plaintext.
    let (h1, t1) = g.fw.send_update_data(&g.vm, 0x1000, &page).unwrap();
    let (h2, t2) = g.fw.send_update_data(&g.vm, 0x1000, &page).unwrap();
    assert_ne!(h1.iv, h2.iv);
    assert_ne!(t1, t2);
    let mut plain = vec![0u8; 4096];
    g.mem.read_slice(&mut plain, GuestAddress(0x1000)).unwrap();
    assert_ne!(t1, plain);
    g.fw.send_cancel(&g.vm).unwrap();
    assert_eq!(g.fw.guest_state(), Some(GuestState::Running));
    g.fw.send_start(&g.vm, &target).unwrap();
    g.fw.send_finish(&g.vm).unwrap();
    assert_eq!(g.fw.guest_state(), Some(GuestState::Sent));
    assert_eq!(
        st(g.fw.send_cancel(&g.vm).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
    assert_eq!(
        st(g.fw.send_start(&g.vm, &target).unwrap_err()),
        Some(SevStatus::INVALID_GUEST_STATE)
    );
}

#[test]
fn real_kvm_has_no_sev_migration_here() {
    let Some(kvm) = kvm_or_skip("real_kvm_has_no_sev_migration_here") else {
        return;
    };
    use cgs_sev::firmware::kvm::KvmFirmware;
    let vm = kvm.create_vm().unwrap();
    if KvmFirmware::probe(&vm).is_ok() {
        eprintln!("SKIP real_kvm_has_no_sev_migration_here: this host has SEV");
        return;
    }
    let mut fw = KvmFirmware::without_device();
    let (_a, b) = platforms();
    let target = certs_of(&b);
    match fw.send_start(&vm, &target) {
        Err(Error::Unsupported { why, .. }) => assert!(why.contains("no SEV"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(matches!(
        fw.receive_finish(&vm),
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        fw.platform_certs(),
        Err(Error::Unsupported { .. })
    ));
}

/// Re-encode `recs` (without their finish record) into a stream.
fn reencode(recs: &[Record]) -> Vec<u8> {
    let mut enc = stream::Encoder::new(Vec::new()).unwrap();
    for r in recs {
        if !matches!(r, Record::Finish(_)) {
            enc.write(r).unwrap();
        }
    }
    enc.finish().unwrap()
}

#[test]
fn well_formed_but_inconsistent_streams_are_refused() {
    let Some(kvm) = kvm_or_skip("well_formed_but_inconsistent_streams_are_refused") else {
        return;
    };
    let (a, b) = platforms();
    let m = migrate_out(&kvm, &a, &b);
    let recs = stream::decode_all(&m.bytes).unwrap();

    // A page that was only sent in round 0 is dropped (and the round count fixed up).
    let mut missing = Vec::new();
    for r in &recs {
        match r {
            Record::EncryptedPage(p) if p.gpa == 0x2000 => continue,
            Record::Round(r) if r.index == 0 => missing.push(Record::Round(stream::Round {
                index: 0,
                pages: r.pages - 1,
            })),
            other => missing.push(other.clone()),
        }
    }
    let (res, state) = migrate_in(&kvm, &b, &reencode(&missing));
    match res {
        Err(MigrationError::Mismatch(why)) => {
            assert!(why.contains("0x2000 was never sent"), "{why}")
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
    assert_eq!(state, Some(GuestState::ReceiveUpdate), "no RECEIVE_FINISH");

    // A page sent encrypted is declared shared at the end.
    let mut wrong = recs.clone();
    for r in &mut wrong {
        if let Record::SharedRanges(ranges) = r {
            ranges.insert(
                0,
                stream::GpaRange {
                    gpa: 0x1000,
                    pages: 1,
                },
            );
        }
    }
    let (res, state) = migrate_in(&kvm, &b, &reencode(&wrong));
    match res {
        Err(MigrationError::Mismatch(why)) => assert!(why.contains("0x1000"), "{why}"),
        other => panic!("expected Mismatch, got {other:?}"),
    }
    assert_eq!(state, Some(GuestState::ReceiveUpdate));

    // A destination with another memory layout or vCPU count refuses the header.
    let mut d = destination_guest(&kvm, &b).unwrap();
    let mut inc = Incoming::new(&mut d.fw, &d.vm, &d.mem, 2).unwrap();
    assert!(matches!(
        inc.feed(&m.bytes),
        Err(MigrationError::Mismatch(_))
    ));
    assert!(matches!(
        inc.finish(&mut d.tracker),
        Err(MigrationError::Mismatch(_))
    ));
    assert_eq!(d.fw.guest_state(), None);
}
