//! The SNP guest-context launch digest: `LD = SHA-384(PAGE_INFO)` per launched page.
//!
//! PAGE_INFO (SNP ABI, "Layout of the PAGE_INFO structure") is 0x70 bytes: the current digest
//! (48), the page's CONTENTS (48: SHA-384 of the page for NORMAL and VMSA pages, zeros for the
//! others), `u16` length 0x70, page type, IMI flag, VMPL3/2/1 permissions, a reserved byte and the
//! `u64` GPA. The SNP simulator and the offline calculator both use this type.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cgs_core::PageType;
use sha2::{Digest, Sha384};

use super::error::{MeasureError, Result};
use super::sha384x;
use super::vmsa::VmsaPage;

/// The digest size (SHA-384).
pub const LD_SIZE: usize = 48;
/// A page.
pub const PAGE_SIZE: u64 = 4096;
/// The GPA a VMSA page is measured at ((u64)-1, page aligned, bits above 51 cleared).
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
const PAGE_INFO_LEN: usize = 0x70;

/// The firmware's page-type number for PAGE_INFO.
pub fn snp_page_type(page_type: PageType) -> u8 {
    match page_type {
        PageType::Normal => 1,
        PageType::Vmsa => 2,
        PageType::Zero => 3,
        PageType::Unmeasured => 4,
        PageType::Secrets => 5,
        PageType::Cpuid => 6,
    }
}

/// An SNP launch digest being computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gctx {
    ld: [u8; LD_SIZE],
}

impl Default for Gctx {
    fn default() -> Self {
        Self::new()
    }
}

fn check_aligned(what: &'static str, gpa: u64, len: u64) -> Result<()> {
    if !gpa.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MeasureError::NotPageAligned { what, gpa, len });
    }
    gpa.checked_add(len)
        .map(|_| ())
        .ok_or_else(|| MeasureError::invalid(what, "range overflows the address space"))
}

impl Gctx {
    /// A fresh context (digest of 48 zero bytes).
    pub fn new() -> Self {
        Gctx { ld: [0; LD_SIZE] }
    }

    /// A context continuing from `seed` (e.g. a precomputed OVMF hash).
    pub fn with_seed(seed: [u8; LD_SIZE]) -> Self {
        Gctx { ld: seed }
    }

    /// The current launch digest.
    pub fn ld(&self) -> [u8; LD_SIZE] {
        self.ld
    }

    /// Extends the digest with one PAGE_INFO (VMPL permissions 0, not an IMI page).
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; LD_SIZE]) {
        let mut info = [0u8; PAGE_INFO_LEN];
        info[..LD_SIZE].copy_from_slice(&self.ld);
        info[0x30..0x60].copy_from_slice(contents);
        info[0x60..0x62].copy_from_slice(&(PAGE_INFO_LEN as u16).to_le_bytes());
        info[0x62] = snp_page_type(page_type);
        info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.ld = sha384x::sha384_112(&info);
    }

    /// NORMAL pages: `data` (a multiple of 4 KiB) from `gpa`.
    ///
    /// The pages' own SHA-384s are independent of the chain: they are hashed several at a time
    /// ([`sha384x`]), a page equal to the one before it reuses that digest, and regions of
    /// 512 KiB per SIMD lane or more (4 MiB with AVX-512) are hashed on a second core too while
    /// this one runs the short, sequential PAGE_INFO hashes of the pages already hashed.
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) -> Result<()> {
        check_aligned("normal pages", gpa, data.len() as u64)?;
        let pages: Vec<&[u8]> = data.chunks_exact(PAGE_SIZE as usize).collect();
        let mut page_gpa = gpa;
        let mut chain = |hashes: &[[u8; LD_SIZE]]| {
            for contents in hashes {
                self.update(PageType::Normal, page_gpa, contents);
                page_gpa += PAGE_SIZE;
            }
        };
        if data.len() < parallel_min() {
            chain(&page_digests(&pages));
            return Ok(());
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads < 2 {
            chain(&page_digests(&pages));
        } else {
            hash_overlapped(&pages, chain);
        }
        Ok(())
    }

    /// NORMAL pages over `len` bytes from `gpa`: `head` (a multiple of 4 KiB, at most `len`)
    /// followed by zeros, measured exactly as [`update_normal_pages`](Self::update_normal_pages)
    /// over the zero-padded buffer would be, without allocating the zeros (`len` may come from an
    /// untrusted image).
    pub fn update_normal_pages_zero_padded(
        &mut self,
        gpa: u64,
        head: &[u8],
        len: u64,
    ) -> Result<()> {
        check_aligned("normal pages", gpa, len)?;
        let head_len = head.len() as u64;
        if head_len > len {
            return Err(MeasureError::invalid(
                "normal pages",
                format!("{head_len:#x} bytes of data exceed the {len:#x}-byte range"),
            ));
        }
        self.update_normal_pages(gpa, head)?;
        let zero: [u8; LD_SIZE] = Sha384::digest([0u8; PAGE_SIZE as usize]).into();
        for page in head_len / PAGE_SIZE..len / PAGE_SIZE {
            self.update(PageType::Normal, gpa + page * PAGE_SIZE, &zero);
        }
        Ok(())
    }

    /// Pages whose CONTENTS are zero (ZERO, UNMEASURED, SECRETS, CPUID), one per 4 KiB of `len`.
    pub fn update_contentless_pages(
        &mut self,
        page_type: PageType,
        gpa: u64,
        len: u64,
    ) -> Result<()> {
        if matches!(page_type, PageType::Normal | PageType::Vmsa) {
            return Err(MeasureError::invalid(
                "page type",
                format!("{page_type} pages are measured with their contents"),
            ));
        }
        check_aligned(page_type.name(), gpa, len)?;
        for i in 0..len / PAGE_SIZE {
            self.update(page_type, gpa + i * PAGE_SIZE, &[0; LD_SIZE]);
        }
        Ok(())
    }

    /// One VMSA page (at [`VMSA_GPA`]).
    pub fn update_vmsa(&mut self, vmsa: &VmsaPage) {
        self.update_vmsa_hash(&vmsa.sha384());
    }

    /// One VMSA page given its SHA-384.
    pub fn update_vmsa_hash(&mut self, sha384: &[u8; LD_SIZE]) {
        self.update(PageType::Vmsa, VMSA_GPA, sha384);
    }
}

/// SHA-384 of each of `pages`, several at a time ([`sha384x`]); a page equal to the one before it
/// takes that one's digest instead of being hashed again (flash images are padded with erased
/// pages: 518 of the 892 pages of Debian's `OVMF_CODE_4M.fd` are all 0xFF).
fn page_digests(pages: &[&[u8]]) -> Vec<[u8; LD_SIZE]> {
    let repeats: Vec<bool> = (0..pages.len())
        .map(|i| i > 0 && pages[i] == pages[i - 1])
        .collect();
    let distinct: Vec<&[u8]> = pages
        .iter()
        .zip(&repeats)
        .filter(|(_, &repeat)| !repeat)
        .map(|(p, _)| *p)
        .collect();
    let mut digests = sha384x::sha384_each(&distinct).into_iter();
    let mut last = [0u8; LD_SIZE];
    repeats
        .iter()
        .map(|&repeat| {
            if !repeat {
                // One digest per distinct page, in order.
                last = digests.next().unwrap_or(last);
            }
            last
        })
        .collect()
}

/// Regions below this size are hashed on the calling thread alone: 512 KiB per SIMD lane of the
/// hash tier (4 MiB with AVX-512), about 2 ms of hashing on one core. Handing work to a second
/// thread costs little on an idle machine but 1–3 ms when other processes hold every core (the
/// helper waits for a time slice and the caller for the helper), which smaller regions cannot
/// win back; Debian's 3.5 MiB `OVMF_CODE_4M.fd` measured faster single-threaded under load.
fn parallel_min() -> usize {
    512 * 1024 * sha384x::Tier::best().lanes()
}
/// Pages per unit of work of [`hash_overlapped`] (128 KiB: a few dozen units per OVMF image).
const BATCH_PAGES: usize = 32;

/// Hashes `pages` in batches on this thread and one helper thread, and calls `consume` with
/// the digests of each batch, in order, as soon as that batch is done.
///
/// Both threads take the next unhashed batch from a shared counter; this one, whenever the batch
/// it must consume next is not ready yet, hashes another batch instead of waiting. So `consume`
/// (the sequential PAGE_INFO chain) overlaps with the hashing, and a helper that gets no core
/// (a loaded machine) only costs the batch it took.
fn hash_overlapped(pages: &[&[u8]], mut consume: impl FnMut(&[[u8; LD_SIZE]])) {
    let batches: Vec<&[&[u8]]> = pages.chunks(BATCH_PAGES).collect();
    let done: Vec<OnceLock<Vec<[u8; LD_SIZE]>>> = batches.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let hash_next = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        match (batches.get(i), done.get(i)) {
            (Some(batch), Some(slot)) => {
                slot.get_or_init(|| page_digests(batch));
                true
            }
            _ => false,
        }
    };
    std::thread::scope(|s| {
        let mut helper = Some(s.spawn(|| while hash_next() {}));
        for (i, slot) in done.iter().enumerate() {
            while slot.get().is_none() && hash_next() {}
            if slot.get().is_none() {
                // Every batch is taken and this one is the helper's: wait for the helper.
                join(helper.take());
            }
            consume(slot.get_or_init(|| page_digests(batches[i])));
        }
        join(helper.take());
    });
}

/// Joins a scoped thread explicitly, re-raising its panic: the scope alone only waits until a
/// thread has stored its result, not until its OS thread (and its thread-local allocations) is
/// gone, which leak checkers such as the fuzzers' LeakSanitizer report as a leak.
fn join(thread: Option<std::thread::ScopedJoinHandle<'_, ()>>) {
    if let Some(Err(panic)) = thread.map(|t| t.join()) {
        std::panic::resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_info_is_hashed_as_laid_out() {
        let mut g = Gctx::new();
        g.update(PageType::Secrets, 0x80D000, &[0; 48]);
        let mut info = [0u8; 0x70];
        info[0x60] = 0x70;
        info[0x62] = 5;
        info[0x68..0x70].copy_from_slice(&0x80D000u64.to_le_bytes());
        assert_eq!(g.ld(), <[u8; 48]>::from(Sha384::digest(info)));
    }

    #[test]
    fn parallel_page_hashes_equal_sequential_ones() {
        let data: Vec<u8> = (0..(parallel_min() + 5 * 4096) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut a = Gctx::new();
        a.update_normal_pages(0x1000, &data).unwrap();
        let mut b = Gctx::new();
        for (i, p) in data.chunks(4096).enumerate() {
            b.update(
                PageType::Normal,
                0x1000 + i as u64 * 4096,
                &Sha384::digest(p).into(),
            );
        }
        assert_eq!(a, b);
    }

    /// Repeated pages reuse the digest of the page before them; pages equal to an earlier but
    /// not the previous page, and a repeat run at the start, are still right.
    #[test]
    fn repeated_pages_get_their_own_digest() {
        let a = [0xFFu8; 4096];
        let b: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let mut c = b.clone();
        c[4095] ^= 1;
        for layout in [
            &b"aaab"[..],
            b"abab",
            b"abba",
            b"bccb",
            b"a",
            b"",
            b"aaaa",
            b"cbaaac",
        ] {
            let pages: Vec<&[u8]> = layout
                .iter()
                .map(|l| match l {
                    b'a' => &a[..],
                    b'b' => &b[..],
                    _ => &c[..],
                })
                .collect();
            let want: Vec<[u8; 48]> = pages.iter().map(|p| Sha384::digest(p).into()).collect();
            assert_eq!(
                page_digests(&pages),
                want,
                "{}",
                String::from_utf8_lossy(layout)
            );
        }
    }

    /// The overlapped hashing hands every page's digest to the consumer once, in order, for
    /// page counts below, at and across batch boundaries.
    #[test]
    fn overlapped_hashing_consumes_every_page_in_order() {
        let data: Vec<u8> = (0..200 * 4096u32).map(|i| (i % 241) as u8).collect();
        let pages: Vec<&[u8]> = data.chunks_exact(4096).collect();
        for n in [0, 1, BATCH_PAGES - 1, BATCH_PAGES, BATCH_PAGES + 1, 200] {
            let mut got = Vec::new();
            hash_overlapped(&pages[..n], |h| got.extend_from_slice(h));
            let want: Vec<[u8; 48]> = pages[..n]
                .iter()
                .map(|p| Sha384::digest(p).into())
                .collect();
            assert_eq!(got, want, "{n} pages");
        }
    }

    #[test]
    fn zero_padded_pages_equal_the_padded_buffer() {
        let head: Vec<u8> = (0..2 * 4096u32).map(|i| (i % 253) as u8).collect();
        let mut padded = head.clone();
        padded.resize(5 * 4096, 0);
        let mut a = Gctx::new();
        a.update_normal_pages_zero_padded(0x8000, &head, 5 * 4096)
            .unwrap();
        let mut b = Gctx::new();
        b.update_normal_pages(0x8000, &padded).unwrap();
        assert_eq!(a, b);
        let mut c = Gctx::new();
        assert!(c
            .update_normal_pages_zero_padded(0x8000, &head, 4096)
            .is_err());
        assert!(c
            .update_normal_pages_zero_padded(0x8000, &head, 3 * 4096 + 1)
            .is_err());
        assert_eq!(c, Gctx::new());
    }

    #[test]
    fn alignment_and_type_errors() {
        let mut g = Gctx::new();
        assert!(g.update_normal_pages(0x1000, &[0; 100]).is_err());
        assert!(g
            .update_contentless_pages(PageType::Zero, 0x800, 0x1000)
            .is_err());
        assert!(g
            .update_contentless_pages(PageType::Normal, 0, 0x1000)
            .is_err());
        assert!(g
            .update_contentless_pages(PageType::Zero, u64::MAX - 0xFFF, 0x2000)
            .is_err());
        assert_eq!(g, Gctx::new());
        let mut a = Gctx::new();
        a.update_contentless_pages(PageType::Zero, 0, 0x2000)
            .unwrap();
        let mut b = Gctx::new();
        b.update(PageType::Zero, 0, &[0; 48]);
        b.update(PageType::Zero, 0x1000, &[0; 48]);
        assert_eq!(a, b);
    }
}
