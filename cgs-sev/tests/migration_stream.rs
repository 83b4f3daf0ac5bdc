//! The migration stream: round trip, incremental decoding, and every corruption class giving its
//! typed error.

use cgs_sev::migration::stream::*;
use cgs_sev::migration::vcpu::VcpuState;
use cgs_sev::migration::PacketHeader;

fn layout() -> MemoryLayout {
    MemoryLayout::new(vec![
        MemoryRegion {
            gpa: 0,
            size: 0x4000,
        },
        MemoryRegion {
            gpa: 0x10_0000,
            size: 0x2000,
        },
    ])
    .unwrap()
}

fn records() -> Vec<Record> {
    let mut v = vec![
        Record::Header(StreamHeader {
            policy: 0x1,
            vcpus: 2,
            layout: layout(),
            stream_id: [7; 16],
        }),
        Record::Session(TransportSession {
            pdh_cert: vec![1; 2084],
            session: vec![2; 128],
        }),
        Record::Round(Round { index: 0, pages: 3 }),
        Record::SharedPage(SharedPage {
            gpa: 0,
            data: vec![0xaa; 4096],
        }),
        Record::EncryptedPage(EncryptedPage {
            gpa: 0x1000,
            header: PacketHeader {
                flags: 0,
                iv: [3; 16],
                mac: [4; 32],
            },
            transport: vec![0x55; 4096],
        }),
        Record::EncryptedPage(EncryptedPage {
            gpa: 0x10_1000,
            header: PacketHeader {
                flags: 0,
                iv: [5; 16],
                mac: [6; 32],
            },
            transport: vec![0x66; 4096],
        }),
        Record::Round(Round { index: 1, pages: 1 }),
        Record::SharedPage(SharedPage {
            gpa: 0,
            data: vec![0xbb; 4096],
        }),
        Record::Round(Round { index: 2, pages: 0 }),
        Record::SharedRanges(vec![GpaRange { gpa: 0, pages: 1 }]),
    ];
    for index in 0..2 {
        let mut state = VcpuState::default();
        state.regs.rip = 0x1000 + u64::from(index);
        state.sregs.cr0 = 0x10;
        v.push(Record::Vcpu(Box::new(VcpuRecord { index, state })));
    }
    v
}

fn encode(recs: &[Record]) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new()).unwrap();
    for r in recs {
        enc.write(r).unwrap();
    }
    enc.finish().unwrap()
}

/// Byte offset of record `n` (0 = header) in `bytes`.
fn record_offset(bytes: &[u8], n: usize) -> usize {
    let mut off = PREAMBLE_LEN;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
        off += FRAME_HEADER_LEN + len;
    }
    off
}

fn record_bytes(bytes: &[u8], n: usize) -> std::ops::Range<usize> {
    record_offset(bytes, n)..record_offset(bytes, n + 1)
}

#[test]
fn round_trip_in_one_piece_and_byte_by_byte() {
    let recs = records();
    let bytes = encode(&recs);
    let back = decode_all(&bytes).unwrap();
    assert_eq!(back.len(), recs.len() + 1);
    assert_eq!(&back[..recs.len()], &recs[..]);
    let Record::Finish(f) = back[recs.len()] else {
        panic!("last record is not finish")
    };
    assert_eq!(f.records as usize, recs.len());

    let mut d = Decoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        d.feed(std::slice::from_ref(b));
        while let Some(r) = d.next_record().unwrap() {
            got.push(r);
        }
    }
    d.end().unwrap();
    assert!(d.is_done());
    assert_eq!(got, back);
}

#[test]
fn every_truncation_is_truncated() {
    let bytes = encode(&records());
    for cut in [
        0,
        5,
        PREAMBLE_LEN,
        PREAMBLE_LEN + 3,
        record_offset(&bytes, 3) + 100,
        record_offset(&bytes, 12),
        bytes.len() - 1,
    ] {
        let err = decode_all(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, StreamError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn bit_flips_are_refused() {
    let bytes = encode(&records());
    // A flipped bit inside page data is only visible to the checksum.
    let mut b = bytes.clone();
    b[record_offset(&bytes, 3) + FRAME_HEADER_LEN + 8 + 100] ^= 0x10;
    assert_eq!(decode_all(&b).unwrap_err(), StreamError::ChecksumMismatch);
    // A flipped checksum byte.
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert_eq!(decode_all(&b).unwrap_err(), StreamError::ChecksumMismatch);
    // Every single-bit flip anywhere gives an error, never a panic and never success.
    for pos in (0..bytes.len()).step_by(97) {
        let mut b = bytes.clone();
        b[pos] ^= 0x01;
        assert!(decode_all(&b).is_err(), "flip at {pos} accepted");
    }
}

#[test]
fn reordered_and_replayed_records() {
    let bytes = encode(&records());
    // Swap records 3 and 4 (two pages of round 0).
    let (r3, r4) = (record_bytes(&bytes, 3), record_bytes(&bytes, 4));
    let mut b = bytes[..r3.start].to_vec();
    b.extend_from_slice(&bytes[r4.clone()]);
    b.extend_from_slice(&bytes[r3.clone()]);
    b.extend_from_slice(&bytes[r4.end..]);
    assert_eq!(
        decode_all(&b).unwrap_err(),
        StreamError::Reordered {
            seq: 4,
            expected: 3
        }
    );
    // Replay record 3 after itself.
    let mut b = bytes[..r4.start].to_vec();
    b.extend_from_slice(&bytes[r3.clone()]);
    b.extend_from_slice(&bytes[r4.start..]);
    assert_eq!(
        decode_all(&b).unwrap_err(),
        StreamError::Replayed {
            seq: 3,
            expected: 4
        }
    );
    // Drop record 3.
    let mut b = bytes[..r3.start].to_vec();
    b.extend_from_slice(&bytes[r4.start..]);
    assert!(matches!(
        decode_all(&b).unwrap_err(),
        StreamError::Reordered { .. }
    ));
}

#[test]
fn rewritten_sequence_numbers_are_still_caught() {
    // An attacker who renumbers a replayed page still breaks the stream's structure or checksum.
    let recs = records();
    let mut dup = recs.clone();
    dup.insert(4, recs[3].clone());
    let mut enc = Encoder::new(Vec::new()).unwrap();
    for r in &dup[..4] {
        enc.write(r).unwrap();
    }
    let err = enc.write(&dup[4]).unwrap_err();
    assert!(matches!(
        err,
        EncodeError::Stream(StreamError::Malformed { .. })
    ));
}

#[test]
fn wrong_version_and_magic() {
    let bytes = encode(&records());
    let mut b = bytes.clone();
    b[8] = 2;
    assert_eq!(
        decode_all(&b).unwrap_err(),
        StreamError::UnsupportedVersion {
            found: 2,
            supported: STREAM_VERSION
        }
    );
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(decode_all(&b).unwrap_err(), StreamError::BadMagic);
    // The magic is refused from its first byte, before the preamble is complete.
    let mut d = Decoder::new();
    d.feed(b"X");
    assert_eq!(d.next_record().unwrap_err(), StreamError::BadMagic);
    // And the decoder stays poisoned.
    d.feed(&bytes);
    assert_eq!(d.next_record().unwrap_err(), StreamError::BadMagic);
}

#[test]
fn structural_errors_are_typed() {
    let bytes = encode(&records());
    // Unknown tag.
    let mut b = bytes.clone();
    b[record_offset(&bytes, 2)] = 0x7f;
    assert_eq!(
        decode_all(&b).unwrap_err(),
        StreamError::UnknownRecord { tag: 0x7f, seq: 2 }
    );
    // Oversized length.
    let mut b = bytes.clone();
    let o = record_offset(&bytes, 2);
    b[o + 8..o + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_all(&b).unwrap_err(),
        StreamError::RecordTooLarge { .. }
    ));
    // A page record where the session belongs.
    let mut b = bytes.clone();
    b[record_offset(&bytes, 1)] = 4;
    assert!(decode_all(&b).is_err());
    // Trailing garbage after finish.
    let mut b = bytes.clone();
    b.push(0);
    assert_eq!(
        decode_all(&b).unwrap_err(),
        StreamError::TrailingData {
            at: bytes.len() as u64
        }
    );
    // Two streams back to back.
    let mut b = bytes.clone();
    b.extend_from_slice(&bytes);
    assert!(matches!(
        decode_all(&b).unwrap_err(),
        StreamError::TrailingData { .. }
    ));
}

#[test]
fn semantic_errors_are_typed() {
    let base = records();
    let bad = |idx: usize, rec: Record| {
        let mut v = base.clone();
        v[idx] = rec;
        let mut enc = Encoder::new(Vec::new()).unwrap();
        let mut res = Ok(());
        for r in &v {
            if let Err(e) = enc.write(r) {
                res = Err(e);
                break;
            }
        }
        match res {
            Err(EncodeError::Stream(e)) => e,
            other => panic!("record {idx} accepted: {other:?}"),
        }
    };
    let page = |gpa| {
        Record::SharedPage(SharedPage {
            gpa,
            data: vec![0; 4096],
        })
    };
    // Outside memory, unaligned, duplicate in a round.
    assert!(matches!(
        bad(3, page(0x8000)),
        StreamError::Malformed { .. }
    ));
    assert!(matches!(bad(3, page(0x10)), StreamError::Malformed { .. }));
    assert!(matches!(bad(4, page(0)), StreamError::Malformed { .. }));
    // Round numbers must not skip.
    assert!(matches!(
        bad(6, Record::Round(Round { index: 5, pages: 1 })),
        StreamError::Malformed { .. }
    ));
    // A round with more pages than the guest has.
    assert!(matches!(
        bad(2, Record::Round(Round { index: 0, pages: 7 })),
        StreamError::Malformed { .. }
    ));
    // Shared ranges outside memory or overlapping.
    assert!(matches!(
        bad(
            9,
            Record::SharedRanges(vec![GpaRange {
                gpa: 0x3000,
                pages: 2
            }])
        ),
        StreamError::Malformed { .. }
    ));
    assert!(matches!(
        bad(
            9,
            Record::SharedRanges(vec![
                GpaRange { gpa: 0, pages: 2 },
                GpaRange {
                    gpa: 0x1000,
                    pages: 1
                }
            ])
        ),
        StreamError::Malformed { .. }
    ));
    // vCPUs out of order.
    let mut st = VcpuState::default();
    st.regs.rip = 1;
    assert!(matches!(
        bad(
            10,
            Record::Vcpu(Box::new(VcpuRecord {
                index: 1,
                state: st
            }))
        ),
        StreamError::Malformed { .. }
    ));
    // Short page, wrong session length.
    assert!(matches!(
        bad(
            3,
            Record::SharedPage(SharedPage {
                gpa: 0,
                data: vec![0; 100]
            })
        ),
        StreamError::Malformed { .. }
    ));
    assert!(matches!(
        bad(
            1,
            Record::Session(TransportSession {
                pdh_cert: vec![],
                session: vec![0; 128]
            })
        ),
        StreamError::Malformed { .. }
    ));
    // Shared ranges before any round.
    assert!(matches!(
        bad(2, Record::SharedRanges(vec![])),
        StreamError::UnexpectedRecord { .. }
    ));
}

#[test]
fn header_checks() {
    assert!(MemoryLayout::new(vec![]).is_err());
    assert!(MemoryLayout::new(vec![MemoryRegion { gpa: 0, size: 0 }]).is_err());
    assert!(MemoryLayout::new(vec![MemoryRegion {
        gpa: 0x800,
        size: 0x1000
    }])
    .is_err());
    assert!(MemoryLayout::new(vec![MemoryRegion {
        gpa: !0xfffu64,
        size: 0x2000
    }])
    .is_err());
    assert!(MemoryLayout::new(vec![
        MemoryRegion {
            gpa: 0x2000,
            size: 0x1000
        },
        MemoryRegion {
            gpa: 0x1000,
            size: 0x2000
        }
    ])
    .is_err());
    let l = layout();
    assert_eq!(l.pages(), 6);
    assert_eq!(l.page_index(0x10_1000), Some(5));
    assert_eq!(l.page_index(0x4000), None);
    assert!(l.contains_range(0x1000, 3));
    assert!(!l.contains_range(0x1000, 4));
    assert_eq!(l.page_gpas().count(), 6);

    // A header with a zero vCPU count or an SEV-ES flavour is refused by the decoder.
    let bytes = encode(&records());
    let o = record_offset(&bytes, 0) + FRAME_HEADER_LEN;
    let mut b = bytes.clone();
    b[o + 8..o + 12].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        decode_all(&b).unwrap_err(),
        StreamError::Malformed {
            record: "header",
            ..
        }
    ));
    let mut b = bytes.clone();
    b[o + 4] = 1;
    assert!(matches!(
        decode_all(&b).unwrap_err(),
        StreamError::Malformed {
            record: "header",
            ..
        }
    ));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A random valid stream: 1–3 regions of 1–4 pages, 1–3 rounds of distinct pages (each
    /// shared or encrypted with random bytes), random shared ranges, 1–3 vCPUs.
    fn stream() -> impl Strategy<Value = Vec<Record>> {
        (
            prop::collection::vec(1u64..=4, 1..=3),
            1u32..=3,
            prop::collection::vec(
                prop::collection::vec((any::<bool>(), any::<u8>()), 0..6),
                1..=3,
            ),
            any::<u64>(),
        )
            .prop_map(|(sizes, vcpus, rounds, seed)| {
                let mut regions = Vec::new();
                let mut gpa = 0;
                for s in sizes {
                    regions.push(MemoryRegion {
                        gpa,
                        size: s * 4096,
                    });
                    gpa += s * 4096 + 0x10000;
                }
                let layout = MemoryLayout::new(regions).unwrap();
                let gpas: Vec<u64> = layout.page_gpas().collect();
                let mut recs = vec![
                    Record::Header(StreamHeader {
                        policy: seed as u32,
                        vcpus,
                        layout: layout.clone(),
                        stream_id: [seed as u8; 16],
                    }),
                    Record::Session(TransportSession {
                        pdh_cert: vec![1; 2084],
                        session: vec![2; 128],
                    }),
                ];
                for (index, pages) in rounds.iter().enumerate() {
                    let pages: Vec<_> = pages
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i < gpas.len())
                        .collect();
                    recs.push(Record::Round(Round {
                        index: index as u32,
                        pages: pages.len() as u32,
                    }));
                    for (i, (shared, fill)) in pages {
                        let gpa = gpas[(i + index) % gpas.len()];
                        recs.push(if *shared {
                            Record::SharedPage(SharedPage {
                                gpa,
                                data: vec![*fill; 4096],
                            })
                        } else {
                            Record::EncryptedPage(EncryptedPage {
                                gpa,
                                header: PacketHeader {
                                    flags: 0,
                                    iv: [*fill; 16],
                                    mac: [!*fill; 32],
                                },
                                transport: vec![fill.wrapping_add(1); 4096],
                            })
                        });
                    }
                }
                let first = layout.regions()[0];
                recs.push(Record::SharedRanges(if seed % 2 == 0 {
                    vec![GpaRange {
                        gpa: first.gpa,
                        pages: first.size / 4096,
                    }]
                } else {
                    vec![]
                }));
                for index in 0..vcpus {
                    let mut state = VcpuState::default();
                    state.regs.rip = seed.rotate_left(index);
                    state.sregs.cs.selector = index as u16;
                    recs.push(Record::Vcpu(Box::new(VcpuRecord { index, state })));
                }
                recs
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn random_streams_round_trip_and_every_cut_is_truncated(recs in stream(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&recs);
            let back = decode_all(&bytes).unwrap();
            prop_assert_eq!(&back[..recs.len()], &recs[..]);
            let at = cut.index(bytes.len());
            let truncated = matches!(decode_all(&bytes[..at]), Err(StreamError::Truncated { .. }));
            prop_assert!(truncated);
        }
    }
}
