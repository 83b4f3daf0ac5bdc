//! GHCB page-state change: MSR protocol and PSC buffer applied to the conversion path and the
//! RMP model, with partial progress and guest error codes.

use cgs_gmem::attrs::RecordingAttributes;
use cgs_gmem::convert::Converter;
use cgs_gmem::psc::{
    apply_buffer, apply_msr_request, decode_msr_request, encode_msr_request, msr_response,
    PscBuffer, PscEntry, PscOp, RmpContext, MSR_PSC_ERROR, PSC_ERROR_GENERIC,
    PSC_ERROR_INVALID_ENTRY, PSC_ERROR_INVALID_HDR,
};
use cgs_gmem::rmp::{PageSize, Pvalidate, PvalidateOutcome, Rmp, RmpEntry};
use cgs_gmem::testing::MemDiscard;
use cgs_gmem::tracker::MemState;

const RAM: u64 = 8 << 20;
const PAGES: u64 = RAM / 4096;
const SPA_BASE: u64 = 0x10000;
const ASID: u32 = 3;

type Conv = Converter<RecordingAttributes, MemDiscard>;

fn conv() -> Conv {
    Converter::new(
        &[(0, RAM)],
        MemState::Shared,
        RecordingAttributes::new(PAGES),
        MemDiscard::new(0, RAM as usize),
    )
    .unwrap()
}

fn spa_of(gfn: u64) -> Option<u64> {
    (gfn < PAGES).then_some(SPA_BASE + gfn)
}

fn entry(gfn: u64, op: PscOp, huge: bool) -> PscEntry {
    PscEntry {
        cur_page: 0,
        gfn,
        op: op.raw(),
        huge,
        reserved: 0,
    }
}

fn buffer(entries: Vec<PscEntry>) -> PscBuffer {
    PscBuffer {
        cur_entry: 0,
        end_entry: entries.len() as u16 - 1,
        reserved: 0,
        entries,
    }
}

fn state(c: &Conv, gfn: u64) -> MemState {
    c.tracker().state(gfn).unwrap()
}

#[test]
fn msr_protocol_round_trip_and_apply() {
    let m = encode_msr_request(0x123, PscOp::Private);
    assert_eq!(m & 0xfff, 0x014);
    assert_eq!(decode_msr_request(m).unwrap().gfn, 0x123);
    assert_eq!(decode_msr_request(m).unwrap().op, PscOp::Private);
    assert!(decode_msr_request(0x015).is_err());
    assert!(decode_msr_request(m | 1 << 60).is_err());
    assert!(decode_msr_request(encode_msr_request(1, PscOp::Psmash)).is_err());
    assert_eq!(msr_response(0), 0x015);
    assert_eq!(msr_response(MSR_PSC_ERROR), 0x8000_0000_0000_0015);

    let mut c = conv();
    let mut rmp = Rmp::new(SPA_BASE + PAGES);
    let mut ctx = RmpContext {
        rmp: &mut rmp,
        asid: ASID,
        spa_of: &spa_of,
    };
    assert_eq!(apply_msr_request(&mut c, Some(&mut ctx), m), 0x015);
    assert_eq!(state(&c, 0x123), MemState::Private);
    let e = ctx.rmp.entry(SPA_BASE + 0x123).unwrap();
    assert!(e.assigned && !e.validated && e.asid == ASID && e.gpa == 0x123 << 12);
    // The guest can now PVALIDATE it.
    let pv = Pvalidate {
        asid: ASID,
        gpa: 0x123 << 12,
        page_size: PageSize::Size4K,
        validate: true,
    };
    assert_eq!(
        ctx.rmp.pvalidate(SPA_BASE + 0x123, pv),
        Ok(PvalidateOutcome::Updated)
    );
    // Back to shared: hypervisor-owned again.
    let s = encode_msr_request(0x123, PscOp::Shared);
    assert_eq!(apply_msr_request(&mut c, Some(&mut ctx), s), 0x015);
    assert_eq!(
        ctx.rmp.entry(SPA_BASE + 0x123).unwrap(),
        RmpEntry::default()
    );
    // Outside RAM: error response, nothing changed.
    let bad = encode_msr_request(PAGES + 5, PscOp::Private);
    assert_eq!(
        apply_msr_request(&mut c, Some(&mut ctx), bad),
        msr_response(MSR_PSC_ERROR)
    );
    assert_eq!(
        apply_msr_request(&mut c, None, 0x100),
        msr_response(MSR_PSC_ERROR)
    );
    assert_eq!(ctx.rmp.assigned_count(), 0);
}

#[test]
fn buffer_layout_round_trips() {
    let entries: Vec<PscEntry> = (0..253)
        .map(|i| PscEntry {
            cur_page: (i % 7) as u16,
            gfn: i * 512,
            op: (i % 4 + 1) as u8,
            huge: i % 2 == 0,
            reserved: 0,
        })
        .collect();
    let b = PscBuffer {
        cur_entry: 3,
        end_entry: 252,
        reserved: 9,
        entries,
    };
    let bytes = b.to_bytes();
    assert_eq!(bytes.len(), 2032);
    assert_eq!(PscBuffer::parse(&bytes).unwrap(), b);
    assert_eq!(&bytes[..4], &[3, 0, 252, 0]);
    let raw = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(raw, b.entries[0].to_raw());
    assert_eq!(raw >> 56 & 1, 1); // entry 0 is 2M
    assert!(PscBuffer::parse(&bytes[..7]).is_err());
    let mut long = bytes.clone();
    long.push(0);
    assert!(PscBuffer::parse(&long).is_err());
}

#[test]
fn buffer_mixed_4k_and_2m_with_rmp() {
    let mut c = conv();
    let mut rmp = Rmp::new(SPA_BASE + PAGES);
    let mut b = buffer(vec![
        entry(1, PscOp::Private, false),
        entry(512, PscOp::Private, true),
        entry(600, PscOp::Shared, false), // splits the 2M private page
        entry(1024, PscOp::Psmash, true), // nothing there to smash: 2M entry absent
    ]);
    b.end_entry = 2;
    let mut ctx = RmpContext {
        rmp: &mut rmp,
        asid: ASID,
        spa_of: &spa_of,
    };
    let out = apply_buffer(&mut c, Some(&mut ctx), &mut b);
    assert_eq!(out.exit_info2, 0);
    assert_eq!(out.completed, 3);
    assert_eq!(b.cur_entry, 3);
    assert_eq!(
        b.entries.iter().map(|e| e.cur_page).collect::<Vec<_>>(),
        [1, 512, 1, 0]
    );
    assert_eq!(state(&c, 1), MemState::Private);
    assert_eq!(c.tracker().count(512..1024, MemState::Private), 511);
    assert_eq!(state(&c, 600), MemState::Shared);
    // RMP: the 2M page was created as one 2M entry, then PSMASHed for the shared 4K page.
    let e = ctx.rmp.entry(SPA_BASE + 512).unwrap();
    assert_eq!(e.page_size, PageSize::Size4K);
    assert!(e.assigned);
    assert!(!ctx.rmp.entry(SPA_BASE + 600).unwrap().assigned);
    assert_eq!(ctx.rmp.entry(SPA_BASE + 601).unwrap().gpa, 601 << 12);
    // Tracker and RMP agree on every page.
    for g in 0..PAGES {
        let assigned = ctx.rmp.lookup(SPA_BASE + g).unwrap().1.assigned;
        assert_eq!(assigned, state(&c, g) == MemState::Private, "gfn {g}");
    }
    // A PSMASH entry on a real 2M entry splits it.
    let mut b2 = buffer(vec![
        entry(1024, PscOp::Private, true),
        entry(1024, PscOp::Psmash, true),
    ]);
    assert_eq!(apply_buffer(&mut c, Some(&mut ctx), &mut b2).exit_info2, 0);
    assert_eq!(
        ctx.rmp.entry(SPA_BASE + 1024).unwrap().page_size,
        PageSize::Size4K
    );
    assert_eq!(ctx.rmp.entry(SPA_BASE + 1030).unwrap().gpa, 1030 << 12);
}

#[test]
fn buffer_partial_progress_and_errors() {
    let mut c = conv();
    // Entry 2 is a misaligned 2M entry: entries 0 and 1 complete, 2 and 3 untouched.
    let mut b = buffer(vec![
        entry(10, PscOp::Private, false),
        entry(11, PscOp::Private, false),
        entry(513, PscOp::Private, true),
        entry(12, PscOp::Private, false),
    ]);
    let out = apply_buffer(&mut c, None, &mut b);
    assert_eq!(out.exit_info2, PSC_ERROR_INVALID_ENTRY);
    assert_eq!((out.completed, b.cur_entry), (2, 2));
    assert_eq!(b.entries[2].cur_page, 0);
    assert_eq!(state(&c, 12), MemState::Shared);
    assert_eq!(c.tracker().count(0..PAGES, MemState::Private), 2);

    // Unknown operation, cur_page beyond the entry, reserved bits: INVALID_ENTRY.
    for bad in [
        PscEntry {
            op: 7,
            ..entry(20, PscOp::Private, false)
        },
        PscEntry {
            cur_page: 2,
            ..entry(20, PscOp::Private, false)
        },
        PscEntry {
            reserved: 1,
            ..entry(20, PscOp::Private, false)
        },
    ] {
        let mut b = buffer(vec![bad]);
        assert_eq!(
            apply_buffer(&mut c, None, &mut b).exit_info2,
            PSC_ERROR_INVALID_ENTRY
        );
        assert_eq!(b.cur_entry, 0);
    }
    // Header: end_entry beyond the 253 entries or beyond the buffer.
    let mut b = buffer(vec![entry(30, PscOp::Private, false)]);
    b.end_entry = 253;
    assert_eq!(
        apply_buffer(&mut c, None, &mut b).exit_info2,
        PSC_ERROR_INVALID_HDR
    );
    b.end_entry = 1;
    assert_eq!(
        apply_buffer(&mut c, None, &mut b).exit_info2,
        PSC_ERROR_INVALID_HDR
    );
    assert_eq!(state(&c, 30), MemState::Shared);
    // A conversion failure (outside RAM) is GENERIC, stopping on that entry.
    let mut b = buffer(vec![
        entry(40, PscOp::Private, false),
        entry(PAGES + 1, PscOp::Private, false),
    ]);
    let out = apply_buffer(&mut c, None, &mut b);
    assert_eq!(out.exit_info2, PSC_ERROR_GENERIC);
    assert_eq!((out.completed, b.cur_entry), (1, 1));
    // cur_entry > end_entry: nothing to do.
    let mut b = buffer(vec![entry(50, PscOp::Private, false)]);
    b.cur_entry = 1;
    assert_eq!(apply_buffer(&mut c, None, &mut b).completed, 0);
    assert_eq!(state(&c, 50), MemState::Shared);
}

#[test]
fn partially_done_2m_entry_resumes_4k_granular() {
    let mut c = conv();
    let mut rmp = Rmp::new(SPA_BASE + PAGES);
    let mut ctx = RmpContext {
        rmp: &mut rmp,
        asid: ASID,
        spa_of: &spa_of,
    };
    let mut b = buffer(vec![PscEntry {
        cur_page: 256,
        ..entry(512, PscOp::Private, true)
    }]);
    assert_eq!(apply_buffer(&mut c, Some(&mut ctx), &mut b).exit_info2, 0);
    assert_eq!(c.tracker().count(512..1024, MemState::Private), 256);
    assert_eq!(state(&c, 767), MemState::Shared);
    assert_eq!(state(&c, 768), MemState::Private);
    assert_eq!(
        ctx.rmp.entry(SPA_BASE + 768).unwrap().page_size,
        PageSize::Size4K
    );
    assert_eq!(b.entries[0].cur_page, 512);
}

#[test]
fn rmp_refusal_rolls_the_entry_back() {
    let mut c = conv();
    let mut rmp = Rmp::new(SPA_BASE + PAGES);
    // Page 70 of the second entry is firmware-owned and immutable: RMPUPDATE fails.
    let fw = RmpEntry {
        assigned: true,
        immutable: true,
        ..RmpEntry::default()
    };
    rmp.firmware_set(SPA_BASE + 70, fw).unwrap();
    let before: Vec<_> = rmp.entries().collect();
    let mut ctx = RmpContext {
        rmp: &mut rmp,
        asid: ASID,
        spa_of: &spa_of,
    };
    let mut b = buffer(vec![
        entry(60, PscOp::Private, false),
        entry(70, PscOp::Private, false),
    ]);
    let out = apply_buffer(&mut c, Some(&mut ctx), &mut b);
    assert_eq!(out.exit_info2, PSC_ERROR_GENERIC);
    assert_eq!(b.cur_entry, 1);
    assert_eq!(state(&c, 70), MemState::Shared, "conversion rolled back");
    assert_eq!(c.attrs().record().state(70), Some(MemState::Shared));
    let after: Vec<_> = ctx
        .rmp
        .entries()
        .filter(|(p, _)| *p != SPA_BASE + 60)
        .collect();
    assert_eq!(after, before, "RMP rolled back");
    // A 2M entry over a range containing the immutable page also rolls back completely.
    let mut b = buffer(vec![entry(0, PscOp::Private, true)]);
    assert_eq!(
        apply_buffer(&mut c, Some(&mut ctx), &mut b).exit_info2,
        PSC_ERROR_GENERIC
    );
    assert_eq!(c.tracker().count(0..512, MemState::Private), 1); // only gfn 60 from before
}
