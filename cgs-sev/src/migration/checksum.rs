//! The stream checksum (SHA-256 over every byte before the finish record), computed inline or on
//! a helper thread so that hashing overlaps the page encryption of the source.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Frames the helper thread may lag behind (bounds the memory in flight to about 256 KiB).
const PIPELINE_DEPTH: usize = 64;

/// A running SHA-256 of the stream.
#[derive(Debug)]
pub(crate) enum Checksum {
    /// Hashed by the caller's thread.
    Inline(Sha256),
    /// Hashed by a helper thread fed through a bounded channel.
    Pipelined {
        tx: Option<SyncSender<Vec<u8>>>,
        worker: Option<JoinHandle<Sha256>>,
    },
}

impl Checksum {
    /// An inline checksum.
    pub(crate) fn inline() -> Self {
        Checksum::Inline(Sha256::new())
    }

    /// A pipelined checksum; falls back to inline if the thread cannot be started.
    pub(crate) fn pipelined() -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
        let worker = std::thread::Builder::new()
            .name("cgs-sev-stream-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for chunk in rx {
                    h.update(&chunk);
                }
                h
            });
        match worker {
            Ok(w) => Checksum::Pipelined {
                tx: Some(tx),
                worker: Some(w),
            },
            Err(_) => Checksum::inline(),
        }
    }

    /// Add `bytes` (owned, so the pipelined variant can hand them over without a copy).
    pub(crate) fn update(&mut self, bytes: Vec<u8>) {
        match self {
            Checksum::Inline(h) => h.update(&bytes),
            Checksum::Pipelined { tx, worker } => {
                let sent = tx.as_ref().map(|t| t.send(bytes));
                if !matches!(sent, Some(Ok(()))) {
                    // The helper is gone: `finish` reports it (its digest cannot be trusted).
                    *tx = None;
                    let _ = worker;
                }
            }
        }
    }

    /// The digest of everything added; `None` if the helper thread failed.
    pub(crate) fn finish(self) -> Option<[u8; 32]> {
        match self {
            Checksum::Inline(h) => Some(h.finalize().into()),
            Checksum::Pipelined { tx, worker } => {
                let complete = tx.is_some();
                drop(tx);
                let h = worker?.join().ok()?;
                complete.then(|| h.finalize().into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_pipelined_agree() {
        let mut a = Checksum::inline();
        let mut b = Checksum::pipelined();
        for i in 0..300u32 {
            let chunk = vec![i as u8; (i as usize * 37) % 5000];
            a.update(chunk.clone());
            b.update(chunk);
        }
        let (a, b) = (a.finish(), b.finish());
        assert!(a.is_some());
        assert_eq!(a, b);
    }
}
