//! The PV IPL parameter block (IPIB, parameter block type 5) and diag 308's checks on it.
//!
//! The guest (stage3a of a Secure Execution image) hands this block to the hypervisor with
//! diag 308 subcode 8; it names the SE header (address, size) and every encrypted component
//! (tweak prefix, address, size). [`PvIplBlock::parse`] applies QEMU's `iplb_valid_pv` rules:
//! total length between 148 and 4096 bytes, type 5, a header of at most two pages, at least one
//! component, components that fit the block, 4 KiB-aligned addresses and strictly increasing tweak
//! prefixes. Every rejection is a typed [`IplError`] that maps to diag 308's `0x0402`.

use crate::se_header::{be32, be64};

/// `IPL_PBT_PV`: parameter block type of a PV IPIB.
pub const IPL_PBT_PV: u8 = 5;
/// `S390_IPLB_MIN_PV_LEN`.
pub const MIN_PV_LEN: u32 = 148;
/// Largest IPL parameter block (`sizeof(IplParameterBlock)`).
pub const MAX_IPLB_LEN: u32 = 4096;
/// Offset of the component array.
pub const COMPONENTS_OFFSET: usize = 0x88;
/// Size of one component entry.
pub const COMPONENT_LEN: usize = 24;
/// Largest SE header the IPIB may name (`2 * TARGET_PAGE_SIZE`).
pub const MAX_PV_HEADER_LEN: u64 = 2 * 4096;
/// diag 308 response: OK.
pub const DIAG_308_RC_OK: u16 = 0x0001;
/// diag 308 response: invalid IPL block.
pub const DIAG_308_RC_INVALID: u16 = 0x0402;
/// diag 308 response: PV start without a PV IPL block.
pub const DIAG_308_RC_NO_PV_CONF: u16 = 0x0902;
/// diag 308 response: PV start failed.
pub const DIAG_308_RC_INVAL_FOR_PV: u16 = 0x0a02;

/// Why a PV IPL block was refused (diag 308 answers [`DIAG_308_RC_INVALID`] for all of them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IplError {
    /// Fewer bytes than the length field or than the minimum.
    #[error("PV IPL block truncated: {have} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The length field is outside [148, 4096].
    #[error("PV IPL block length {0} outside [{MIN_PV_LEN}, {MAX_IPLB_LEN}]")]
    BadLength(u32),
    /// Not parameter block type 5.
    #[error("IPL block type {0} is not PV ({IPL_PBT_PV})")]
    NotPv(u8),
    /// The SE header is larger than two pages or empty.
    #[error("PV header length {0:#x} invalid (1 ..= {MAX_PV_HEADER_LEN:#x})")]
    HeaderLength(u64),
    /// No component.
    #[error("PV IPL block has no components")]
    NoComponents,
    /// The component array does not fit in the block.
    #[error("{count} components need {need} bytes, the block has {len}")]
    ComponentsOverflow {
        /// Components declared.
        count: u32,
        /// Bytes they need.
        need: u64,
        /// The block length.
        len: u32,
    },
    /// A component address is not 4 KiB aligned.
    #[error("component {index} address {addr:#x} is not 4 KiB aligned")]
    Unaligned {
        /// Component index.
        index: usize,
        /// Its address.
        addr: u64,
    },
    /// Tweak prefixes are not strictly increasing.
    #[error("component {index} tweak prefix {tweak:#x} does not increase")]
    TweakOrder {
        /// Component index.
        index: usize,
        /// Its tweak prefix.
        tweak: u64,
    },
    /// The SE header the block names is not in guest memory.
    #[error("PV header [{addr:#x}, +{len:#x}) is not in guest memory")]
    HeaderNotInMemory {
        /// Header address.
        addr: u64,
        /// Header length.
        len: u64,
    },
    /// A component's range wraps the address space or is empty.
    #[error("component {index} [{addr:#x}, +{size:#x}) is empty or wraps")]
    BadRange {
        /// Component index.
        index: usize,
        /// Its address.
        addr: u64,
        /// Its size.
        size: u64,
    },
}

impl IplError {
    /// The diag 308 response code for this refusal.
    pub fn diag_rc(&self) -> u16 {
        DIAG_308_RC_INVALID
    }
}

/// One encrypted component of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvComponent {
    /// Tweak prefix (bits 63..48 component type, 47..0 random).
    pub tweak_pref: u64,
    /// Guest address (4 KiB aligned).
    pub addr: u64,
    /// Size (page padded by the image builder; QEMU page-aligns it again before UNPACK).
    pub size: u64,
}

impl PvComponent {
    /// Size rounded up to whole 4 KiB pages, as UNPACK receives it.
    pub fn unpack_size(&self) -> u64 {
        self.size.div_ceil(4096).saturating_mul(4096)
    }
}

/// A validated PV IPL parameter block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvIplBlock {
    /// Parameter block version (`hdr.version`, 1).
    pub version: u8,
    /// `pv.version`.
    pub pv_version: u8,
    /// Guest address of the SE header.
    pub pv_header_addr: u64,
    /// Size of the SE header.
    pub pv_header_size: u64,
    /// Components in IPIB order (the order of UNPACK).
    pub components: Vec<PvComponent>,
}

impl PvIplBlock {
    /// Parse and validate a PV IPL block as diag 308 subcode 8 does.
    pub fn parse(bytes: &[u8]) -> Result<PvIplBlock, IplError> {
        if bytes.len() < MIN_PV_LEN as usize {
            return Err(IplError::Truncated {
                have: bytes.len(),
                need: MIN_PV_LEN as usize,
            });
        }
        let len = be32(bytes, 0);
        if !(MIN_PV_LEN..=MAX_IPLB_LEN).contains(&len) {
            return Err(IplError::BadLength(len));
        }
        if bytes.len() < len as usize {
            return Err(IplError::Truncated {
                have: bytes.len(),
                need: len as usize,
            });
        }
        let b = &bytes[..len as usize];
        let pbt = b[0x0C];
        if pbt != IPL_PBT_PV {
            return Err(IplError::NotPv(pbt));
        }
        let pv_header_addr = be64(b, 0x78);
        let pv_header_size = be64(b, 0x80);
        if pv_header_size == 0 || pv_header_size > MAX_PV_HEADER_LEN {
            return Err(IplError::HeaderLength(pv_header_size));
        }
        let count = be32(b, 0x74);
        if count == 0 {
            return Err(IplError::NoComponents);
        }
        let need = COMPONENTS_OFFSET as u64 + COMPONENT_LEN as u64 * u64::from(count);
        if need > u64::from(len) {
            return Err(IplError::ComponentsOverflow { count, need, len });
        }
        let mut components = Vec::with_capacity(count as usize);
        for index in 0..count as usize {
            let o = COMPONENTS_OFFSET + COMPONENT_LEN * index;
            let c = PvComponent {
                tweak_pref: be64(b, o),
                addr: be64(b, o + 8),
                size: be64(b, o + 16),
            };
            if c.addr % 4096 != 0 {
                return Err(IplError::Unaligned {
                    index,
                    addr: c.addr,
                });
            }
            if c.size == 0
                || c.addr.checked_add(c.unpack_size()).is_none()
                || c.size > u64::MAX - 4095
            {
                return Err(IplError::BadRange {
                    index,
                    addr: c.addr,
                    size: c.size,
                });
            }
            if let Some(prev) = components.last().map(|p: &PvComponent| p.tweak_pref) {
                if c.tweak_pref <= prev {
                    return Err(IplError::TweakOrder {
                        index,
                        tweak: c.tweak_pref,
                    });
                }
            }
            components.push(c);
        }
        Ok(PvIplBlock {
            version: b[0x07],
            pv_version: b[0x6F],
            pv_header_addr,
            pv_header_size,
            components,
        })
    }

    /// Encode the block with pvimg's exact size (`136 + 24 n`).
    pub fn encode(&self) -> Vec<u8> {
        let n = self.components.len();
        let len = COMPONENTS_OFFSET + COMPONENT_LEN * n;
        let mut b = vec![0u8; len];
        b[0..4].copy_from_slice(&(len as u32).to_be_bytes());
        b[0x07] = self.version;
        b[0x08..0x0C].copy_from_slice(&((len - 8) as u32).to_be_bytes());
        b[0x0C] = IPL_PBT_PV;
        b[0x6F] = self.pv_version;
        b[0x74..0x78].copy_from_slice(&(n as u32).to_be_bytes());
        b[0x78..0x80].copy_from_slice(&self.pv_header_addr.to_be_bytes());
        b[0x80..0x88].copy_from_slice(&self.pv_header_size.to_be_bytes());
        for (i, c) in self.components.iter().enumerate() {
            let o = COMPONENTS_OFFSET + COMPONENT_LEN * i;
            b[o..o + 8].copy_from_slice(&c.tweak_pref.to_be_bytes());
            b[o + 8..o + 16].copy_from_slice(&c.addr.to_be_bytes());
            b[o + 16..o + 24].copy_from_slice(&c.size.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PvIplBlock {
        PvIplBlock {
            version: 1,
            pv_version: 1,
            pv_header_addr: 0x8_0000,
            pv_header_size: 0x280,
            components: vec![
                PvComponent {
                    tweak_pref: 0x0028_0000_0000_1234,
                    addr: 0x1_0000,
                    size: 0x3000,
                },
                PvComponent {
                    tweak_pref: 0x0046_0000_0000_0001,
                    addr: 0x2_0000,
                    size: 0x1000,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let b = s.encode();
        assert_eq!(b.len(), 136 + 48);
        assert_eq!(PvIplBlock::parse(&b).unwrap(), s);
        // C genprotimg pads the block to 4096 bytes; that parses too.
        let mut padded = b.clone();
        padded.resize(4096, 0);
        padded[0..4].copy_from_slice(&4096u32.to_be_bytes());
        assert_eq!(PvIplBlock::parse(&padded).unwrap(), s);
    }

    #[test]
    fn qemu_rules_are_enforced() {
        let good = sample().encode();
        let set32 = |o: usize, v: u32| {
            let mut b = good.clone();
            b[o..o + 4].copy_from_slice(&v.to_be_bytes());
            b
        };
        let set64 = |o: usize, v: u64| {
            let mut b = good.clone();
            b[o..o + 8].copy_from_slice(&v.to_be_bytes());
            b
        };
        assert!(matches!(
            PvIplBlock::parse(&good[..100]),
            Err(IplError::Truncated { .. })
        ));
        assert_eq!(
            PvIplBlock::parse(&set32(0, 147)),
            Err(IplError::BadLength(147))
        );
        assert_eq!(
            PvIplBlock::parse(&set32(0, 4097)),
            Err(IplError::BadLength(4097))
        );
        assert!(matches!(
            PvIplBlock::parse(&set32(0, 400)),
            Err(IplError::Truncated { .. })
        ));
        let mut b = good.clone();
        b[0x0C] = 2;
        assert_eq!(PvIplBlock::parse(&b), Err(IplError::NotPv(2)));
        assert_eq!(
            PvIplBlock::parse(&set64(0x80, 0x2001)),
            Err(IplError::HeaderLength(0x2001))
        );
        assert_eq!(
            PvIplBlock::parse(&set64(0x80, 0)),
            Err(IplError::HeaderLength(0))
        );
        assert_eq!(
            PvIplBlock::parse(&set32(0x74, 0)),
            Err(IplError::NoComponents)
        );
        assert!(matches!(
            PvIplBlock::parse(&set32(0x74, 3)),
            Err(IplError::ComponentsOverflow { count: 3, .. })
        ));
        assert!(matches!(
            PvIplBlock::parse(&set32(0x74, u32::MAX)),
            Err(IplError::ComponentsOverflow { .. })
        ));
        assert_eq!(
            PvIplBlock::parse(&set64(0x88 + 24 + 8, 0x2_0800)),
            Err(IplError::Unaligned {
                index: 1,
                addr: 0x2_0800
            })
        );
        assert_eq!(
            PvIplBlock::parse(&set64(0x88 + 24, 0x0028_0000_0000_1234)),
            Err(IplError::TweakOrder {
                index: 1,
                tweak: 0x0028_0000_0000_1234
            })
        );
        assert!(matches!(
            PvIplBlock::parse(&set64(0x88 + 16, 0)),
            Err(IplError::BadRange { index: 0, .. })
        ));
        assert!(matches!(
            PvIplBlock::parse(&set64(0x88 + 8, 0xFFFF_FFFF_FFFF_F000)),
            Err(IplError::BadRange { index: 0, .. })
        ));
        assert_eq!(IplError::NoComponents.diag_rc(), 0x0402);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn valid_blocks_round_trip(
            n in 1usize..8,
            base in 0u64..1 << 40,
            hdr in 1u64..=MAX_PV_HEADER_LEN,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let components = (0..n)
                .map(|i| PvComponent {
                    tweak_pref: (seed >> 8) + i as u64,
                    addr: (base + i as u64 * 0x10_0000) & !0xfff,
                    size: 0x1000 * (i as u64 + 1),
                })
                .collect();
            let b = PvIplBlock {
                version: 1,
                pv_version: (seed & 1) as u8,
                pv_header_addr: seed,
                pv_header_size: hdr,
                components,
            };
            proptest::prop_assert_eq!(PvIplBlock::parse(&b.encode()), Ok(b));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = PvIplBlock::parse(&data);
        }
    }

    #[test]
    fn unpack_size_is_page_aligned() {
        let c = PvComponent {
            tweak_pref: 1,
            addr: 0,
            size: 4097,
        };
        assert_eq!(c.unpack_size(), 8192);
    }
}
