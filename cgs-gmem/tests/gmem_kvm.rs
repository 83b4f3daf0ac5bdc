//! Real-KVM tests of guest_memfd creation, fallocate, mmap and memslot binding, replicating the
//! host-side checks of the KVM selftests `guest_memfd_test` and the private-memory cases of
//! `set_memory_region_test`, plus a real guest reading memory written through the guest_memfd
//! mapping. Each test prints SKIP without /dev/kvm (fails with CGS_REQUIRE_KVM=1).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use cgs_core::testing::{kvm_or_skip, set_real_mode_entry, SERIAL_PORT};
use cgs_core::Error;
use cgs_gmem::binding::{GmemLayout, GmemSlot, SharedDiscard};
use cgs_gmem::memfd::{supported_flags, GmemFlags, GuestMemfd, PAGE_SIZE};
use kvm_bindings::{kvm_create_guest_memfd, kvm_userspace_memory_region2, KVM_MEM_GUEST_MEMFD};
use kvm_ioctls::{Kvm, VcpuExit, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

const SIZE: u64 = 0x10_0000;

fn vm_with_gmem(name: &str) -> Option<(Kvm, VmFd, GmemFlags)> {
    let kvm = kvm_or_skip(name)?;
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    match supported_flags(&vm) {
        Some(flags) => Some((kvm, vm, flags)),
        None => {
            eprintln!("SKIP {name}: this KVM has no KVM_CAP_GUEST_MEMFD");
            None
        }
    }
}

fn raw_create(vm: &VmFd, size: u64, flags: u64) -> Result<OwnedFd, i32> {
    vm.create_guest_memfd(kvm_create_guest_memfd {
        size,
        flags,
        reserved: [0; 6],
    })
    // SAFETY: a fresh descriptor returned by KVM_CREATE_GUEST_MEMFD.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|e| e.errno())
}

fn raw_fallocate(fd: i32, mode: i32, off: u64, len: u64) -> i32 {
    // SAFETY: fallocate on a descriptor the test owns.
    let r = unsafe { libc::fallocate(fd, mode, off as i64, len as i64) };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

fn subsets(flags: GmemFlags) -> Vec<GmemFlags> {
    let known = (flags & GmemFlags::all()).bits();
    (0..=known)
        .filter(|b| b & !known == 0)
        .map(GmemFlags::from_bits_retain)
        .collect()
}

/// guest_memfd_test: test_guest_memfd_flags + test_file_size for every supported combination.
#[test]
fn create_every_supported_flag_combination() {
    let Some((_kvm, vm, flags)) = vm_with_gmem("create_every_supported_flag_combination") else {
        return;
    };
    for f in subsets(flags) {
        let gmem = GuestMemfd::create(&vm, SIZE, f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!(gmem.flags(), f);
        // SAFETY: fstat into a zeroed struct on our descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(gmem.as_raw_fd(), &mut st) }, 0);
        assert_eq!(st.st_size as u64, SIZE, "{f:?}: st_size");
        assert_eq!(st.st_blksize as u64, PAGE_SIZE, "{f:?}: st_blksize");
    }
}

/// guest_memfd_test: every flag bit KVM does not report fails with EINVAL; the wrapper refuses
/// it first with a typed error.
#[test]
fn invalid_flags_are_refused() {
    let Some((_kvm, vm, flags)) = vm_with_gmem("invalid_flags_are_refused") else {
        return;
    };
    for bit in 0..64 {
        let f = 1u64 << bit;
        if flags.bits() & f != 0 {
            continue;
        }
        assert_eq!(
            raw_create(&vm, SIZE, f).err(),
            Some(libc::EINVAL),
            "bit {bit}"
        );
        match GuestMemfd::create(&vm, SIZE, GmemFlags::from_bits_retain(f)) {
            Err(Error::Unsupported { .. }) => {}
            other => panic!("bit {bit}: expected Unsupported, got {other:?}"),
        }
    }
}

/// guest_memfd_test: test_create_guest_memfd_invalid_sizes.
#[test]
fn invalid_sizes_are_refused() {
    let Some((_kvm, vm, _)) = vm_with_gmem("invalid_sizes_are_refused") else {
        return;
    };
    for size in [0, 1, PAGE_SIZE - 1, PAGE_SIZE + 1, 2 * PAGE_SIZE - 1] {
        assert_eq!(raw_create(&vm, size, 0).err(), Some(libc::EINVAL), "{size}");
        match GuestMemfd::create(&vm, size, GmemFlags::empty()) {
            Err(Error::InvalidInput { .. }) => {}
            other => panic!("size {size}: expected InvalidInput, got {other:?}"),
        }
    }
}

/// guest_memfd_test: test_create_guest_memfd_multiple (distinct files of the right size).
#[test]
fn multiple_memfds_are_distinct() {
    let Some((_kvm, vm, _)) = vm_with_gmem("multiple_memfds_are_distinct") else {
        return;
    };
    let a = GuestMemfd::create(&vm, PAGE_SIZE, GmemFlags::empty()).unwrap();
    let b = GuestMemfd::create(&vm, 4 * PAGE_SIZE, GmemFlags::empty()).unwrap();
    let ino = |g: &GuestMemfd| {
        // SAFETY: fstat into a zeroed struct on our descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(g.as_raw_fd(), &mut st) }, 0);
        (st.st_ino, st.st_size as u64)
    };
    let (ia, sa) = ino(&a);
    let (ib, sb) = ino(&b);
    assert_ne!(ia, ib);
    assert_eq!((sa, sb), (PAGE_SIZE, 4 * PAGE_SIZE));
}

/// guest_memfd_test: test_file_read_write (read/write syscalls are not supported).
#[test]
fn read_and_write_syscalls_fail() {
    let Some((_kvm, vm, _)) = vm_with_gmem("read_and_write_syscalls_fail") else {
        return;
    };
    let g = GuestMemfd::create(&vm, PAGE_SIZE, GmemFlags::empty()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: read/write into a local buffer of the given length.
    let r = unsafe { libc::read(g.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r < 0);
    // SAFETY: as above.
    let w = unsafe { libc::write(g.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    assert!(w < 0);
}

/// guest_memfd_test: test_fallocate and test_invalid_punch_hole.
#[test]
fn fallocate_and_punch_hole_ranges() {
    let Some((_kvm, vm, _)) = vm_with_gmem("fallocate_and_punch_hole_ranges") else {
        return;
    };
    let total = 4 * PAGE_SIZE;
    let g = GuestMemfd::create(&vm, total, GmemFlags::empty()).unwrap();
    let fd = g.as_raw_fd();
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let punch = libc::FALLOC_FL_PUNCH_HOLE | keep;
    // Valid.
    g.allocate(0, total).unwrap();
    g.punch_hole(PAGE_SIZE, PAGE_SIZE).unwrap();
    g.allocate(PAGE_SIZE, PAGE_SIZE).unwrap();
    // Without KEEP_SIZE guest_memfd refuses to grow or allocate.
    assert_ne!(raw_fallocate(fd, 0, 0, PAGE_SIZE), 0);
    // Beyond the end.
    assert_ne!(raw_fallocate(fd, keep, total, PAGE_SIZE), 0);
    assert_ne!(raw_fallocate(fd, keep, total - PAGE_SIZE, 2 * PAGE_SIZE), 0);
    // Unaligned punch holes fail with EINVAL (test_invalid_punch_hole).
    for (off, len) in [
        (0, 1),
        (0, PAGE_SIZE - 1),
        (0, PAGE_SIZE + 1),
        (1, PAGE_SIZE),
        (PAGE_SIZE - 1, PAGE_SIZE),
    ] {
        assert_eq!(
            raw_fallocate(fd, punch, off, len),
            libc::EINVAL,
            "{off:#x}+{len:#x}"
        );
        assert!(matches!(
            g.punch_hole(off, len),
            Err(Error::InvalidInput { .. })
        ));
    }
    assert!(matches!(
        g.allocate(total, PAGE_SIZE),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        g.punch_hole(!0xfff, PAGE_SIZE),
        Err(Error::InvalidInput { .. })
    ));
}

/// guest_memfd_test: test_mmap_supported (write, read back, punch → zero, refill) and
/// test_mmap_not_supported.
#[test]
fn mmap_write_read_and_punch_reads_zero() {
    let Some((_kvm, vm, flags)) = vm_with_gmem("mmap_write_read_and_punch_reads_zero") else {
        return;
    };
    let plain = GuestMemfd::create(&vm, SIZE, GmemFlags::empty()).unwrap();
    assert!(matches!(
        plain.mmap_region(),
        Err(Error::Unsupported { .. })
    ));
    // SAFETY: mmap of our descriptor; the result is checked and unmapped if it succeeds.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            plain.as_raw_fd(),
            0,
        )
    };
    assert_eq!(
        p,
        libc::MAP_FAILED,
        "mmap without GUEST_MEMFD_FLAG_MMAP must fail"
    );

    let want = GmemFlags::MMAP | GmemFlags::INIT_SHARED;
    if !flags.contains(want) {
        eprintln!("SKIP mmap part: flags {flags:?}");
        return;
    }
    let g = GuestMemfd::create(&vm, SIZE, want).unwrap();
    let region = GuestRegionMmap::new(g.mmap_region().unwrap(), GuestAddress(0)).unwrap();
    let mem = GuestMemoryMmap::from_regions(vec![region]).unwrap();
    let pattern: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    mem.write_slice(&pattern, GuestAddress(0)).unwrap();
    let mut back = vec![0u8; SIZE as usize];
    mem.read_slice(&mut back, GuestAddress(0)).unwrap();
    assert_eq!(back, pattern);
    g.punch_hole(PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
    mem.read_slice(&mut back, GuestAddress(0)).unwrap();
    assert!(back[PAGE_SIZE as usize..3 * PAGE_SIZE as usize]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(back[..PAGE_SIZE as usize], pattern[..PAGE_SIZE as usize]);
    assert_eq!(
        back[3 * PAGE_SIZE as usize..],
        pattern[3 * PAGE_SIZE as usize..]
    );
    g.allocate(PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
    mem.write_obj(0xa5u8, GuestAddress(PAGE_SIZE)).unwrap();
    assert_eq!(mem.read_obj::<u8>(GuestAddress(PAGE_SIZE)).unwrap(), 0xa5);
}

fn slot(n: u32, gpa: u64, size: u64, uaddr: u64, gmem: &Arc<GuestMemfd>, off: u64) -> GmemSlot {
    GmemSlot {
        slot: n,
        gpa,
        size,
        userspace_addr: uaddr,
        gmem: gmem.clone(),
        gmem_offset: off,
        shared_discard: SharedDiscard::DontNeed,
    }
}

fn anon(size: u64) -> u64 {
    // SAFETY: a fresh anonymous mapping; the tests leak it so it outlives the VM.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as u64
}

/// set_memory_region_test (private memory cases): REGION2 binding, one guest_memfd behind two
/// slots, and the bindings KVM refuses (unaligned or out-of-range offset, the same guest_memfd
/// range twice, a guest_memfd of another VM, a non-guest_memfd file), each refused by the layout
/// with a typed error before KVM sees it, and by KVM itself.
#[test]
fn region2_binding_and_invalid_bindings() {
    let Some((kvm, vm, _)) = vm_with_gmem("region2_binding_and_invalid_bindings") else {
        return;
    };
    let g = Arc::new(GuestMemfd::create(&vm, 4 * SIZE, GmemFlags::empty()).unwrap());
    let uaddr = anon(4 * SIZE);
    let mut layout = GmemLayout::new();
    // SAFETY: `uaddr` is a leaked anonymous mapping of 4 * SIZE bytes.
    unsafe {
        layout.bind(&vm, slot(0, 0, SIZE, uaddr, &g, 0)).unwrap();
        layout
            .bind(&vm, slot(1, 4 * SIZE, SIZE, uaddr + SIZE, &g, SIZE))
            .unwrap();
    }
    assert_eq!(layout.find(4 * SIZE + 5).map(|s| s.slot), Some(1));
    assert!(layout.covers(0, SIZE) && !layout.covers(0, SIZE + 1));

    let raw = |s: &GmemSlot| {
        // SAFETY: the address is the leaked mapping above; KVM is expected to refuse anyway.
        unsafe { vm.set_user_memory_region2(s.region2()) }.map_err(|e| e.errno())
    };
    let invalid: Vec<GmemSlot> = vec![
        slot(2, 8 * SIZE, SIZE, uaddr, &g, 1), // unaligned offset
        slot(2, 8 * SIZE, SIZE, uaddr, &g, 4 * SIZE), // offset past the end
        slot(2, 8 * SIZE, 2 * SIZE, uaddr, &g, 3 * SIZE), // runs past the end
        slot(2, 8 * SIZE, SIZE, uaddr, &g, SIZE / 2), // overlaps slot 0's gmem range
    ];
    for s in &invalid {
        assert!(
            matches!(layout.validate(s), Err(Error::InvalidInput { .. })),
            "{s:?}"
        );
        assert!(raw(s).is_err(), "KVM accepted {s:?}");
    }
    // GPA overlap and reused slot ids: refused by the layout.
    for s in [
        slot(2, SIZE / 2, SIZE, uaddr, &g, 2 * SIZE),
        slot(0, 8 * SIZE, SIZE, uaddr, &g, 2 * SIZE),
    ] {
        // SAFETY: as above.
        assert!(matches!(
            unsafe { layout.bind(&vm, s) },
            Err(Error::InvalidInput { .. })
        ));
    }
    // A guest_memfd of another VM.
    let other_vm = kvm.create_vm().unwrap();
    let foreign = Arc::new(GuestMemfd::create(&other_vm, SIZE, GmemFlags::empty()).unwrap());
    assert_eq!(
        raw(&slot(3, 8 * SIZE, SIZE, uaddr, &foreign, 0)).err(),
        Some(libc::EINVAL)
    );
    // A file that is not a guest_memfd.
    // SAFETY: memfd_create with a static C string.
    let mfd = unsafe { libc::memfd_create(c"not-gmem".as_ptr(), 0) };
    assert!(mfd >= 0);
    let region = kvm_userspace_memory_region2 {
        slot: 3,
        flags: KVM_MEM_GUEST_MEMFD,
        guest_phys_addr: 8 * SIZE,
        memory_size: SIZE,
        userspace_addr: uaddr,
        guest_memfd: mfd as u32,
        ..Default::default()
    };
    // SAFETY: KVM is expected to refuse; the address is the leaked mapping.
    assert_eq!(
        unsafe { vm.set_user_memory_region2(region) }
            .map_err(|e| e.errno())
            .err(),
        Some(libc::EINVAL)
    );
    // SAFETY: closing the memfd we created.
    unsafe { libc::close(mfd) };
    // A slot built from a vm-memory region takes its GPA, size and host address.
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(12 * SIZE), SIZE as usize)]).unwrap();
    let region = mem.iter().next().unwrap();
    let from = GmemSlot::from_region(5, region, g.clone(), 2 * SIZE).unwrap();
    assert_eq!(
        (from.gpa, from.size, from.shared_discard),
        (12 * SIZE, SIZE, SharedDiscard::DontNeed)
    );
    // SAFETY: `mem` lives until the end of the test; the slot is deleted before that.
    unsafe { layout.bind(&vm, from).unwrap() };
    assert_eq!(layout.find(12 * SIZE).map(|s| s.slot), Some(5));
    layout.unbind(&vm, 5).unwrap();
    layout.unbind(&vm, 1).unwrap();
    assert!(layout.find(4 * SIZE).is_none());
    // The freed guest_memfd range can be bound again.
    // SAFETY: as above.
    unsafe {
        layout
            .bind(&vm, slot(1, 8 * SIZE, SIZE, uaddr + SIZE, &g, SIZE))
            .unwrap()
    };
}

/// A real-mode payload that prints the byte at 0x2000 on the serial port and halts.
const READ_BYTE_AT_0X2000: [u8; 8] = [0xa0, 0x00, 0x20, 0xba, 0xf8, 0x03, 0xee, 0xf4];

fn run_and_collect(vcpu: &mut kvm_ioctls::VcpuFd) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..100 {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::IoOut(SERIAL_PORT, data) => out.extend_from_slice(data),
            VcpuExit::Hlt => return out,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    panic!("guest did not halt");
}

/// guest_memfd_test: test_guest_memfd_guest — a real guest reads memory the host wrote through
/// the guest_memfd mapping, and reads zero after the host punches that page.
#[test]
fn guest_reads_memory_written_through_gmem_mapping() {
    let Some((_kvm, vm, flags)) = vm_with_gmem("guest_reads_memory_written_through_gmem_mapping")
    else {
        return;
    };
    let want = GmemFlags::MMAP | GmemFlags::INIT_SHARED;
    if !flags.contains(want) {
        eprintln!("SKIP guest_reads_memory_written_through_gmem_mapping: flags {flags:?}");
        return;
    }
    let g = Arc::new(GuestMemfd::create(&vm, SIZE, want).unwrap());
    let region = g.mmap_region().unwrap();
    let host = region.as_ptr() as u64;
    let mem =
        GuestMemoryMmap::from_regions(vec![GuestRegionMmap::new(region, GuestAddress(0)).unwrap()])
            .unwrap();
    let mut layout = GmemLayout::new();
    let s = GmemSlot {
        shared_discard: SharedDiscard::Keep,
        ..slot(0, 0, SIZE, host, &g, 0)
    };
    // SAFETY: `mem` maps the guest_memfd and lives until the end of the test, after the VM.
    unsafe { layout.bind(&vm, s).unwrap() };

    let msg = b"written through guest_memfd\n";
    let payload = cgs_core::testing::serial_payload(0x1000, msg).unwrap();
    mem.write_slice(&payload, GuestAddress(0x1000)).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    set_real_mode_entry(&vcpu, 0x1000).unwrap();
    assert_eq!(run_and_collect(&mut vcpu), msg);

    // Second program: print the byte at 0x2000, before and after punching its page.
    mem.write_slice(&READ_BYTE_AT_0X2000, GuestAddress(0x1000))
        .unwrap();
    mem.write_obj(b'X', GuestAddress(0x2000)).unwrap();
    set_real_mode_entry(&vcpu, 0x1000).unwrap();
    assert_eq!(run_and_collect(&mut vcpu), b"X");
    g.punch_hole(0x2000, PAGE_SIZE).unwrap();
    set_real_mode_entry(&vcpu, 0x1000).unwrap();
    assert_eq!(run_and_collect(&mut vcpu), [0]);
    drop(vcpu);
    drop(vm);
}

/// The attribute backends and the hypercall-exit capability on this host: `KvmAttributes` is
/// refused with `Unsupported` when KVM lacks the PRIVATE attribute (the raw ioctl then fails
/// too), `HostAttributes::probe` picks the matching backend, and `KVM_CAP_EXIT_HYPERCALL` for
/// `KVM_HC_MAP_GPA_RANGE` can be enabled when offered.
#[test]
fn attribute_backends_and_exit_hypercall_cap() {
    use cgs_gmem::attrs::{kvm_supports_private, HostAttributes, KvmAttributes, MemoryAttributes};
    use cgs_gmem::exits::enable_map_gpa_range_exit;
    use cgs_gmem::tracker::MemState;
    let Some((_kvm, vm, _)) = vm_with_gmem("attribute_backends_and_exit_hypercall_cap") else {
        return;
    };
    let mut host = HostAttributes::probe(&vm);
    if kvm_supports_private(&vm) {
        assert!(matches!(host, HostAttributes::Kvm(_)));
        assert!(KvmAttributes::new(&vm).is_ok());
    } else {
        assert!(matches!(host, HostAttributes::SharedOnly(_)));
        assert!(matches!(
            KvmAttributes::new(&vm),
            Err(Error::Unsupported { .. })
        ));
        let raw = vm.set_memory_attributes(kvm_bindings::kvm_memory_attributes {
            address: 0,
            size: PAGE_SIZE,
            attributes: cgs_gmem::uapi::KVM_MEMORY_ATTRIBUTE_PRIVATE,
            flags: 0,
        });
        assert!(
            raw.is_err(),
            "KVM accepted attributes it does not advertise"
        );
        assert!(matches!(
            host.set(0, PAGE_SIZE, MemState::Private),
            Err(Error::Unsupported { .. })
        ));
        assert!(host.set(0, PAGE_SIZE, MemState::Shared).is_ok());
    }
    let offered =
        vm.check_extension_raw(libc::c_ulong::from(cgs_gmem::uapi::KVM_CAP_EXIT_HYPERCALL));
    if offered as u64 & (1 << 12) != 0 {
        enable_map_gpa_range_exit(&vm, 0).unwrap();
    } else {
        assert!(matches!(
            enable_map_gpa_range_exit(&vm, 0),
            Err(Error::Unsupported { .. })
        ));
    }
    assert!(matches!(
        enable_map_gpa_range_exit(&vm, 1 << 63),
        Err(Error::Unsupported { .. })
    ));
}

/// Conversions on real memory: the private side is a guest_memfd (mapped, so the test can read
/// it), the shared side an anonymous mapping; converting punches / drops the stale side, and a
/// fault injected into the discard step leaves the tracker and the record unchanged.
#[test]
fn conversions_discard_real_memory() {
    use cgs_gmem::attrs::RecordingAttributes;
    use cgs_gmem::convert::{Converter, Step};
    use cgs_gmem::testing::Faulty;
    use cgs_gmem::tracker::MemState;
    let Some((_kvm, vm, flags)) = vm_with_gmem("conversions_discard_real_memory") else {
        return;
    };
    // INIT_SHARED so the host may fault the guest_memfd mapping (without it, a host access to
    // guest_memfd memory is SIGBUS, as the selftest's fault_private checks).
    let want = GmemFlags::MMAP | GmemFlags::INIT_SHARED;
    if !flags.contains(want) {
        eprintln!("SKIP conversions_discard_real_memory: flags {flags:?}");
        return;
    }
    let g = Arc::new(GuestMemfd::create(&vm, SIZE, want).unwrap());
    let private = g.mmap_region().unwrap();
    let shared = anon(SIZE);
    let mut layout = GmemLayout::new();
    // SAFETY: `shared` is leaked, so it outlives the memslot.
    unsafe { layout.bind(&vm, slot(0, 0, SIZE, shared, &g, 0)).unwrap() };
    let read = |base: *mut u8, off: u64| {
        // SAFETY: `off` is inside a live mapping of SIZE bytes.
        unsafe { base.add(off as usize).read_volatile() }
    };
    let write = |base: *mut u8, off: u64, v: u8| {
        // SAFETY: as above.
        unsafe { base.add(off as usize).write_volatile(v) }
    };
    let (p, s) = (private.as_ptr(), shared as *mut u8);
    let pages = SIZE / PAGE_SIZE;
    let mut conv = Converter::new(
        &[(0, SIZE)],
        MemState::Private,
        RecordingAttributes::new(pages),
        Faulty::new(layout),
    )
    .unwrap();
    let plan = conv.discard().plan();
    for pg in 0..4 {
        write(p, pg * PAGE_SIZE, 0xaa);
        write(s, pg * PAGE_SIZE, 0x55);
    }
    // → shared: the guest_memfd copy of pages 1 and 2 is punched, shared data kept.
    conv.to_shared(PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
    assert_eq!(
        [
            read(p, 0),
            read(p, PAGE_SIZE),
            read(p, 2 * PAGE_SIZE),
            read(p, 3 * PAGE_SIZE)
        ],
        [0xaa, 0, 0, 0xaa]
    );
    assert_eq!(read(s, PAGE_SIZE), 0x55);
    // → private again: the shared copy is dropped (reads zero), the private side is untouched.
    write(p, PAGE_SIZE, 0xbb);
    conv.to_private(PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(read(s, PAGE_SIZE), 0);
    assert_eq!(read(s, 2 * PAGE_SIZE), 0x55);
    assert_eq!(read(p, PAGE_SIZE), 0xbb);
    // A failing discard (here: the punch) changes no state and keeps the contents.
    plan.fail_after(0);
    let err = conv.to_shared(0, PAGE_SIZE).unwrap_err();
    assert_eq!(err.step, Step::Discard);
    assert_eq!(conv.state(0), Some(MemState::Private));
    assert_eq!(conv.attrs().record().state(0), Some(MemState::Private));
    assert_eq!(read(p, 0), 0xaa);
    // A range the layout does not back is refused before any change.
    assert!(conv.to_shared(SIZE, PAGE_SIZE).is_err());
}

/// Runs `access` in a forked child and returns the signal that ended it (`None` when it exited
/// normally). The child only performs the memory access and `_exit`s.
fn signal_of_access(addr: *const u8) -> Option<i32> {
    // SAFETY: the child performs one volatile read and `_exit`s without touching any lock or
    // allocator, so forking a multi-threaded test process is fine.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: see above; a bad access kills the child with a signal.
        unsafe {
            std::ptr::read_volatile(addr);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

fn raw_mmap(fd: i32, len: u64) -> *mut u8 {
    // SAFETY: a shared mapping of our guest_memfd; the test unmaps it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

/// guest_memfd_test: test_fault_overflow (SIGBUS past the end of the file) and
/// test_fault_private (SIGBUS on a host access to private guest_memfd memory, i.e. MMAP without
/// INIT_SHARED), each checked in a forked child; plus test_mmap_cow (MAP_PRIVATE refused).
#[test]
fn faults_past_the_end_and_on_private_memory_raise_sigbus() {
    let Some((_kvm, vm, flags)) =
        vm_with_gmem("faults_past_the_end_and_on_private_memory_raise_sigbus")
    else {
        return;
    };
    let size = 4 * PAGE_SIZE;
    if flags.contains(GmemFlags::MMAP | GmemFlags::INIT_SHARED) {
        let g = GuestMemfd::create(&vm, size, GmemFlags::MMAP | GmemFlags::INIT_SHARED).unwrap();
        let p = raw_mmap(g.as_raw_fd(), 2 * size);
        // SAFETY: inside the 2 * size mapping.
        let (inside, past) = unsafe {
            (
                p.add(PAGE_SIZE as usize),
                p.add((size + PAGE_SIZE) as usize),
            )
        };
        assert_eq!(signal_of_access(inside), None);
        assert_eq!(signal_of_access(past), Some(libc::SIGBUS));
        // SAFETY: unmapping what raw_mmap mapped.
        unsafe { libc::munmap(p.cast(), 2 * size as usize) };
        // test_mmap_cow: a private (copy-on-write) mapping is refused.
        // SAFETY: mmap of our descriptor; checked for failure.
        let cow = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                g.as_raw_fd(),
                0,
            )
        };
        assert_eq!(cow, libc::MAP_FAILED);
    }
    if flags.contains(GmemFlags::MMAP) {
        let g = GuestMemfd::create(&vm, size, GmemFlags::MMAP).unwrap();
        let p = raw_mmap(g.as_raw_fd(), size);
        assert_eq!(signal_of_access(p), Some(libc::SIGBUS));
        // SAFETY: unmapping what raw_mmap mapped.
        unsafe { libc::munmap(p.cast(), size as usize) };
    }
}
