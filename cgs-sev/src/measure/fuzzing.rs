//! Fuzz-target bodies for the measurement library's untrusted inputs (OVMF images, kernel-hashes
//! tables, VMSA pages and builder inputs, ID blocks and ID auth). Each panics only when an
//! invariant breaks; errors are fine. The cargo-fuzz targets `measure_*` call these, and
//! examples/tests/fuzz_corpus.rs runs them over fuzz/corpus on stable.

use super::cpu::CpuSignature;
use super::digest::{self, LaunchInputs};
use super::hashes::KernelHashes;
use super::idblock::{decode_public_key, IdAuth, IdBlock, ID_AUTH_SIZE, ID_BLOCK_SIZE};
use super::ovmf::OvmfImage;
use super::vmm::{VmmPreset, VmmType};
use super::vmsa::{VcpuRole, VcpuState, VmsaBuilder, VMSA_SIZE};

/// Pages of metadata sections the OVMF body still digests (keeps each input fast).
const MAX_SECTION_PAGES: u64 = 256;

/// Whether `data` is in the 1-in-`n` sample that gets the expensive checks (full digests, ECDSA
/// verification): FNV-1a of the input, so the choice is deterministic per input. Keeps the
/// stable corpus run (debug build, thousands of inputs) fast while fuzzers still reach them.
fn sampled(data: &[u8], n: u64) -> bool {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.is_multiple_of(n)
}

/// OVMF images: parse, then every digest; the footer and metadata must stay inside the image.
#[allow(clippy::panic)]
pub fn fuzz_ovmf(data: &[u8]) {
    let Ok(ovmf) = OvmfImage::parse(data) else {
        return;
    };
    if ovmf.metadata_sections().len() > data.len() / 12 {
        panic!("more sections than the image can hold");
    }
    for (_, entry) in ovmf.table() {
        if entry.len() > data.len() {
            panic!("table entry longer than the image");
        }
    }
    let _ = ovmf.sev_es_reset_eip();
    let _ = ovmf.sev_hashes_table();
    let _ = ovmf.sev_secret_block();
    let pages: u64 = ovmf
        .metadata_sections()
        .iter()
        .map(|s| u64::from(s.size) / 4096)
        .sum();
    if pages > MAX_SECTION_PAGES || !sampled(data, 8) {
        return;
    }
    let k = KernelHashes::from_contents(b"k", None, Some(b"c"));
    let _ = digest::sev_launch_digest(&ovmf, Some(&k));
    let vmm = [VmmType::Qemu, VmmType::Ec2, VmmType::Gce][data.len() % 3];
    let inputs = LaunchInputs {
        vmm: vmm.preset(),
        kernel_hashes: Some(k),
        ..LaunchInputs::qemu(2, CpuSignature(0x00A0_0F11))
    };
    let _ = digest::snp_launch_digest(&ovmf, &inputs);
    let _ = digest::seves_launch_digest(&ovmf, &inputs);
    // The same bytes as a Coconut-SVSM image below this "OVMF".
    if let Ok(end) = digest::svsm_end(&ovmf, 0x2000) {
        if let Ok(svsm) = OvmfImage::parse_at(data, end) {
            let _ = digest::snp_svsm_launch_digest(&ovmf, &svsm, &inputs);
        }
    }
    // A precomputed OVMF hash must give the same digest as hashing the image.
    let plain = LaunchInputs::qemu(1, CpuSignature(0x0080_0F12));
    if let (Ok(seed), Ok(full)) = (
        digest::snp_ovmf_hash(&ovmf),
        digest::snp_launch_digest(&ovmf, &plain),
    ) {
        let seeded = LaunchInputs {
            ovmf_hash: Some(seed),
            ..plain
        };
        if digest::snp_launch_digest(&ovmf, &seeded) != Ok(full) {
            panic!("seeded and full SNP digests differ");
        }
    }
}

/// Kernel-hashes tables: a parsed table re-encodes to the same 168 bytes, and placement checks
/// hold for any offset.
#[allow(clippy::panic)]
pub fn fuzz_kernel_hashes(data: &[u8]) {
    if let Ok(h) = KernelHashes::parse_table(data) {
        let t = h.table();
        if t[..168] != data[..168] {
            panic!("kernel hashes table does not round-trip");
        }
        if KernelHashes::parse_table(&t) != Ok(h) {
            panic!("re-encoded table does not parse back");
        }
    }
    let offset = data
        .get(..2)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let h = KernelHashes::from_contents(data, Some(data), Some(data));
    if let Ok(region) = h.region(offset, 4096) {
        if region.len() != 4096 || region[offset..offset + 176] != h.table() {
            panic!("kernel hashes region misplaced");
        }
    }
}

/// VMSA pages and builder inputs: a parsed page re-encodes to the same bytes, and any builder
/// state survives `to_vmsa` → `from_vmsa`.
#[allow(clippy::panic)]
pub fn fuzz_vmsa(data: &[u8]) {
    if let Ok(s) = VcpuState::from_vmsa(data, VcpuRole::Bsp) {
        if s.to_vmsa().as_bytes()[..] != data[..VMSA_SIZE] {
            panic!("VMSA does not round-trip");
        }
        #[cfg(target_arch = "x86_64")]
        {
            let _ = (s.to_kvm_regs(), s.to_kvm_sregs(), s.to_kvm_fpu());
            let _ = (s.to_kvm_xcrs(), s.to_kvm_debugregs(), s.kvm_msr_entries());
        }
    }
    let word = |i: usize| {
        data.get(i * 8..i * 8 + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let presets = [
        VmmPreset::QEMU,
        VmmPreset::QEMU_LEGACY_INIT,
        VmmPreset::EC2,
        VmmPreset::EC2_BEFORE_2026,
        VmmPreset::GCE,
    ];
    let mut b = VmsaBuilder::new(presets[(word(0) % presets.len() as u64) as usize])
        .sev_features(word(1))
        .ap_reset_eip(word(2) as u32);
    if word(3) & 1 == 1 {
        b = b.signature(CpuSignature((word(3) >> 32) as u32));
    }
    for i in 0..2 {
        if let Ok(s) = b.vcpu(i) {
            let page = s.to_vmsa();
            match VcpuState::from_vmsa(page.as_bytes(), s.role) {
                Ok(back) if back == s => {}
                other => panic!("builder state does not round-trip: {s:?} -> {other:?}"),
            }
        }
    }
}

/// ID blocks and ID auth: a parsed block re-encodes to the same bytes; public-key decoding and
/// signature verification of arbitrary bytes return errors, never panic.
#[allow(clippy::panic)]
pub fn fuzz_idblock(data: &[u8]) {
    if let Some(raw) = data.get(..ID_BLOCK_SIZE) {
        if let Ok(b) = IdBlock::parse(raw) {
            if b.to_bytes()[..] != raw[..] {
                panic!("ID block does not round-trip");
            }
        }
    }
    let rest = data.get(ID_BLOCK_SIZE..).unwrap_or(&[]);
    let _ = decode_public_key(rest.get(..1028).unwrap_or(rest));
    if rest.len() >= ID_AUTH_SIZE && sampled(data, 32) {
        if let (Ok(auth), Some(block)) = (
            IdAuth::from_bytes(&rest[..ID_AUTH_SIZE]),
            data.get(..ID_BLOCK_SIZE),
        ) {
            let _ = auth.verify(block, data[0] & 1 == 1);
        }
    }
}
