#![allow(dead_code)]

use cgs_pef::sim::FDT_MAGIC;
use cgs_pef::{EsmBlob, EsmRegion, SimConfig, SimUltravisor, UvKey, PAGE_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const KEY: [u8; 32] = [0x42; 32];
pub const MEM_PAGES: u64 = 16;
pub const ESM_GPA: u64 = 15 * PAGE_SIZE;
pub const FDT_GPA: u64 = 14 * PAGE_SIZE;
pub const SECRET: &[u8] = b"guest kernel with secrets";
pub const SECRET_GPA: u64 = PAGE_SIZE + 0x100;

pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (MEM_PAGES * PAGE_SIZE) as usize)])
        .unwrap()
}

/// What the guest owner's tooling and the guest's boot loader do: put the image in memory, seal
/// pages 0..2 into an ESM blob, place the blob and an FDT.
pub fn prepare_guest_image(mem: &GuestMemoryMmap) {
    mem.write_slice(SECRET, GuestAddress(SECRET_GPA)).unwrap();
    mem.write_slice(&FDT_MAGIC.to_be_bytes(), GuestAddress(FDT_GPA))
        .unwrap();
    let blob = EsmBlob::seal(
        &UvKey::from_bytes(KEY),
        &[EsmRegion {
            gpa: 0,
            len: 2 * PAGE_SIZE,
        }],
        |gpa, buf| mem.read_slice(buf, GuestAddress(gpa)),
    )
    .unwrap();
    mem.write_slice(&blob.to_bytes(), GuestAddress(ESM_GPA))
        .unwrap();
}

pub fn config() -> SimConfig {
    SimConfig::new(UvKey::from_bytes(KEY))
}

/// A simulator over a prepared image, capability enabled.
pub fn enabled_sim() -> (GuestMemoryMmap, SimUltravisor) {
    let mem = memory();
    prepare_guest_image(&mem);
    let mut sim = SimUltravisor::new(config(), &mem).unwrap();
    sim.kvm_enable_cap().unwrap();
    (mem, sim)
}

/// A secure guest.
pub fn secure_sim() -> (GuestMemoryMmap, SimUltravisor) {
    let (mem, mut sim) = enabled_sim();
    assert_eq!(sim.uv_esm(ESM_GPA, FDT_GPA), 0);
    (mem, sim)
}

pub fn raw(mem: &GuestMemoryMmap, gpa: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    mem.read_slice(&mut b, GuestAddress(gpa)).unwrap();
    b
}

pub fn calls(sim: &SimUltravisor) -> Vec<&'static str> {
    sim.events().map(|e| e.call).collect()
}
