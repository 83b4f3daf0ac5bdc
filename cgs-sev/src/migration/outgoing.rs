//! The source side: `SEND_START`, dirty rounds of pages, vCPU state, `SEND_FINISH`.
//!
//! ```text
//! Outgoing::start      blocker check, SEND_START (target PDH + chains), header + session records
//! Outgoing::round      one dirty round: shared pages in plain, private pages via SEND_UPDATE_DATA
//! Outgoing::finish     pages whose state changed since sent, shared ranges, vCPUs, SEND_FINISH
//! ```
//!
//! Which pages are shared comes from cgs-gmem's [`PageTracker`] (fed by `KVM_HC_MAP_GPA_RANGE`),
//! the one source of truth. Round 0 should send every page ([`Outgoing::full_round`]); later
//! rounds send what KVM's dirty log ([`super::dirty::DirtyLog`]) reports. Dropping an
//! [`Outgoing`] before [`finish`](Outgoing::finish) issues `SEND_CANCEL`, so the source guest can
//! run again.

use std::io::Write;

use cgs_gmem::tracker::{MemState, PageTracker};
use kvm_ioctls::VmFd;
use rand_core::{OsRng, RngCore};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use cgs_core::{Error, MigrationBlocker};

use super::error::MigrationError;
use super::firmware::PlatformCerts;
use super::optin::REASON_SEV_ES;
use super::stream::*;
use super::vcpu::VcpuState;
use crate::firmware::SevFirmware;
use crate::policy::SevPolicy;

const NEVER: u8 = 0;
const AS_SHARED: u8 = 1;
const AS_PRIVATE: u8 = 2;

/// What was sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Dirty rounds written (the fix-up round of `finish` included).
    pub rounds: u32,
    /// Shared pages sent in plain.
    pub shared_pages: u64,
    /// Private pages sent through `SEND_UPDATE_DATA`.
    pub encrypted_pages: u64,
    /// Bytes written to the stream.
    pub bytes: u64,
}

/// The memory layout of a vm-memory guest.
pub fn layout_of(mem: &GuestMemoryMmap) -> Result<MemoryLayout, MigrationError> {
    let regions = mem
        .iter()
        .map(|r| MemoryRegion {
            gpa: r.start_addr().0,
            size: r.len(),
        })
        .collect();
    MemoryLayout::new(regions).map_err(|e| {
        MigrationError::Platform(Error::invalid_input("guest memory layout", e.to_string()))
    })
}

/// The shared ranges of `layout` according to `tracker`.
pub fn shared_ranges(layout: &MemoryLayout, tracker: &PageTracker) -> Vec<GpaRange> {
    let mut out = Vec::new();
    for r in layout.regions() {
        let first = r.gpa / PAGE_SIZE;
        let end = first + r.size / PAGE_SIZE;
        for run in tracker.runs(first..end, MemState::Shared) {
            out.push(GpaRange {
                gpa: run.start * PAGE_SIZE,
                pages: run.end - run.start,
            });
        }
    }
    out
}

fn check_tracker(layout: &MemoryLayout, tracker: &PageTracker) -> Result<(), MigrationError> {
    let last = layout
        .regions()
        .last()
        .map_or(0, |r| (r.gpa + r.size) / PAGE_SIZE);
    if tracker.pages() < last {
        return Err(MigrationError::Platform(Error::invalid_input(
            "page-state tracker",
            format!(
                "tracks {} pages but guest memory ends at page {last}",
                tracker.pages()
            ),
        )));
    }
    Ok(())
}

/// An outgoing migration in progress.
pub struct Outgoing<'a, F: SevFirmware + ?Sized, W: Write> {
    fw: &'a mut F,
    vm: &'a VmFd,
    mem: &'a GuestMemoryMmap,
    enc: Option<Encoder<W>>,
    layout: MemoryLayout,
    vcpus: u32,
    sent: Vec<u8>,
    stats: SendStats,
}

impl<F: SevFirmware + ?Sized, W: Write> std::fmt::Debug for Outgoing<'_, F, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("layout", &self.layout)
            .field("vcpus", &self.vcpus)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'a, F: SevFirmware + ?Sized, W: Write> Outgoing<'a, F, W> {
    /// Start migrating the guest of `vm` (memory `mem`, `vcpus` vCPUs) to the platform `target`.
    ///
    /// `blocker` is the backend's current migration blocker: a blocked guest is refused before any
    /// firmware command. The firmware refuses `SEND_START` itself when the guest policy forbids
    /// sending (NOSEND: `POLICY_FAILURE`) or the target's certificates are unusable.
    pub fn start(
        fw: &'a mut F,
        vm: &'a VmFd,
        mem: &'a GuestMemoryMmap,
        vcpus: u32,
        blocker: Option<MigrationBlocker>,
        target: &PlatformCerts,
        out: W,
    ) -> Result<Self, MigrationError> {
        if let Some(b) = blocker {
            return Err(MigrationError::Blocked(b));
        }
        // Whatever the caller's blocker says, an SEV-ES guest's registers are encrypted and KVM
        // cannot move them (no SEND_UPDATE_VMSA).
        if SevPolicy(fw.guest_status(vm)?.policy).is_es() {
            return Err(MigrationError::Blocked(MigrationBlocker::new(
                REASON_SEV_ES,
            )));
        }
        let layout = layout_of(mem)?;
        let own = fw.platform_certs()?;
        let session = fw.send_start(vm, target)?;
        let mut this = Outgoing {
            fw,
            vm,
            mem,
            enc: None,
            sent: vec![NEVER; layout.pages() as usize],
            layout,
            vcpus,
            stats: SendStats::default(),
        };
        // From here on, a failure drops `this`, which cancels the send.
        let mut stream_id = [0u8; 16];
        OsRng.fill_bytes(&mut stream_id);
        let mut enc = Encoder::pipelined(out)?;
        enc.write(&Record::Header(StreamHeader {
            policy: session.policy,
            vcpus,
            layout: this.layout.clone(),
            stream_id,
        }))?;
        enc.write(&Record::Session(TransportSession {
            pdh_cert: own.pdh,
            session: session.session,
        }))?;
        this.stats.bytes = enc.bytes_written();
        this.enc = Some(enc);
        Ok(this)
    }

    /// What was sent so far.
    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// The guest's memory layout.
    pub fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// Send every page of guest memory as one round (the first round).
    pub fn full_round(&mut self, tracker: &PageTracker) -> Result<u32, MigrationError> {
        let all: Vec<u64> = self.layout.page_gpas().collect();
        self.round(&all, tracker)
    }

    /// Send one round with the pages at `gpas` (page-aligned GPAs of guest memory, e.g. from the
    /// dirty log; duplicates are sent once). Returns the number of pages sent.
    pub fn round(&mut self, gpas: &[u64], tracker: &PageTracker) -> Result<u32, MigrationError> {
        check_tracker(&self.layout, tracker)?;
        let mut pages = gpas.to_vec();
        pages.sort_unstable();
        pages.dedup();
        if let Some(bad) = pages.iter().find(|&&g| self.layout.page_index(g).is_none()) {
            return Err(MigrationError::Platform(Error::invalid_input(
                "dirty page",
                format!("{bad:#x} is not a page of guest memory"),
            )));
        }
        let count = u32::try_from(pages.len()).map_err(|_| {
            MigrationError::Platform(Error::invalid_input("dirty round", "too many pages"))
        })?;
        let index = self.stats.rounds;
        self.write(&Record::Round(Round {
            index,
            pages: count,
        }))?;
        for gpa in pages {
            self.send_page(gpa, tracker)?;
        }
        self.stats.rounds += 1;
        Ok(count)
    }

    fn write(&mut self, rec: &Record) -> Result<(), MigrationError> {
        let enc = self.enc.as_mut().ok_or_else(|| {
            MigrationError::Platform(Error::invalid_input("migration", "already finished"))
        })?;
        enc.write(rec)?;
        self.stats.bytes = enc.bytes_written();
        Ok(())
    }

    fn send_page(&mut self, gpa: u64, tracker: &PageTracker) -> Result<(), MigrationError> {
        let idx = self.layout.page_index(gpa).unwrap_or(0) as usize;
        let state = tracker.state(gpa / PAGE_SIZE).unwrap_or(MemState::Private);
        let rec = if state == MemState::Shared {
            let mut data = vec![0u8; PAGE_SIZE as usize];
            self.mem
                .read_slice(&mut data, GuestAddress(gpa))
                .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
            self.stats.shared_pages += 1;
            self.sent[idx] = AS_SHARED;
            Record::SharedPage(SharedPage { gpa, data })
        } else {
            let slice = self
                .mem
                .get_slice(GuestAddress(gpa), PAGE_SIZE as usize)
                .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
            let (header, transport) = self.fw.send_update_data(self.vm, gpa, &slice)?;
            self.stats.encrypted_pages += 1;
            self.sent[idx] = AS_PRIVATE;
            Record::EncryptedPage(EncryptedPage {
                gpa,
                header,
                transport,
            })
        };
        self.write(&rec)
    }

    /// Finish with the vCPUs stopped: re-send pages whose shared/private state changed since they
    /// were sent (or that were never sent), then the shared ranges, the vCPU states (in index
    /// order), `SEND_FINISH` (the source guest cannot run any more) and the checksum. Returns the
    /// transport and the totals.
    pub fn finish(
        mut self,
        tracker: &PageTracker,
        vcpus: &[VcpuState],
    ) -> Result<(W, SendStats), MigrationError> {
        check_tracker(&self.layout, tracker)?;
        if vcpus.len() != self.vcpus as usize {
            return Err(MigrationError::Platform(Error::invalid_input(
                "vCPU states",
                format!("{} given for a {}-vCPU guest", vcpus.len(), self.vcpus),
            )));
        }
        let stale: Vec<u64> = self
            .layout
            .page_gpas()
            .zip(self.sent.iter())
            .filter(|(gpa, &sent)| {
                let now = match tracker.state(gpa / PAGE_SIZE) {
                    Some(MemState::Shared) => AS_SHARED,
                    _ => AS_PRIVATE,
                };
                sent != now
            })
            .map(|(gpa, _)| gpa)
            .collect();
        if !stale.is_empty() {
            self.round(&stale, tracker)?;
        }
        self.write(&Record::SharedRanges(shared_ranges(&self.layout, tracker)))?;
        for (index, state) in vcpus.iter().enumerate() {
            self.write(&Record::Vcpu(Box::new(VcpuRecord {
                index: index as u32,
                state: *state,
            })))?;
        }
        self.fw.send_finish(self.vm)?;
        let enc = self.enc.take().ok_or_else(|| {
            MigrationError::Platform(Error::invalid_input("migration", "already finished"))
        })?;
        // SEND_FINISH succeeded: the firmware context is SENT, nothing to cancel any more.
        let bytes_before = enc.bytes_written();
        let out = enc.finish()?;
        self.stats.bytes = bytes_before + FINISH_RECORD_LEN as u64;
        Ok((out, self.stats))
    }

    /// Abort: `SEND_CANCEL`, the source guest may run again.
    pub fn cancel(mut self) -> Result<(), MigrationError> {
        self.enc = None;
        self.fw.send_cancel(self.vm).map_err(MigrationError::from)
    }
}

impl<F: SevFirmware + ?Sized, W: Write> Drop for Outgoing<'_, F, W> {
    fn drop(&mut self) {
        // Still streaming: the migration was abandoned (an error or the caller gave up).
        if self.enc.is_some() {
            let _ = self.fw.send_cancel(self.vm);
        }
    }
}
