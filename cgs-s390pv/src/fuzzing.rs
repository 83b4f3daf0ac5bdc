//! Fuzz-target bodies for cgs-s390pv's untrusted inputs: the SE header and the PV IPL block
//! (both come from the guest). Each panics only when an invariant breaks.

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
