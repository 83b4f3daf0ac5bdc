//! Fuzz-target bodies for cgs-s390pv's untrusted inputs: the SE header and the PV IPL block
//! (both come from the guest), and the PV life cycle under arbitrary call orders
//! ([`lifecycle`], stateful). Each panics only when an invariant breaks.

pub mod lifecycle;

pub use lifecycle::{fuzz_lifecycle, seeds_lifecycle};

use crate::ipl::PvIplBlock;
use crate::se_header::SeHeader;

/// SE header bytes: parse must not panic; an accepted header re-encodes to the same bytes.
#[allow(clippy::panic)]
pub fn fuzz_se_header(data: &[u8]) {
    if let Ok(h) = SeHeader::parse(data) {
        let again = h.encode();
        if again != data {
            panic!("SE header re-encoding differs");
        }
        if h.len() != data.len() || h.key_slots.is_empty() {
            panic!("accepted SE header with inconsistent size or no key slots");
        }
    }
}

/// PV IPL block bytes: parse must not panic; an accepted block satisfies QEMU's rules and
/// re-parses to itself after encoding.
#[allow(clippy::panic)]
pub fn fuzz_pv_ipl_block(data: &[u8]) {
    if let Ok(b) = PvIplBlock::parse(data) {
        if b.components.is_empty() {
            panic!("accepted PV IPL block without components");
        }
        for w in b.components.windows(2) {
            if w[0].tweak_pref >= w[1].tweak_pref {
                panic!("accepted non-increasing tweaks");
            }
        }
        if b.components.iter().any(|c| c.addr % 4096 != 0) {
            panic!("accepted an unaligned component");
        }
        match PvIplBlock::parse(&b.encode()) {
            Ok(again) if again == b => {}
            other => panic!("PV IPL block round-trip failed: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ComponentKind, ImageBuilder};
    use crate::uv::sim::SimConfig;

    #[test]
    fn bodies_over_builder_output_and_mutations() {
        let img = ImageBuilder::new(vec![SimConfig::random().host_key.public_key()], 0x8_0000)
            .component(ComponentKind::Kernel, 0x1_0000, vec![1; 100])
            .component(ComponentKind::Stage3b, 0x2_0000, vec![2; 100])
            .build()
            .unwrap();
        let seeds = [img.header.clone(), img.ipib.encode()];
        // The unmutated inputs are accepted.
        assert!(SeHeader::parse(&seeds[0]).is_ok());
        assert!(PvIplBlock::parse(&seeds[1]).is_ok());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..3000 {
            let mut input = seeds[i % 2].clone();
            for _ in 0..(1 + i % 4) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pos = (x as usize >> 4) % input.len().max(1);
                match x % 4 {
                    0 if !input.is_empty() => input[pos] ^= 1 << ((x >> 40) % 8),
                    1 => input.truncate(pos),
                    2 if !input.is_empty() => input[pos] = (x >> 24) as u8,
                    _ => input.insert(pos, (x >> 32) as u8),
                }
            }
            fuzz_se_header(&input);
            fuzz_pv_ipl_block(&input);
        }
    }
}
