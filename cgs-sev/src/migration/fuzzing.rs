//! Fuzz-target bodies for the migration stream decoder and the transport packet header.
//!
//! Each function takes arbitrary bytes and panics only when an invariant breaks: the cargo-fuzz
//! targets `sev_migration_stream` and `sev_packet_header` call them, and a stable test runs them
//! over the checked-in corpus (`fuzz/corpus/<target>`).

use super::stream::VcpuRecord;
use super::stream::{decode_all, Decoder, Encoder, GpaRange, MemoryLayout, MemoryRegion, Record};
use super::stream::{
    EncryptedPage, Round, SharedPage, StreamError, StreamHeader, TransportSession,
};
use super::vcpu::VcpuState;
use crate::session::PACKET_HEADER_LEN;
use crate::session::{open_packet, seal_packet, PacketContext, PacketHeader, TransportKeys};

fn decode_in_chunks(data: &[u8]) -> Result<Vec<Record>, StreamError> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        // Chunk sizes from the input itself, 1..=4096 bytes.
        let n = (usize::from(rest[0]) * 16 + i % 7 + 1).min(rest.len());
        i += 1;
        d.feed(&rest[..n]);
        rest = &rest[n..];
        while let Some(r) = d.next_record()? {
            out.push(r);
        }
    }
    d.end()?;
    Ok(out)
}

/// The migration stream decoder: whole-buffer and incremental decoding agree exactly (records or
/// error), and an accepted stream re-encodes to the same bytes.
#[allow(clippy::panic)]
pub fn fuzz_migration_stream(data: &[u8]) {
    let whole = decode_all(data);
    let chunked = decode_in_chunks(data);
    if whole != chunked {
        panic!("whole-buffer {whole:?} and incremental {chunked:?} decoding disagree");
    }
    let Ok(recs) = whole else {
        return;
    };
    let Some((Record::Finish(_), body)) = recs.split_last() else {
        panic!("an accepted stream does not end with its finish record");
    };
    let mut enc = match Encoder::new(Vec::new()) {
        Ok(e) => e,
        Err(e) => panic!("encoder: {e}"),
    };
    for r in body {
        if let Err(e) = enc.write(r) {
            panic!("a decoded record does not re-encode: {e}");
        }
    }
    match enc.finish() {
        Ok(bytes) if bytes == data => {}
        Ok(_) => panic!("re-encoding an accepted stream gives different bytes"),
        Err(e) => panic!("finish: {e}"),
    }
}

/// The packet header and a RECEIVE_UPDATE_DATA-style open of the rest of the input under fixed
/// keys: parsing is exact, opening never panics, and only a packet sealed with the keys opens.
#[allow(clippy::panic)]
pub fn fuzz_packet_header(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(PACKET_HEADER_LEN));
    let Ok(header) = PacketHeader::from_bytes(head) else {
        if head.len() == PACKET_HEADER_LEN {
            panic!("a 52-byte header was refused");
        }
        return;
    };
    if header.to_bytes()[..] != *head {
        panic!("packet header does not round-trip");
    }
    let keys = TransportKeys::new([0x11; 16], [0x22; 16]);
    if let Ok(plain) = open_packet(&keys, PacketContext::Data, &header, rest, &[]) {
        match seal_packet(&keys, PacketContext::Data, header.iv, &plain, &[]) {
            Ok((h, ct)) if h == header && ct == rest => {}
            _ => panic!("an opened packet does not re-seal to itself"),
        }
    }
}

/// A small, valid stream (two regions, two rounds, a shared and an encrypted page, two vCPUs),
/// the seed of the stream corpus.
pub fn sample_stream() -> Vec<u8> {
    let keys = TransportKeys::new([0x11; 16], [0x22; 16]);
    let layout = MemoryLayout::new(vec![
        MemoryRegion {
            gpa: 0,
            size: 0x1000,
        },
        MemoryRegion {
            gpa: 0x10000,
            size: 0x1000,
        },
    ]);
    let Ok(layout) = layout else {
        return Vec::new();
    };
    let page = |gpa: u64, fill: u8| -> Option<Record> {
        let (header, transport) =
            seal_packet(&keys, PacketContext::Data, [fill; 16], &[fill; 4096], &[]).ok()?;
        Some(Record::EncryptedPage(EncryptedPage {
            gpa,
            header,
            transport,
        }))
    };
    let mut state = VcpuState::default();
    state.regs.rip = 0x1015;
    state.regs.rflags = 2;
    let Some(p1) = page(0x10000, 1) else {
        return Vec::new();
    };
    let recs = vec![
        Record::Header(StreamHeader {
            policy: 1,
            vcpus: 2,
            layout,
            stream_id: [9; 16],
        }),
        Record::Session(TransportSession {
            pdh_cert: vec![0x5a; crate::session::SEV_CERT_LEN],
            session: vec![0xa5; crate::session::SESSION_LEN],
        }),
        Record::Round(Round { index: 0, pages: 2 }),
        Record::SharedPage(SharedPage {
            gpa: 0,
            data: vec![0x77; 4096],
        }),
        p1,
        Record::Round(Round { index: 1, pages: 0 }),
        Record::SharedRanges(vec![GpaRange { gpa: 0, pages: 1 }]),
        Record::Vcpu(Box::new(VcpuRecord { index: 0, state })),
        Record::Vcpu(Box::new(VcpuRecord { index: 1, state })),
    ];
    let Ok(mut enc) = Encoder::new(Vec::new()) else {
        return Vec::new();
    };
    for r in &recs {
        if enc.write(r).is_err() {
            return Vec::new();
        }
    }
    enc.finish().unwrap_or_default()
}

/// A packet header followed by its transport buffer, sealed under the fixed fuzzing keys.
pub fn sample_packet() -> Vec<u8> {
    let keys = TransportKeys::new([0x11; 16], [0x22; 16]);
    match seal_packet(&keys, PacketContext::Data, [7; 16], &[0x42; 64], &[]) {
        Ok((h, ct)) => {
            let mut v = h.to_bytes().to_vec();
            v.extend_from_slice(&ct);
            v
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_accepted_and_mutations_never_panic() {
        let s = sample_stream();
        assert!(!s.is_empty());
        assert!(decode_all(&s).is_ok());
        fuzz_migration_stream(&s);
        let p = sample_packet();
        fuzz_packet_header(&p);
        let keys = TransportKeys::new([0x11; 16], [0x22; 16]);
        let h = PacketHeader::from_bytes(&p[..52]).unwrap();
        assert!(open_packet(&keys, PacketContext::Data, &h, &p[52..], &[]).is_ok());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..600 {
            let mut m = if i % 2 == 0 { s.clone() } else { p.clone() };
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pos = (x as usize) % m.len();
            match i % 3 {
                0 => m[pos] ^= 1 << (x % 8),
                1 => m.truncate(pos),
                _ => m.insert(pos, x as u8),
            }
            fuzz_migration_stream(&m);
            fuzz_packet_header(&m);
        }
    }
}
