//! Page-state tracker: convert and query at 1 GiB, 64 GiB and 1 TiB of guest RAM with 1, 1k and
//! 1M private runs, and the tracker's memory (measured with a counting allocator, and the
//! tracker's own estimate) against the goals: ≤ 64 KiB for ≤ 1k runs, ≤ 1 bit per page worst
//! case.
//!
//! ```text
//! cargo bench -p cgs-gmem --bench tracker
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cgs_gmem::tracker::{MemState, PageTracker};
use criterion::{criterion_group, criterion_main, Criterion};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const GIB: u64 = 1 << 30;

/// A tracker of `bytes` of RAM with `runs` private runs of one page, evenly spaced.
fn build(bytes: u64, runs: u64) -> (PageTracker, usize) {
    let pages = bytes / 4096;
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = PageTracker::new(pages, MemState::Shared);
    let stride = pages / runs;
    for i in 0..runs {
        let g = i * stride + stride / 2;
        t.set(g..g + 1, MemState::Private).expect("in range");
    }
    let used = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    (t, used)
}

fn bench(c: &mut Criterion) {
    println!(
        "{:>7} {:>8} {:>8} {:>14} {:>14} {:>11} {:>8}",
        "RAM", "runs", "repr", "heap (meas.)", "estimate", "bits/page", "goal"
    );
    let mut group = c.benchmark_group("tracker");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, bytes) in [("1GiB", GIB), ("64GiB", 64 * GIB), ("1TiB", 1024 * GIB)] {
        for (rname, runs) in [("1", 1u64), ("1k", 1000), ("1M", 1_000_000)] {
            let pages = bytes / 4096;
            if runs * 2 > pages {
                println!("{name:>7} {rname:>8}  (skipped: more runs than fit in {pages} pages)");
                continue;
            }
            let (mut t, used) = build(bytes, runs);
            let bits = used as f64 * 8.0 / pages as f64;
            let goal = if runs <= 1000 {
                if used <= 64 * 1024 {
                    "≤64KiB ok"
                } else {
                    "≤64KiB MISSED"
                }
            } else if bits <= 1.05 {
                "≤1bit ok"
            } else {
                "≤1bit MISSED"
            };
            println!(
                "{name:>7} {rname:>8} {:>8} {:>14} {:>14} {bits:>11.5} {goal:>8}",
                if t.is_bitmap() { "bitmap" } else { "runs" },
                used,
                t.memory_bytes()
            );
            let mid = pages / 2 + 7;
            group.bench_function(format!("convert/{name}/{rname}"), |b| {
                b.iter(|| {
                    t.set(mid..mid + 1, MemState::Private).expect("in range");
                    t.set(mid..mid + 1, MemState::Shared).expect("in range");
                })
            });
            let mut x = 0x9e37_79b9u64;
            group.bench_function(format!("query/{name}/{rname}"), |b| {
                b.iter(|| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    black_box(t.state((x >> 16) % pages))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
