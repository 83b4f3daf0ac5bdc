//! One conversion round trip (private → shared → private) of 1–512 pages through the whole
//! conversion path on a real guest_memfd, against the bare syscalls it needs
//! (`fallocate(PUNCH_HOLE)` on the guest_memfd for → shared, `madvise(MADV_DONTNEED)` on the
//! shared mapping for → private). Prints the ratio (goal ≤ 1.2x), for ranges whose pages are
//! not populated (the syscalls are cheapest, so the ratio is worst) and for populated ranges
//! (guest_memfd pages allocated and shared pages touched before each round trip, untimed).
//!
//! The attributes step uses the userspace record ([`RecordingAttributes`]) because this kind of
//! host has no `KVM_SET_MEMORY_ATTRIBUTES`; on a host with the ioctl both sides would add the
//! same ioctl (one per conversion). The paired table is printed twice: with the record (the
//! path as it runs here, the goal's measurement) and with an attributes backend that does
//! nothing (`NoAttributes`, the path's own fixed cost — what remains on a host with the ioctl
//! once the same ioctl is counted on both sides). Needs /dev/kvm (skips otherwise).
//!
//! ```text
//! cargo bench -p cgs-gmem --bench conversion
//! ```

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgs_gmem::attrs::{MemoryAttributes, RecordingAttributes};
use cgs_gmem::binding::{GmemLayout, GmemSlot, SharedDiscard};
use cgs_gmem::convert::Converter;
use cgs_gmem::memfd::{GmemFlags, GuestMemfd};
use cgs_gmem::testing::CountingDiscard;
use cgs_gmem::tracker::MemState;
use criterion::{criterion_group, criterion_main, Criterion};

const SIZE: u64 = 4 << 20;

/// An attributes step that does nothing: isolates the path's own cost (see the module docs).
struct NoAttributes;

impl MemoryAttributes for NoAttributes {
    fn set(&mut self, _gpa: u64, _size: u64, _state: MemState) -> cgs_core::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let Ok(kvm) = kvm_ioctls::Kvm::new() else {
        eprintln!("SKIP conversion bench: /dev/kvm not available");
        return;
    };
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    let gmem = Arc::new(GuestMemfd::create(&vm, SIZE, GmemFlags::empty()).expect("guest_memfd"));
    // SAFETY: a fresh anonymous mapping, leaked so it outlives the VM.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(shared, libc::MAP_FAILED);
    let mut layout = GmemLayout::new();
    let mut unbound = GmemLayout::new();
    let slot = GmemSlot {
        slot: 0,
        gpa: 0,
        size: SIZE,
        userspace_addr: shared as u64,
        gmem: gmem.clone(),
        gmem_offset: 0,
        shared_discard: SharedDiscard::DontNeed,
    };
    // The same slot, recorded only (KVM already has it), for the second converter.
    unbound.add(slot.clone()).expect("slot");
    // SAFETY: the mapping above is never unmapped.
    unsafe { layout.bind(&vm, slot) }.expect("KVM_SET_USER_MEMORY_REGION2");
    let mut conv = Converter::new(
        &[(0, SIZE)],
        MemState::Private,
        RecordingAttributes::new(SIZE / 4096),
        layout,
    )
    .expect("converter");
    let mut conv_no_attrs =
        Converter::new(&[(0, SIZE)], MemState::Private, NoAttributes, unbound).expect("converter");

    let mut group = c.benchmark_group("conversion_round_trip");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let fd = gmem.as_raw_fd();
    let punch = |gpa: u64, len: u64| {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on our guest_memfd.
        assert_eq!(
            unsafe { libc::fallocate(fd, mode, gpa as i64, len as i64) },
            0
        );
    };
    let dontneed = |gpa: u64, len: u64| {
        let a = (shared as u64 + gpa) as *mut libc::c_void;
        // SAFETY: madvise on our leaked mapping.
        assert_eq!(
            unsafe { libc::madvise(a, len as usize, libc::MADV_DONTNEED) },
            0
        );
    };
    // Populate both sides of a range (untimed): allocate guest_memfd pages, touch shared pages.
    let populate = |gpa: u64, len: u64| {
        // SAFETY: fallocate on our guest_memfd.
        let r = unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, gpa as i64, len as i64) };
        assert_eq!(r, 0);
        for p in (0..len).step_by(4096) {
            // SAFETY: inside our leaked mapping.
            unsafe { ((shared as u64 + gpa + p) as *mut u8).write_volatile(1) };
        }
    };
    for populated in [false, true] {
        let tag = if populated { "populated" } else { "empty" };
        for n in [1u64, 8, 64, 512] {
            let len = n * 4096;
            let gpa = 1 << 20;
            group.bench_function(format!("cgs/{tag}/{n}"), |b| {
                b.iter_custom(|iters| {
                    let mut d = Duration::ZERO;
                    for _ in 0..iters {
                        if populated {
                            populate(gpa, len);
                        }
                        let t = Instant::now();
                        conv.to_shared(gpa, len).expect("to shared");
                        conv.to_private(gpa, len).expect("to private");
                        d += t.elapsed();
                    }
                    d
                })
            });
            group.bench_function(format!("syscalls/{tag}/{n}"), |b| {
                b.iter_custom(|iters| {
                    let mut d = Duration::ZERO;
                    for _ in 0..iters {
                        if populated {
                            populate(gpa, len);
                        }
                        let t = Instant::now();
                        punch(gpa, len);
                        dontneed(gpa, len);
                        d += t.elapsed();
                    }
                    d
                })
            });
        }
    }
    // The path alone: the same round trip with discards that only count (no syscalls), i.e.
    // the userspace cost the ratios below are made of.
    let mut path_only = Converter::new(
        &[(0, SIZE)],
        MemState::Private,
        RecordingAttributes::new(SIZE / 4096),
        CountingDiscard::default(),
    )
    .expect("converter");
    group.bench_function("path_only/1", |b| {
        b.iter(|| {
            path_only.to_shared(1 << 20, 4096).expect("to shared");
            path_only.to_private(1 << 20, 4096).expect("to private");
        })
    });
    group.finish();

    // Paired measurement for the ratio: alternate the two round trips and compare medians, so
    // load from other processes on the machine hits both sides alike.
    let paired = |what: &str, ours: &mut dyn FnMut(u64, u64)| {
        println!(
            "\n{what}: median of 1001 paired round trips private -> shared -> private (goal <= 1.2x)"
        );
        println!(
            "{:>10} {:>6} {:>10} {:>12} {:>7}",
            "pages", "n", "cgs ns", "syscalls ns", "ratio"
        );
        for populated in [false, true] {
            for n in [1u64, 8, 64, 512] {
                let (len, gpa) = (n * 4096, 1u64 << 20);
                let (mut t_ours, mut t_bare) = (Vec::new(), Vec::new());
                for _ in 0..1001 {
                    if populated {
                        populate(gpa, len);
                    }
                    let t = Instant::now();
                    ours(gpa, len);
                    t_ours.push(t.elapsed());
                    if populated {
                        populate(gpa, len);
                    }
                    let t = Instant::now();
                    punch(gpa, len);
                    dontneed(gpa, len);
                    t_bare.push(t.elapsed());
                }
                t_ours.sort();
                t_bare.sort();
                let (a, b) = (t_ours[500].as_nanos() as f64, t_bare[500].as_nanos() as f64);
                let tag = if populated { "populated" } else { "empty" };
                println!("{tag:>10} {n:>6} {a:>10.0} {b:>12.0} {:>6.2}x", a / b);
            }
        }
    };
    paired(
        "with the userspace attribute record (RecordingAttributes)",
        &mut |gpa, len| {
            conv.to_shared(gpa, len).expect("to shared");
            conv.to_private(gpa, len).expect("to private");
        },
    );
    paired(
        "without attribute work on either side (NoAttributes)",
        &mut |gpa, len| {
            conv_no_attrs.to_shared(gpa, len).expect("to shared");
            conv_no_attrs.to_private(gpa, len).expect("to private");
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
