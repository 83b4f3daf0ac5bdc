//! The POWER ultravisor simulator: UV_ESM, the H_SVM_* hcalls, page states and SVM_OFF.

mod common;

use cgs_core::Error;
use cgs_pef::papr::*;
use cgs_pef::{
    EsmBlob, EsmRegion, GuestMode, PageState, SimUltravisor, UvKey, PAGE_SHIFT, PAGE_SIZE,
};
use common::*;
use vm_memory::{Bytes, GuestAddress};

const ORDER: u64 = PAGE_SHIFT as u64;

#[test]
fn esm_makes_every_page_secure_and_hides_it_from_the_host() {
    let (mem, mut sim) = enabled_sim();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_SUCCESS);
    assert_eq!(sim.mode(), GuestMode::Secure);
    assert_eq!(sim.count(PageState::Secure), MEM_PAGES as usize);
    assert_eq!(
        &calls(&sim)[..3],
        &["KVM_ENABLE_CAP", "H_SVM_INIT_START", "UV_PAGE_IN"]
    );
    assert_eq!(sim.last_event().unwrap().call, "UV_ESM");
    assert!(calls(&sim).contains(&"H_SVM_INIT_DONE"));
    // The host can neither read nor write a secure page, and its own mapping no longer holds the
    // secret.
    let mut buf = [0u8; 8];
    match sim.host_read(SECRET_GPA, &mut buf) {
        Err(Error::Firmware { status, .. }) => assert_eq!(status.name, "H_PERMISSION"),
        other => panic!("host read of a secure page: {other:?}"),
    }
    assert!(sim.host_write(SECRET_GPA, b"x").is_err());
    assert_eq!(
        raw(&mem, PAGE_SIZE, PAGE_SIZE as usize),
        vec![0u8; PAGE_SIZE as usize]
    );
    // The guest still sees its memory.
    let mut seen = vec![0u8; SECRET.len()];
    sim.guest_read(SECRET_GPA, &mut seen).unwrap();
    assert_eq!(seen, SECRET);
    // A second UV_ESM of a secure guest succeeds without doing anything (ultravisor.rst).
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_SUCCESS);
    sim.check_invariants().unwrap();
}

#[test]
fn esm_without_the_capability_enabled_is_refused_by_kvm() {
    let mem = memory();
    prepare_guest_image(&mem);
    let mut sim = SimUltravisor::new(config(), &mem).unwrap();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_PERMISSION);
    let start = sim.events().find(|e| e.call == "H_SVM_INIT_START").unwrap();
    assert_eq!(start.rc, H_AUTHORITY);
    assert_eq!(sim.mode(), GuestMode::Normal);
    assert_eq!(raw(&mem, SECRET_GPA, SECRET.len()), SECRET);
    // The hcall directly, and after enabling the capability.
    assert_eq!(sim.h_svm_init_start(), H_AUTHORITY);
    sim.kvm_enable_cap().unwrap();
    assert_eq!(sim.h_svm_init_start(), H_SUCCESS);
}

#[test]
fn esm_without_secure_memory_or_for_a_hash_guest_is_unsupported() {
    for (available, radix) in [(false, true), (true, false)] {
        let mem = memory();
        prepare_guest_image(&mem);
        let mut cfg = config();
        cfg.secure_guests_available = available;
        cfg.radix_guest = radix;
        let mut sim = SimUltravisor::new(cfg, &mem).unwrap();
        assert_eq!(sim.kvm_check_extension(), available);
        assert_eq!(sim.kvm_enable_cap().is_ok(), available);
        assert_eq!(sim.h_svm_init_start(), H_UNSUPPORTED);
        assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_NOT_AVAILABLE);
        assert_eq!(sim.mode(), GuestMode::Normal);
    }
}

#[test]
fn esm_integrity_failure_aborts_and_leaves_memory_alone() {
    let (mem, mut sim) = enabled_sim();
    // The host (or anyone) changed a sealed byte after the owner sealed the image.
    mem.write_slice(b"X", GuestAddress(SECRET_GPA)).unwrap();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_PERMISSION);
    let abort = sim.events().find(|e| e.call == "H_SVM_INIT_ABORT").unwrap();
    assert_eq!(
        abort.rc, H_PARAMETER,
        "KVM answers an abort with H_PARAMETER"
    );
    assert_eq!(sim.mode(), GuestMode::Normal);
    assert_eq!(sim.count(PageState::Normal), MEM_PAGES as usize);
    assert_eq!(raw(&mem, SECRET_GPA + 1, SECRET.len() - 1), &SECRET[1..]);
    sim.check_invariants().unwrap();
    // A blob sealed with another key fails the same way.
    let (mem2, mut sim2) = enabled_sim();
    let other = EsmBlob::seal(
        &UvKey::from_bytes([9; 32]),
        &[EsmRegion {
            gpa: 0,
            len: PAGE_SIZE,
        }],
        |gpa, buf| mem2.read_slice(buf, GuestAddress(gpa)),
    )
    .unwrap();
    mem2.write_slice(&other.to_bytes(), GuestAddress(ESM_GPA))
        .unwrap();
    assert_eq!(sim2.uv_esm(ESM_GPA, FDT_GPA), H_PERMISSION);
}

#[test]
fn esm_argument_errors() {
    let (mem, mut sim) = enabled_sim();
    // Blob address outside memory, blob without magic, FDT without magic.
    assert_eq!(sim.uv_esm(MEM_PAGES * PAGE_SIZE, FDT_GPA), H_PARAMETER);
    assert_eq!(sim.uv_esm(u64::MAX - 4, FDT_GPA), H_PARAMETER);
    assert_eq!(sim.uv_esm(0, FDT_GPA), H_PARAMETER);
    assert_eq!(sim.uv_esm(ESM_GPA, 0), H_P2);
    assert_eq!(sim.uv_esm(ESM_GPA, u64::MAX), H_P2);
    assert!(!calls(&sim).contains(&"H_SVM_INIT_START"));
    // A well-formed blob protecting memory the guest does not have.
    let outside = EsmBlob::seal(
        &UvKey::from_bytes(KEY),
        &[EsmRegion {
            gpa: MEM_PAGES * PAGE_SIZE,
            len: PAGE_SIZE,
        }],
        |_, buf: &mut [u8]| {
            buf.fill(0);
            Ok::<(), ()>(())
        },
    )
    .unwrap();
    mem.write_slice(&outside.to_bytes(), GuestAddress(ESM_GPA))
        .unwrap();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_PARAMETER);
    assert_eq!(sim.mode(), GuestMode::Normal);
    sim.check_invariants().unwrap();
}

#[test]
fn init_hcalls_in_every_order() {
    let (_mem, mut sim) = enabled_sim();
    assert_eq!(sim.h_svm_init_done(), H_UNSUPPORTED);
    assert_eq!(sim.h_svm_init_abort(), H_UNSUPPORTED);
    assert_eq!(sim.h_svm_init_start(), H_SUCCESS);
    assert_eq!(sim.mode(), GuestMode::InitStarted);
    assert_eq!(sim.h_svm_init_start(), H_STATE);
    // A UV_ESM while another is in progress.
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_BUSY);
    assert_eq!(sim.h_svm_page_in(0, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.h_svm_init_abort(), H_PARAMETER);
    assert_eq!(sim.mode(), GuestMode::Normal);
    assert_eq!(sim.count(PageState::Secure), 0);
    assert_eq!(sim.h_svm_init_start(), H_SUCCESS);
    assert_eq!(sim.h_svm_init_done(), H_SUCCESS);
    assert_eq!(sim.h_svm_init_abort(), H_STATE);
    assert_eq!(sim.mode(), GuestMode::Secure);
}

#[test]
fn abort_restores_page_contents() {
    let (mem, mut sim) = enabled_sim();
    assert_eq!(sim.h_svm_init_start(), H_SUCCESS);
    assert_eq!(sim.h_svm_page_in(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    assert_eq!(raw(&mem, SECRET_GPA, SECRET.len()), vec![0; SECRET.len()]);
    assert_eq!(sim.h_svm_init_abort(), H_PARAMETER);
    assert_eq!(raw(&mem, SECRET_GPA, SECRET.len()), SECRET);
}

/// Regression: a page paged out between INIT_START and the abort came back to the host as its
/// ciphertext; it comes back decrypted (zeroed if the host modified the ciphertext).
#[test]
fn abort_restores_paged_out_pages_too() {
    let (mem, mut sim) = enabled_sim();
    mem.write_slice(b"page zero", GuestAddress(0)).unwrap();
    assert_eq!(sim.h_svm_init_start(), H_SUCCESS);
    assert_eq!(sim.h_svm_page_in(0, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.h_svm_page_in(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.h_svm_page_out(0, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.h_svm_page_out(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    sim.host_write(0x10, b"\xff").unwrap();
    assert_eq!(sim.h_svm_init_abort(), H_PARAMETER);
    assert_eq!(raw(&mem, SECRET_GPA, SECRET.len()), SECRET);
    // The tampered page: neither its contents nor the modified ciphertext.
    assert_eq!(
        raw(&mem, 0, PAGE_SIZE as usize),
        vec![0u8; PAGE_SIZE as usize]
    );
    sim.check_invariants().unwrap();
}

#[test]
fn h_svm_page_in_and_out_argument_checks() {
    let (_mem, mut sim) = enabled_sim();
    assert_eq!(sim.h_svm_page_in(0, 0, ORDER), H_UNSUPPORTED);
    assert_eq!(sim.h_svm_page_out(0, 0, ORDER), H_UNSUPPORTED);
    assert_eq!(sim.h_svm_init_start(), H_SUCCESS);
    assert_eq!(sim.h_svm_page_in(0, 0, 12), H_P3);
    assert_eq!(sim.h_svm_page_in(0, 2, ORDER), H_P2);
    assert_eq!(sim.h_svm_page_in(0x100, 0, ORDER), H_PARAMETER);
    assert_eq!(
        sim.h_svm_page_in(MEM_PAGES * PAGE_SIZE, 0, ORDER),
        H_PARAMETER
    );
    assert_eq!(sim.h_svm_page_in(0, 0, ORDER), H_SUCCESS);
    assert_eq!(
        sim.h_svm_page_in(0, 0, ORDER),
        H_PARAMETER,
        "already paged in"
    );
    assert_eq!(
        sim.h_svm_page_in(2 * PAGE_SIZE, H_PAGE_IN_SHARED, ORDER),
        H_SUCCESS
    );
    assert_eq!(sim.page_state(2 * PAGE_SIZE).unwrap(), PageState::Shared);
    assert_eq!(sim.h_svm_page_out(0, 0, 12), H_P3);
    assert_eq!(sim.h_svm_page_out(0, 1, ORDER), H_P2);
    assert_eq!(sim.h_svm_page_out(!(PAGE_SIZE - 1), 0, ORDER), H_PARAMETER);
    assert_eq!(
        sim.h_svm_page_out(3 * PAGE_SIZE, 0, ORDER),
        H_SUCCESS,
        "not secure: nothing to do"
    );
    assert_eq!(sim.page_state(3 * PAGE_SIZE).unwrap(), PageState::Normal);
    assert_eq!(sim.h_svm_page_out(0, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.page_state(0).unwrap(), PageState::PagedOut);
    sim.check_invariants().unwrap();
}

#[test]
fn paged_out_pages_are_encrypted_and_authenticated() {
    let (mem, mut sim) = secure_sim();
    assert_eq!(sim.uv_page_out(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.page_state(PAGE_SIZE).unwrap(), PageState::PagedOut);
    // The host now holds the page, encrypted: readable, but not the secret.
    let mut cipher = vec![0u8; PAGE_SIZE as usize];
    sim.host_read(PAGE_SIZE, &mut cipher).unwrap();
    assert!(!cipher.windows(SECRET.len()).any(|w| w == SECRET));
    assert_ne!(cipher, vec![0u8; PAGE_SIZE as usize]);
    // A second page-out of the same contents uses a fresh nonce.
    assert_eq!(sim.uv_page_in(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    assert_eq!(sim.uv_page_out(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    assert_ne!(raw(&mem, PAGE_SIZE, PAGE_SIZE as usize), cipher);
    // The guest touching it pages it back in transparently.
    let mut seen = vec![0u8; SECRET.len()];
    sim.guest_read(SECRET_GPA, &mut seen).unwrap();
    assert_eq!(seen, SECRET);
    assert_eq!(sim.page_state(PAGE_SIZE).unwrap(), PageState::Secure);
    // Tampering with the ciphertext is detected and the page stays paged out.
    assert_eq!(sim.uv_page_out(PAGE_SIZE, 0, ORDER), H_SUCCESS);
    sim.host_write(PAGE_SIZE + 7, b"\xff").unwrap();
    assert_eq!(sim.uv_page_in(PAGE_SIZE, 0, ORDER), H_PERMISSION);
    assert_eq!(sim.page_state(PAGE_SIZE).unwrap(), PageState::PagedOut);
    match sim.guest_read(SECRET_GPA, &mut seen) {
        Err(Error::Firmware { op, status }) => {
            assert_eq!(op, "H_SVM_PAGE_IN");
            assert_eq!(status.name, "H_PARAMETER");
        }
        other => panic!("tampered page-in: {other:?}"),
    }
    sim.check_invariants().unwrap();
}

#[test]
fn uv_page_in_and_out_argument_checks() {
    let (_mem, mut sim) = enabled_sim();
    assert_eq!(sim.uv_page_in(0, 0, ORDER), H_FUNCTION);
    assert_eq!(sim.uv_page_out(0, 0, ORDER), H_FUNCTION);
    let (_mem, mut sim) = secure_sim();
    for f in [SimUltravisor::uv_page_in, SimUltravisor::uv_page_out] {
        assert_eq!(f(&mut sim, 0x10, 0, ORDER), H_P3);
        assert_eq!(f(&mut sim, MEM_PAGES * PAGE_SIZE, 0, ORDER), H_P3);
        assert_eq!(f(&mut sim, 0, 1, ORDER), H_P4);
        assert_eq!(f(&mut sim, 0, 0, 21), H_P5);
    }
    assert_eq!(sim.uv_page_in(0, 0, ORDER), H_PARAMETER, "already secure");
    assert_eq!(sim.uv_share_page(3, 1), H_SUCCESS);
    assert_eq!(
        sim.uv_page_out(3 * PAGE_SIZE, 0, ORDER),
        H_PARAMETER,
        "shared, not secure"
    );
    sim.check_invariants().unwrap();
}

#[test]
fn sharing_zeroes_pages_and_never_leaks_secure_contents() {
    let (mem, mut sim) = secure_sim();
    // Share the page holding the secret: it is zeroed, not handed over.
    assert_eq!(sim.uv_share_page(1, 2), H_SUCCESS);
    assert_eq!(sim.count(PageState::Shared), 2);
    let mut host = vec![0u8; SECRET.len()];
    sim.host_read(SECRET_GPA, &mut host).unwrap();
    assert_eq!(host, vec![0u8; SECRET.len()]);
    // A virtio-style buffer: the guest writes, the host reads, and back.
    sim.guest_write(2 * PAGE_SIZE, b"request").unwrap();
    let mut req = [0u8; 7];
    sim.host_read(2 * PAGE_SIZE, &mut req).unwrap();
    assert_eq!(&req, b"request");
    sim.host_write(2 * PAGE_SIZE + 8, b"reply").unwrap();
    let mut rep = [0u8; 5];
    sim.guest_read(2 * PAGE_SIZE + 8, &mut rep).unwrap();
    assert_eq!(&rep, b"reply");
    // Unshare: secure again, zeroed on both sides.
    assert_eq!(sim.uv_unshare_page(2, 1), H_SUCCESS);
    assert_eq!(sim.page_state(2 * PAGE_SIZE).unwrap(), PageState::Secure);
    assert!(sim.host_read(2 * PAGE_SIZE, &mut req).is_err());
    assert_eq!(raw(&mem, 2 * PAGE_SIZE, 16), vec![0u8; 16]);
    sim.guest_read(2 * PAGE_SIZE, &mut req).unwrap();
    assert_eq!(req, [0u8; 7]);
    // Unshare all.
    assert_eq!(sim.uv_share_page(5, 3), H_SUCCESS);
    assert_eq!(sim.uv_unshare_all_pages(), H_SUCCESS);
    assert_eq!(sim.count(PageState::Shared), 0);
    assert_eq!(sim.count(PageState::Secure), MEM_PAGES as usize);
    sim.check_invariants().unwrap();
}

#[test]
fn share_refusals_change_nothing() {
    let (_mem, mut sim) = enabled_sim();
    assert_eq!(sim.uv_share_page(0, 1), H_FUNCTION, "not a secure guest");
    assert_eq!(sim.uv_unshare_page(0, 1), H_FUNCTION);
    assert_eq!(sim.uv_unshare_all_pages(), H_FUNCTION);
    let (_mem, mut sim) = secure_sim();
    assert_eq!(sim.uv_share_page(MEM_PAGES, 1), H_PARAMETER);
    assert_eq!(sim.uv_share_page(u64::MAX, 1), H_PARAMETER);
    assert_eq!(sim.uv_share_page(0, 0), H_P2);
    assert_eq!(
        sim.uv_share_page(MEM_PAGES - 2, 3),
        H_P2,
        "runs past the end"
    );
    assert_eq!(sim.uv_share_page(1, u64::MAX), H_P2);
    assert_eq!(sim.uv_unshare_page(0, MEM_PAGES + 1), H_P2);
    assert_eq!(sim.count(PageState::Secure), MEM_PAGES as usize);
    let mut seen = vec![0u8; SECRET.len()];
    sim.guest_read(SECRET_GPA, &mut seen).unwrap();
    assert_eq!(seen, SECRET);
}

#[test]
fn guest_ultracall_dispatch() {
    let (_mem, mut sim) = enabled_sim();
    assert_eq!(sim.guest_ultracall(UV_PAGE_IN, [0, 0]), H_PERMISSION);
    assert_eq!(sim.guest_ultracall(UV_SVM_TERMINATE, [0, 0]), H_PERMISSION);
    assert_eq!(sim.guest_ultracall(0x1234, [0, 0]), H_FUNCTION);
    assert_eq!(sim.guest_ultracall(UV_ESM, [ESM_GPA, FDT_GPA]), H_SUCCESS);
    assert_eq!(sim.guest_ultracall(UV_SHARE_PAGE, [4, 1]), H_SUCCESS);
    assert_eq!(sim.guest_ultracall(UV_UNSHARE_PAGE, [4, 1]), H_SUCCESS);
    assert_eq!(sim.guest_ultracall(UV_UNSHARE_ALL_PAGES, [0, 0]), H_SUCCESS);
    assert_eq!(
        sim.last_event().unwrap().to_string(),
        "UV_UNSHARE_ALL_PAGES(0x0, 0x0) = H_SUCCESS"
    );
}

#[test]
fn svm_off_returns_the_guest_to_normal_with_pages_scrubbed() {
    let (mem, mut sim) = secure_sim();
    assert_eq!(sim.uv_share_page(3, 1), H_SUCCESS);
    sim.guest_write(3 * PAGE_SIZE, b"shared data").unwrap();
    assert_eq!(sim.uv_page_out(4 * PAGE_SIZE, 0, ORDER), H_SUCCESS);
    // EBUSY while a vCPU runs; nothing changes.
    sim.set_running_vcpus(1);
    assert_eq!(sim.kvm_svm_off().unwrap_err().errno(), Some(libc::EBUSY));
    assert!(sim.is_secure());
    sim.set_running_vcpus(0);
    sim.kvm_svm_off().unwrap();
    assert_eq!(sim.mode(), GuestMode::Normal);
    assert_eq!(sim.terminations(), 1);
    assert!(sim.svm_enabled(), "the capability stays enabled, as in KVM");
    assert_eq!(sim.count(PageState::Normal), MEM_PAGES as usize);
    assert!(calls(&sim).contains(&"UV_SVM_TERMINATE"));
    // Formerly secure and paged-out pages are zero; the secret is gone everywhere.
    for page in [0, 1, 4] {
        assert_eq!(
            raw(&mem, page * PAGE_SIZE, PAGE_SIZE as usize),
            vec![0u8; PAGE_SIZE as usize]
        );
    }
    let mut buf = vec![0u8; SECRET.len()];
    sim.host_read(SECRET_GPA, &mut buf).unwrap();
    assert_eq!(buf, vec![0u8; SECRET.len()]);
    assert_eq!(raw(&mem, 3 * PAGE_SIZE, 11), b"shared data");
    // SVM_OFF of a normal guest succeeds and terminates nothing; the guest can go secure again
    // after the image is reloaded.
    sim.kvm_svm_off().unwrap();
    assert_eq!(sim.terminations(), 1);
    prepare_guest_image(&mem);
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_SUCCESS);
    sim.check_invariants().unwrap();
}

#[test]
fn injected_ioctl_failures_are_one_shot() {
    let (_mem, mut sim) = enabled_sim();
    sim.fail_next_svm_off(libc::ENOTTY);
    assert_eq!(sim.kvm_svm_off().unwrap_err().errno(), Some(libc::ENOTTY));
    sim.kvm_svm_off().unwrap();
    sim.fail_next_enable_cap(libc::EPERM);
    assert_eq!(sim.kvm_enable_cap().unwrap_err().errno(), Some(libc::EPERM));
    sim.kvm_enable_cap().unwrap();
}

#[test]
fn memory_must_be_64k_aligned_and_debug_redacts() {
    let mem = vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x3000)]).unwrap();
    assert!(matches!(
        SimUltravisor::new(config(), &mem),
        Err(Error::InvalidInput { .. })
    ));
    let (_mem, sim) = secure_sim();
    let dbg = format!("{sim:?}");
    assert!(dbg.contains("secure_pages: 16"), "{dbg}");
    assert!(
        !dbg.contains("66, 66"),
        "key bytes must not be printed: {dbg}"
    );
    assert_eq!(format!("{:?}", config().key), "UvKey(<redacted>)");
}

#[test]
fn four_kib_page_kernels_work_and_other_page_sizes_are_refused() {
    let mem = memory();
    let mut cfg = config();
    cfg.page_shift = 13;
    assert!(matches!(
        SimUltravisor::new(cfg, &mem),
        Err(Error::InvalidInput { .. })
    ));
    let mut cfg = config();
    cfg.page_shift = 12;
    prepare_guest_image(&mem);
    let mut sim = SimUltravisor::new(cfg, &mem).unwrap();
    assert_eq!(sim.page_size(), 4096);
    sim.kvm_enable_cap().unwrap();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), H_SUCCESS);
    assert_eq!(
        sim.count(PageState::Secure),
        (MEM_PAGES * PAGE_SIZE / 4096) as usize
    );
    // The hcalls now want order 12, and gfns count 4 KiB pages.
    assert_eq!(sim.h_svm_page_out(0x1000, 0, ORDER), H_P3);
    assert_eq!(sim.h_svm_page_out(0x1000, 0, 12), H_SUCCESS);
    assert_eq!(sim.page_state(0x1000).unwrap(), PageState::PagedOut);
    assert_eq!(sim.page_state(0).unwrap(), PageState::Secure);
    assert_eq!(sim.uv_share_page(0x11, 1), H_SUCCESS);
    assert_eq!(sim.page_state(0x11000).unwrap(), PageState::Shared);
    assert_eq!(sim.page_state(0x10000).unwrap(), PageState::Secure);
    sim.check_invariants().unwrap();
}
