//! Property tests of the measurement encoders and parsers (modest case counts).

use cgs_sev::measure::hashes::KernelHashes;
use cgs_sev::measure::idblock::IdBlock;
use cgs_sev::measure::vmsa::{Segment, VcpuRole, VcpuState};
use cgs_sev::measure::{CpuSignature, OvmfImage, VmmPreset, VmsaBuilder};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signature_encoding_round_trips(f in 0u32..=0x10E, m in 0u32..=0xFF, s in 0u32..=0xF) {
        let sig = CpuSignature::from_fms(f, m, s).unwrap();
        prop_assert_eq!((sig.family(), sig.model(), sig.stepping()), (f, m, s));
    }

    #[test]
    fn kvm_segments_round_trip(sel: u16, attrib in 0u16..0x1000, limit: u32, base: u64) {
        let seg = Segment { selector: sel, attrib: attrib | 0x80, limit, base };
        prop_assert_eq!(Segment::from_kvm_segment(&seg.to_kvm_segment()), seg);
    }

    #[test]
    fn builder_states_round_trip_through_the_vmsa(
        preset in 0usize..5, features: u64, eip in 1u32.., sig: u32, ap: bool,
    ) {
        let presets = [VmmPreset::QEMU, VmmPreset::QEMU_LEGACY_INIT, VmmPreset::EC2,
                       VmmPreset::EC2_BEFORE_2026, VmmPreset::GCE];
        let b = VmsaBuilder::new(presets[preset])
            .signature(CpuSignature(sig))
            .sev_features(features)
            .ap_reset_eip(eip);
        let s = b.vcpu(u32::from(ap)).unwrap();
        let role = if ap { VcpuRole::Ap } else { VcpuRole::Bsp };
        prop_assert_eq!(VcpuState::from_vmsa(s.to_vmsa().as_bytes(), role).unwrap(), s);
    }

    #[test]
    fn kernel_hash_tables_round_trip(k: [u8; 32], i: [u8; 32], c: [u8; 32]) {
        let h = KernelHashes::from_hashes(k, i, c);
        prop_assert_eq!(KernelHashes::parse_table(&h.table()).unwrap(), h);
    }

    #[test]
    fn id_blocks_round_trip(ld in proptest::collection::vec(any::<u8>(), 48), svn: u32, policy: u64) {
        let mut b = IdBlock::new(ld.try_into().unwrap());
        b.guest_svn = svn;
        b.policy = policy;
        prop_assert_eq!(IdBlock::parse(&b.to_bytes()).unwrap(), b);
    }

    #[test]
    fn ovmf_parsing_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..600), len in 0usize..5000) {
        // Random footers glued to a real image's table region.
        let real = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/measure/ovmf_debian_code_suffix.bin")).unwrap();
        let mut img = real[..len.min(real.len())].to_vec();
        img.extend_from_slice(&tail);
        let _ = OvmfImage::parse(&img).map(|o| (o.sev_es_reset_eip(), o.sev_hashes_table()));
    }
}
