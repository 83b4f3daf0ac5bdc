//! Fuzz-target bodies for cgs-gmem's untrusted inputs: hypercall exits, memory-fault exits,
//! GHCB page-state changes (MSR and buffer) and the tracker (differential against a per-page
//! model). Each takes arbitrary bytes and panics only when an invariant breaks. The cargo-fuzz
//! targets in `fuzz/` call these; a stable test runs them over the checked-in corpus.

use crate::attrs::RecordingAttributes;
use crate::convert::Converter;
use crate::exits::{handle_exit, ExitOutcome};
use crate::psc::{apply_buffer, apply_msr_request, PscBuffer, RmpContext};
use crate::rmp::Rmp;
use crate::testing::CountingDiscard;
use crate::tracker::{MemState, PageTracker};
use kvm_ioctls::{HypercallExit, VcpuExit};

/// Guest RAM of the fuzzed converter: 4 MiB at GPA 1 MiB (so GPA 0 and the top are holes).
pub const FUZZ_RAM_BASE: u64 = 1 << 20;
/// Size of the fuzzed guest RAM.
pub const FUZZ_RAM_SIZE: u64 = 4 << 20;
/// Host frame of GFN 0 in the fuzzed RMP.
pub const FUZZ_SPA_BASE: u64 = 0x4_0000;

type FuzzConv = Converter<RecordingAttributes, CountingDiscard>;

fn converter() -> FuzzConv {
    let pages = (FUZZ_RAM_BASE + FUZZ_RAM_SIZE) / 4096;
    match Converter::new(
        &[(FUZZ_RAM_BASE, FUZZ_RAM_SIZE)],
        MemState::Shared,
        RecordingAttributes::new(pages),
        CountingDiscard::default(),
    ) {
        Ok(c) => c,
        Err(e) => panic!("fuzz converter setup: {e}"),
    }
}

fn words(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    data.chunks(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    })
}

fn private_runs(c: &FuzzConv) -> Vec<std::ops::Range<u64>> {
    let t = c.tracker();
    t.runs(0..t.pages(), MemState::Private).collect()
}

/// Tracker and recorded attributes agree on every page, and (without rollbacks) every changed
/// page had exactly its stale side discarded once.
fn check_discards(c: &FuzzConv) {
    let (st, d) = (c.stats(), c.discard());
    assert_eq!(d.private_pages, st.pages_to_shared, "private discards");
    assert_eq!(d.shared_pages, st.pages_to_private, "shared discards");
}

/// Tracker and recorded attributes agree on every page.
fn check_agreement(c: &FuzzConv) {
    let t = c.tracker();
    let rec: Vec<_> = c
        .attrs()
        .record()
        .runs(0..t.pages(), MemState::Private)
        .collect();
    assert_eq!(private_runs(c), rec, "tracker and attributes disagree");
}

/// Check a successful conversion left `[gpa, gpa + size)` in `to`.
fn check_converted(c: &FuzzConv, gpa: u64, size: u64, to: MemState) {
    let frames = gpa / 4096..(gpa + size) / 4096;
    assert_eq!(
        c.tracker().count(frames.clone(), to),
        frames.end - frames.start,
        "converted range not in the requested state"
    );
}

/// A sequence of `KVM_HC_MAP_GPA_RANGE` exits: each 32-byte record is (nr selector, gpa,
/// npages, attrs); GPAs and sizes are folded towards the RAM so conversions happen. `ret` must be
/// 0, EINVAL or EAGAIN; refused requests change nothing; accepted ones leave the range converted.
pub fn fuzz_hypercall_exit(data: &[u8]) {
    let mut c = converter();
    let w: Vec<u64> = words(data).collect();
    for rec in w.chunks(4).take(64) {
        let get = |i: usize| rec.get(i).copied().unwrap_or(0);
        let nr = if get(0) & 0xff == 0xff {
            get(0) >> 8
        } else {
            12
        };
        // Half of the records target RAM (page-aligned GPAs, small counts); the rest are raw.
        let (gpa, npages) = if get(0) & 0x100 == 0 {
            (
                FUZZ_RAM_BASE + (get(1) % (FUZZ_RAM_SIZE / 4096 + 8)) * 4096,
                get(2) % 1100,
            )
        } else {
            (get(1), get(2))
        };
        let attrs = get(3);
        let before = private_runs(&c);
        let mut ret = 0u64;
        let mut exit = VcpuExit::Hypercall(HypercallExit {
            nr,
            args: [gpa, npages, attrs, 0, 0, 0],
            ret: &mut ret,
            longmode: 1,
        });
        let out = handle_exit(&mut c, &mut exit);
        match out {
            ExitOutcome::NotConversion => {
                assert_ne!(nr, 12);
                assert_eq!(private_runs(&c), before);
            }
            ExitOutcome::Converted(_) => {
                assert_eq!(ret, 0);
                let to = if attrs & 0x10 != 0 {
                    MemState::Private
                } else {
                    MemState::Shared
                };
                check_converted(&c, gpa, npages * 4096, to);
            }
            ExitOutcome::Refused { ret: r, .. } => {
                assert_eq!(r, ret);
                assert!(ret == libc::EINVAL as u64 || ret == libc::EAGAIN as u64);
                assert_eq!(private_runs(&c), before, "refused request changed state");
            }
            ExitOutcome::Fatal(e) => panic!("hypercall exits are never fatal: {e}"),
        }
        check_agreement(&c);
        check_discards(&c);
    }
}

/// A sequence of `KVM_EXIT_MEMORY_FAULT` exits (flags, gpa, size per 24 bytes): resolved faults
/// leave the range in the faulting state; unresolved ones change nothing.
pub fn fuzz_memory_fault_exit(data: &[u8]) {
    let mut c = converter();
    let w: Vec<u64> = words(data).collect();
    for rec in w.chunks(3).take(64) {
        let get = |i: usize| rec.get(i).copied().unwrap_or(0);
        let flags = if get(0) & 1 == 0 { get(0) & 8 } else { get(0) };
        let (gpa, size) = if get(0) & 2 == 0 {
            (
                FUZZ_RAM_BASE + (get(1) % (FUZZ_RAM_SIZE / 4096 + 8)) * 4096,
                (get(2) % 600) * 4096,
            )
        } else {
            (get(1), get(2))
        };
        let before = private_runs(&c);
        let mut exit = VcpuExit::MemoryFault { flags, gpa, size };
        match handle_exit(&mut c, &mut exit) {
            ExitOutcome::Converted(_) => {
                let to = if flags & 8 != 0 {
                    MemState::Private
                } else {
                    MemState::Shared
                };
                check_converted(&c, gpa, size, to);
            }
            ExitOutcome::Fatal(_) => assert_eq!(private_runs(&c), before),
            other => panic!("unexpected outcome for a memory fault: {other:?}"),
        }
        check_agreement(&c);
        check_discards(&c);
    }
}

/// GHCB page-state change. First byte even: a sequence of MSR requests (u64 each, GFN folded
/// towards RAM); odd: a PSC buffer (the rest of the input). Responses must be well formed,
/// progress only moves forward and matches `completed`, finished entries have `cur_page` set,
/// the buffer re-encodes to the same entries, and tracker, attributes and RMP agree throughout.
pub fn fuzz_psc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut c = converter();
    let pages = (FUZZ_RAM_BASE + FUZZ_RAM_SIZE) / 4096;
    let mut rmp = Rmp::new(FUZZ_SPA_BASE + pages);
    let spa_of = move |g: u64| (g < pages).then_some(FUZZ_SPA_BASE + g);
    let mut ctx = RmpContext {
        rmp: &mut rmp,
        asid: 1,
        spa_of: &spa_of,
    };
    if mode & 1 == 0 {
        for w in words(rest).take(128) {
            let msr = if mode & 2 == 0 {
                // Keep info/op, fold the GFN into RAM.
                let gfn = FUZZ_RAM_BASE / 4096 + ((w >> 12) & 0xffff) % (FUZZ_RAM_SIZE / 4096 + 4);
                (w & !(((1u64 << 40) - 1) << 12)) | gfn << 12
            } else {
                w
            };
            let resp = apply_msr_request(&mut c, Some(&mut ctx), msr);
            assert_eq!(resp & 0xfff, 0x015);
            assert!(resp >> 32 == 0 || resp >> 32 == 0x8000_0000);
            check_rmp_agreement(&c, ctx.rmp, pages);
        }
    } else {
        let Ok(mut buf) = PscBuffer::parse(rest) else {
            return;
        };
        let again = PscBuffer::parse(&buf.to_bytes()).map(|b| b.entries);
        assert_eq!(again.ok().as_ref(), Some(&buf.entries), "PSC re-encode");
        let start = buf.cur_entry;
        let out = apply_buffer(&mut c, Some(&mut ctx), &mut buf);
        assert!(buf.cur_entry >= start);
        assert_eq!(usize::from(buf.cur_entry - start), out.completed);
        if out.completed > 0 {
            for e in &buf.entries[usize::from(start)..usize::from(buf.cur_entry)] {
                assert_eq!(u64::from(e.cur_page), e.npages());
            }
        }
        assert!(matches!(
            out.exit_info2,
            0 | crate::uapi::VMGEXIT_PSC_ERROR_GENERIC
                | crate::uapi::VMGEXIT_PSC_ERROR_INVALID_HDR
                | crate::uapi::VMGEXIT_PSC_ERROR_INVALID_ENTRY
        ));
        check_rmp_agreement(&c, ctx.rmp, pages);
    }
    check_agreement(&c);
}

fn check_rmp_agreement(c: &FuzzConv, rmp: &Rmp, pages: u64) {
    for run in c.tracker().runs(0..pages, MemState::Private) {
        for g in run {
            let assigned = rmp
                .lookup(FUZZ_SPA_BASE + g)
                .is_some_and(|(_, e)| e.assigned && e.asid == 1);
            assert!(assigned, "private gfn {g:#x} not assigned in the RMP");
        }
    }
    let assigned_pages: u64 = rmp
        .entries()
        .filter(|(_, e)| e.assigned)
        .map(|(_, e)| e.page_size.pages())
        .sum();
    assert_eq!(
        assigned_pages,
        c.tracker().count(0..pages, MemState::Private),
        "RMP assigns pages the tracker has shared"
    );
}

/// Tracker vs a `Vec<bool>` model: the first two bytes pick the size (up to 8192 pages), then
/// each 5-byte record (at most 600) is (start u16, len u16, state); every query and run iteration must agree.
pub fn fuzz_tracker(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let pages = u64::from(u16::from_le_bytes([data[0], data[1]]) % 8192) + 1;
    let mut t = PageTracker::new(pages, MemState::Shared);
    let mut model = vec![false; pages as usize];
    for rec in data[2..].chunks_exact(5).take(600) {
        let start = u64::from(u16::from_le_bytes([rec[0], rec[1]])) % (pages + 2);
        let len = u64::from(u16::from_le_bytes([rec[2], rec[3]])) % 64;
        let private = rec[4] & 1 != 0;
        let state = if private {
            MemState::Private
        } else {
            MemState::Shared
        };
        let r = t.set(start..start + len, state);
        if start + len > pages || len == 0 {
            assert!(r.is_err(), "out-of-range set accepted");
            continue;
        }
        let changed: u64 = match r {
            Ok(ch) => ch.iter().map(|c| c.end - c.start).sum(),
            Err(e) => panic!("in-range set refused: {e}"),
        };
        let slice = &mut model[start as usize..(start + len) as usize];
        let expect = slice.iter().filter(|&&p| p != private).count() as u64;
        assert_eq!(changed, expect, "reported change count");
        slice.fill(private);
        // Spot-check the touched window and its neighbours.
        let lo = start.saturating_sub(1);
        let hi = (start + len + 1).min(pages);
        for g in lo..hi {
            assert_eq!(
                t.state(g).map(MemState::is_private),
                Some(model[g as usize])
            );
        }
        assert!(t.memory_bytes() <= pages.div_ceil(64) * 8 + crate::tracker::RUN_COST_BYTES);
    }
    let runs: Vec<_> = t.runs(0..pages, MemState::Private).collect();
    let mut expect = Vec::new();
    let mut g = 0;
    while g < pages {
        if model[g as usize] {
            let s = g;
            while g < pages && model[g as usize] {
                g += 1;
            }
            expect.push(s..g);
        } else {
            g += 1;
        }
    }
    assert_eq!(runs, expect, "private runs differ from the model");
    assert_eq!(t.private_runs(), expect.len() as u64);
}

/// Seed inputs for `target` (`"gmem_hypercall"`, `"gmem_memory_fault"`, `"gmem_psc"`,
/// `"gmem_tracker"`), built with this crate's own encoders; `fuzz/corpus/<target>/` holds them.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    use crate::psc::{encode_msr_request, PscEntry, PscOp};
    let le = |ws: &[u64]| ws.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let ram_gfn = FUZZ_RAM_BASE / 4096;
    match target {
        // (selector, gpa index, npages, attrs): the private_mem_conversions sequence.
        "gmem_hypercall" => vec![
            le(&[0, 0, 1, 0x10, 0, 0, 512, 0x11, 0, 1, 1, 0, 0, 0, 512, 0x01]),
            le(&[
                0,
                1,
                512,
                0x11,
                0x100,
                FUZZ_RAM_BASE,
                1,
                0x30,
                0xbff,
                0,
                0,
                0,
            ]),
            le(&[0x100, !0xfff, 2, 0x10, 0, 511, 3, 0x10, 0, 2, 0, 0]),
        ],
        "gmem_memory_fault" => vec![
            le(&[8, 0, 1, 0, 0, 1, 8, 5, 2]),
            le(&[2, FUZZ_RAM_BASE, 0x1000, 0x20, 3, 1, 10, 0x2000, 0x1000]),
        ],
        "gmem_psc" => {
            let mut msr = vec![0u8];
            for (g, op) in [(0, PscOp::Private), (1, PscOp::Private), (0, PscOp::Shared)] {
                msr.extend_from_slice(&encode_msr_request(ram_gfn + g, op).to_le_bytes());
            }
            let mut raw = vec![2u8];
            raw.extend_from_slice(&0x100u64.to_le_bytes());
            let entry = |gfn: u64, op: PscOp, huge: bool| PscEntry {
                cur_page: 0,
                gfn,
                op: op.raw(),
                huge,
                reserved: 0,
            };
            let buf = PscBuffer {
                cur_entry: 0,
                end_entry: 3,
                reserved: 0,
                entries: vec![
                    entry(ram_gfn + 1, PscOp::Private, false),
                    entry(ram_gfn + 512, PscOp::Private, true),
                    entry(ram_gfn + 600, PscOp::Shared, false),
                    entry(ram_gfn + 512, PscOp::Psmash, true),
                ],
            };
            let mut b1 = vec![1u8];
            b1.extend_from_slice(&buf.to_bytes());
            let full = PscBuffer {
                cur_entry: 0,
                end_entry: 252,
                reserved: 0,
                entries: (0..253)
                    .map(|i| entry(ram_gfn + i * 2, PscOp::Private, false))
                    .collect(),
            };
            let mut b2 = vec![1u8];
            b2.extend_from_slice(&full.to_bytes());
            vec![msr, raw, b1, b2]
        }
        "gmem_tracker" => {
            let mut a = 1000u16.to_le_bytes().to_vec();
            for (s, l, p) in [(10u16, 20u16, 1u8), (15, 30, 0), (0, 63, 1), (40, 2, 0)] {
                a.extend_from_slice(&s.to_le_bytes());
                a.extend_from_slice(&l.to_le_bytes());
                a.push(p);
            }
            let mut b = 300u16.to_le_bytes().to_vec();
            for i in 0..150u16 {
                b.extend_from_slice(&(i * 2).to_le_bytes());
                b.extend_from_slice(&1u16.to_le_bytes());
                b.push(1);
            }
            vec![a, b]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_bodies_over_seeds() {
        for s in seeds("gmem_hypercall") {
            fuzz_hypercall_exit(&s);
        }
        for s in seeds("gmem_memory_fault") {
            fuzz_memory_fault_exit(&s);
        }
        for s in seeds("gmem_psc") {
            fuzz_psc(&s);
        }
        for s in seeds("gmem_tracker") {
            fuzz_tracker(&s);
        }
    }

    /// The checked-in corpus holds exactly these seeds (`CGS_WRITE_CORPUS=1` rewrites them
    /// after a change to [`seeds`]).
    #[test]
    fn seed_corpus_is_checked_in() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        if !root.is_dir() {
            eprintln!("SKIP seed_corpus_is_checked_in: no fuzz/ directory next to the crate");
            return;
        }
        let write = std::env::var("CGS_WRITE_CORPUS").is_ok_and(|v| v == "1");
        for t in [
            "gmem_hypercall",
            "gmem_memory_fault",
            "gmem_psc",
            "gmem_tracker",
        ] {
            let dir = root.join(t);
            for (i, s) in seeds(t).iter().enumerate() {
                let path = dir.join(format!("seed-{i}"));
                if write {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, s).unwrap();
                }
                assert_eq!(
                    std::fs::read(&path).ok().as_ref(),
                    Some(s),
                    "{}",
                    path.display()
                );
            }
        }
    }

    fn inputs(seed: u64, n: usize, len: usize) -> Vec<Vec<u8>> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn fuzz_bodies_over_generated_inputs() {
        for (i, d) in inputs(0x9e37_79b9_7f4a_7c15, 150, 256).iter().enumerate() {
            fuzz_hypercall_exit(d);
            fuzz_memory_fault_exit(d);
            fuzz_tracker(d);
            let mut psc = d.clone();
            psc[0] = i as u8;
            fuzz_psc(&psc);
        }
    }
}
