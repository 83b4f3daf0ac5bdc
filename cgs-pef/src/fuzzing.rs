//! Fuzz-target bodies for cgs-pef's untrusted inputs: ESM blobs, the guest's ultracalls and the
//! lifecycle under arbitrary call orders.

use std::sync::OnceLock;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::esm::{EsmBlob, EsmRegion};
use crate::papr::*;
use crate::uv::sim::{PageState, SimConfig, SimUltravisor, FDT_MAGIC};
use crate::UvKey;

mod lifecycle;

pub use lifecycle::{fuzz_lifecycle, op, seeds_lifecycle, MAX_VCPUS, VCPU_IDS};

/// Page shift of the fuzz target's simulator: 4 KiB pages keep every input cheap.
pub const FUZZ_PAGE_SHIFT: u32 = 12;
/// Page size of the fuzz target's simulator.
pub const FUZZ_PAGE: u64 = 1 << FUZZ_PAGE_SHIFT;
/// Guest memory of the ultracall fuzz target: 4 pages of 4 KiB.
pub const FUZZ_MEM_PAGES: u64 = 4;
/// Where the fuzz target's guest keeps its sealed ESM blob.
pub const FUZZ_ESM_GPA: u64 = 3 * FUZZ_PAGE;
/// Where the fuzz target's guest keeps its FDT.
pub const FUZZ_FDT_GPA: u64 = 2 * FUZZ_PAGE;
/// The key of the fuzz target's simulated ultravisor.
pub const FUZZ_KEY: [u8; 32] = [0x5a; 32];
/// Bytes per encoded call in [`fuzz_ultracalls`] input.
pub const FUZZ_CALL_LEN: usize = 17;

/// ESM blobs: parsing never panics, and what parses re-encodes to the same bytes.
#[allow(clippy::panic)]
pub fn fuzz_esm_blob(data: &[u8]) {
    let Ok(blob) = EsmBlob::parse(data) else {
        return;
    };
    if blob.to_bytes() != data {
        panic!("ESM blob does not round-trip: {data:?}");
    }
}

/// A simulated guest with a sealed ESM blob at [`FUZZ_ESM_GPA`] over page 0 and an FDT at
/// [`FUZZ_FDT_GPA`], the capability enabled; returns the simulator. Used by the fuzz target
/// and to build its seed corpus.
#[allow(clippy::panic)]
pub fn fuzz_guest() -> SimUltravisor {
    let (_, mut sim) = fuzz_guest_memory(|_| {});
    if let Err(e) = sim.kvm_enable_cap() {
        panic!("fuzz guest setup: {e}");
    }
    sim
}

/// The guest memory of [`fuzz_guest`] (sealed ESM blob, FDT) and a simulator over it whose
/// [`SimConfig`] `tweak` may change; the capability is not enabled yet.
#[allow(clippy::panic)]
pub fn fuzz_guest_memory(tweak: impl FnOnce(&mut SimConfig)) -> (GuestMemoryMmap, SimUltravisor) {
    let mem = match GuestMemoryMmap::<()>::from_ranges(&[(
        GuestAddress(0),
        (FUZZ_MEM_PAGES * FUZZ_PAGE) as usize,
    )]) {
        Ok(m) => m,
        Err(e) => panic!("guest memory: {e}"),
    };
    let key = UvKey::from_bytes(FUZZ_KEY);
    let setup = (|| -> Result<SimUltravisor, String> {
        mem.write_slice(b"secret kernel", GuestAddress(0))
            .map_err(|e| e.to_string())?;
        mem.write_slice(&FDT_MAGIC.to_be_bytes(), GuestAddress(FUZZ_FDT_GPA))
            .map_err(|e| e.to_string())?;
        // Sealing hashes a whole page; do it once for every input.
        static BLOB: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
        let blob = BLOB
            .get_or_init(|| {
                EsmBlob::seal(
                    &UvKey::from_bytes(FUZZ_KEY),
                    &[EsmRegion {
                        gpa: 0,
                        len: FUZZ_PAGE,
                    }],
                    |gpa, buf| mem.read_slice(buf, GuestAddress(gpa)),
                )
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{e:?}"))
            })
            .clone()?;
        mem.write_slice(&blob, GuestAddress(FUZZ_ESM_GPA))
            .map_err(|e| e.to_string())?;
        let mut config = SimConfig::new(key);
        config.page_shift = FUZZ_PAGE_SHIFT;
        tweak(&mut config);
        SimUltravisor::new(config, &mem).map_err(|e| e.to_string())
    })();
    match setup {
        Ok(sim) => (mem, sim),
        Err(e) => panic!("fuzz guest setup: {e}"),
    }
}

/// Encode one call of [`fuzz_ultracalls`] input.
pub fn encode_call(selector: u8, a: u64, b: u64) -> [u8; FUZZ_CALL_LEN] {
    let mut out = [0u8; FUZZ_CALL_LEN];
    out[0] = selector;
    out[1..9].copy_from_slice(&a.to_le_bytes());
    out[9..17].copy_from_slice(&b.to_le_bytes());
    out
}

/// Sequences of guest ultracalls, UV→KVM hcalls, host accesses and resets with arbitrary
/// arguments against a simulated guest: no panic, and the simulator's invariants (no host read
/// of a secure page, plaintext exactly for secure pages, …) hold after every call.
#[allow(clippy::panic)]
pub fn fuzz_ultracalls(data: &[u8]) {
    let mut sim = fuzz_guest();
    for call in data.chunks_exact(FUZZ_CALL_LEN) {
        let (selector, a, b) = decode_call(call);
        if selector & 0x7f == 16 {
            sim.set_running_vcpus((fold_small(selector, b) % 2) as usize);
            let _ = sim.kvm_svm_off();
        } else {
            ultracall_step(&mut sim, selector, a, b);
        }
        if let Err(e) = sim.check_invariants() {
            panic!("invariant broken after call {call:?}: {e}");
        }
    }
}

/// Split one [`FUZZ_CALL_LEN`]-byte call into its selector and two arguments.
pub fn decode_call(call: &[u8]) -> (u8, u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    if let (Some(sel), Some(ra), Some(rb)) = (call.first(), call.get(1..9), call.get(9..17)) {
        a.copy_from_slice(ra);
        b.copy_from_slice(rb);
        return (*sel, u64::from_le_bytes(a), u64::from_le_bytes(b));
    }
    (0, 0, 0)
}

/// Small arguments are the interesting ones: with the selector's top bit set, fold `a` into
/// the guest's memory (plus one page past its end).
fn fold_gpa(selector: u8, a: u64) -> u64 {
    if selector & 0x80 != 0 {
        a % (FUZZ_MEM_PAGES * FUZZ_PAGE + FUZZ_PAGE)
    } else {
        a
    }
}

/// With the selector's top bit set, fold `b` into 0..16.
fn fold_small(selector: u8, b: u64) -> u64 {
    if selector & 0x80 != 0 {
        b % 16
    } else {
        b
    }
}

/// One guest ultracall, UV↔KVM hcall or host/guest memory access (`selector & 0x7f` in 0..16;
/// anything else does nothing) with arguments derived from `a` and `b`. Panics only when the
/// host could read a secure page. Shared by the `pef_ultracalls` and `pef_lifecycle` targets.
#[allow(clippy::panic)]
pub fn ultracall_step(sim: &mut SimUltravisor, selector: u8, a: u64, b: u64) {
    let gpa = fold_gpa(selector, a);
    let small = fold_small(selector, b);
    match selector & 0x7f {
        0 => {
            sim.guest_ultracall(UV_ESM, [FUZZ_ESM_GPA, FUZZ_FDT_GPA]);
        }
        1 => {
            sim.guest_ultracall(UV_ESM, [gpa, small]);
        }
        2 => {
            sim.guest_ultracall(UV_SHARE_PAGE, [gpa >> FUZZ_PAGE_SHIFT, small]);
        }
        3 => {
            sim.guest_ultracall(UV_UNSHARE_PAGE, [gpa >> FUZZ_PAGE_SHIFT, small]);
        }
        4 => {
            sim.guest_ultracall(UV_UNSHARE_ALL_PAGES, [a, b]);
        }
        5 => {
            sim.guest_ultracall(a, [gpa, small]);
        }
        6 => {
            sim.h_svm_init_start();
        }
        7 => {
            sim.h_svm_init_done();
        }
        8 => {
            sim.h_svm_init_abort();
        }
        9 => {
            let order = if b & 1 == 0 {
                u64::from(FUZZ_PAGE_SHIFT)
            } else {
                b >> 58
            };
            sim.h_svm_page_in(gpa, small & 3, order);
        }
        10 => {
            sim.h_svm_page_out(gpa, small & 1, u64::from(FUZZ_PAGE_SHIFT));
        }
        11 => {
            sim.uv_page_in(gpa, small & 1, u64::from(FUZZ_PAGE_SHIFT));
        }
        12 => {
            sim.uv_page_out(gpa, small & 1, u64::from(FUZZ_PAGE_SHIFT));
        }
        13 => {
            let _ = sim.host_write(gpa, &b.to_le_bytes());
        }
        14 => {
            let mut buf = [0u8; 8];
            if let (Ok(PageState::Secure), Ok(())) =
                (sim.page_state(gpa), sim.host_read(gpa, &mut buf))
            {
                panic!("host read a secure page at {gpa:#x}");
            }
        }
        15 => {
            let mut buf = [0u8; 16];
            let _ = sim.guest_read(gpa, &mut buf);
            let _ = sim.guest_write(gpa, &a.to_le_bytes());
        }
        _ => {}
    }
}

/// Seed inputs for the `pef_esm_blob` target: blobs from [`EsmBlob::seal`].
#[allow(clippy::panic)]
pub fn seeds_esm_blob() -> Vec<Vec<u8>> {
    let key = UvKey::from_bytes(FUZZ_KEY);
    let zero = |_: u64, b: &mut [u8]| {
        b.fill(0);
        Ok::<(), ()>(())
    };
    let sets: [&[EsmRegion]; 3] = [
        &[EsmRegion {
            gpa: 0,
            len: FUZZ_PAGE,
        }],
        &[
            EsmRegion {
                gpa: 0,
                len: 2 * FUZZ_PAGE,
            },
            EsmRegion {
                gpa: 4 * FUZZ_PAGE,
                len: FUZZ_PAGE,
            },
        ],
        &[EsmRegion {
            gpa: 1 << 32,
            len: 16 * FUZZ_PAGE,
        }],
    ];
    sets.iter()
        .map(|r| match EsmBlob::seal(&key, r, zero) {
            Ok(b) => b.to_bytes(),
            Err(e) => panic!("seal: {e:?}"),
        })
        .collect()
}

/// Seed inputs for the `pef_ultracalls` target: a secure-guest session (ESM, share, I/O,
/// page-out/in, unshare, reset) and a failing one (bad ESM arguments, early hcalls).
pub fn seeds_ultracalls() -> Vec<Vec<u8>> {
    let session = [
        encode_call(0, 0, 0),                 // UV_ESM with the sealed blob
        encode_call(2, 2 * FUZZ_PAGE, 1),     // share page 2
        encode_call(15, 2 * FUZZ_PAGE, 7),    // guest reads/writes it
        encode_call(14, 2 * FUZZ_PAGE, 0),    // host reads it
        encode_call(10, FUZZ_PAGE, 0),        // H_SVM_PAGE_OUT page 1
        encode_call(13, FUZZ_PAGE + 8, 0xff), // host tampers with the ciphertext
        encode_call(15, FUZZ_PAGE, 1),        // guest faults it in
        encode_call(3, 2 * FUZZ_PAGE, 1),     // unshare page 2
        encode_call(4, 0, 0),                 // unshare all
        encode_call(16, 0, 1),                // SVM_OFF while a vCPU runs
        encode_call(16, 0, 0),                // SVM_OFF
        encode_call(14, 0, 0),                // host reads page 0
    ];
    let failing = [
        encode_call(8, 0, 0),                // abort before start
        encode_call(7, 0, 0),                // done before start
        encode_call(1, FUZZ_PAGE, 0),        // UV_ESM with no blob there
        encode_call(6, 0, 0),                // H_SVM_INIT_START
        encode_call(9, 0x10, 2),             // bad page-in
        encode_call(11, 0, 1),               // UV_PAGE_IN with flags
        encode_call(8, 0, 0),                // abort
        encode_call(5, UV_SVM_TERMINATE, 0), // hypervisor-only ultracall from the guest
    ];
    [session.concat(), failing.concat()].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_corpus_matches_the_encoders() {
        // CGS_WRITE_CORPUS=1 regenerates fuzz/corpus/pef_* from the encoders.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let write = std::env::var("CGS_WRITE_CORPUS").is_ok_and(|v| v == "1");
        for (target, seeds) in [
            ("pef_esm_blob", seeds_esm_blob()),
            ("pef_ultracalls", seeds_ultracalls()),
            ("pef_lifecycle", seeds_lifecycle()),
        ] {
            let dir = root.join(target);
            for (i, seed) in seeds.iter().enumerate() {
                let path = dir.join(format!("seed-{i}"));
                if write {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, seed).unwrap();
                }
                assert_eq!(&std::fs::read(&path).unwrap(), seed, "{}", path.display());
            }
        }
        for seed in seeds_esm_blob() {
            assert!(EsmBlob::parse(&seed).is_ok());
            fuzz_esm_blob(&seed);
        }
        for seed in seeds_ultracalls() {
            fuzz_ultracalls(&seed);
        }
        for seed in seeds_lifecycle() {
            fuzz_lifecycle(&seed);
        }
        // The session seed starts from a guest that can really become secure.
        let mut sim = fuzz_guest();
        assert_eq!(
            sim.guest_ultracall(UV_ESM, [FUZZ_ESM_GPA, FUZZ_FDT_GPA]),
            H_SUCCESS
        );
        assert_eq!(sim.count(PageState::Secure), FUZZ_MEM_PAGES as usize);
    }

    #[test]
    fn fuzz_bodies_over_generated_inputs() {
        let mut input = Vec::new();
        input.extend_from_slice(&encode_call(0, 0, 0));
        input.extend_from_slice(&encode_call(0x82, FUZZ_PAGE, 2));
        input.extend_from_slice(&encode_call(0x8c, 0, 0));
        input.extend_from_slice(&encode_call(0x8d, 0, 0xffff));
        input.extend_from_slice(&encode_call(0x8f, 0, 0));
        input.extend_from_slice(&encode_call(0x90, 0, 0));
        fuzz_ultracalls(&input);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..40 {
            let mut seq = Vec::new();
            for _ in 0..12 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                seq.extend_from_slice(&encode_call((x % 17) as u8 | 0x80, x >> 8, x >> 3));
            }
            fuzz_ultracalls(&seq);
        }
        // Lifecycle sequences biased towards the lifecycle operations.
        for round in 0..60u8 {
            let mut seq = vec![round % 4];
            for _ in 0..16 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let sel = op::KVM_INIT + (x % u64::from(op::COUNT - op::KVM_INIT)) as u8;
                let sel = if x & 0x100 == 0 { sel } else { (x >> 9) as u8 };
                seq.extend_from_slice(&encode_call(sel | 0x80, x >> 12, x >> 5));
            }
            fuzz_lifecycle(&seq);
        }
        let blob = EsmBlob::seal(
            &UvKey::from_bytes([1; 32]),
            &[EsmRegion {
                gpa: 0,
                len: FUZZ_PAGE,
            }],
            |_, b: &mut [u8]| {
                b.fill(0);
                Ok::<(), ()>(())
            },
        )
        .unwrap()
        .to_bytes();
        fuzz_esm_blob(&blob);
        for i in 0..blob.len() {
            let mut m = blob.clone();
            m[i] ^= 0xff;
            fuzz_esm_blob(&m);
            fuzz_esm_blob(&blob[..i]);
        }
    }
}
