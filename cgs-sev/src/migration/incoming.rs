//! The destination side: decode the stream as it arrives, `RECEIVE_START`, pages,
//! `RECEIVE_FINISH`.
//!
//! [`Incoming::feed`] decodes and applies records as bytes arrive: the header must describe this
//! destination's memory layout and vCPU count, the session goes to `RECEIVE_START`, shared pages
//! are written in plain, private pages go through `RECEIVE_UPDATE_DATA` (the firmware checks each
//! packet's MAC). [`Incoming::finish`] checks that the stream ended with a valid checksum, that
//! every page arrived and in the form its final shared/private state requires, then issues
//! `RECEIVE_FINISH`, records the shared ranges in the page-state tracker and hands out the vCPU
//! states. Any error before that leaves the guest not ready: no `RECEIVE_FINISH`, no vCPU state,
//! and the firmware context stays in its receive state, where it cannot run.

use cgs_gmem::tracker::{MemState, PageTracker};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use cgs_core::Error;

use super::error::MigrationError;
use super::firmware::ReceiveStart;
use super::outgoing::layout_of;
use super::stream::*;
use super::vcpu::VcpuState;
use crate::firmware::SevFirmware;

const NEVER: u8 = 0;
const AS_SHARED: u8 = 1;
const AS_PRIVATE: u8 = 2;

/// What a completed migration hands the destination VMM.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The guest policy.
    pub policy: u32,
    /// vCPU states, in index order, to restore before the first run.
    pub vcpus: Vec<VcpuState>,
    /// The guest's shared ranges (already applied to the tracker).
    pub shared: Vec<GpaRange>,
    /// Number of dirty rounds received.
    pub rounds: u32,
    /// Shared pages received.
    pub shared_pages: u64,
    /// Encrypted pages received.
    pub encrypted_pages: u64,
}

/// An incoming migration in progress.
pub struct Incoming<'a, F: SevFirmware + ?Sized> {
    fw: &'a mut F,
    vm: &'a VmFd,
    mem: &'a GuestMemoryMmap,
    layout: MemoryLayout,
    vcpus: u32,
    decoder: Decoder,
    last: Vec<u8>,
    policy: Option<u32>,
    shared: Option<Vec<GpaRange>>,
    states: Vec<VcpuState>,
    rounds: u32,
    shared_pages: u64,
    encrypted_pages: u64,
    failed: Option<String>,
}

impl<F: SevFirmware + ?Sized> std::fmt::Debug for Incoming<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("layout", &self.layout)
            .field("vcpus", &self.vcpus)
            .field("rounds", &self.rounds)
            .field("failed", &self.failed)
            .finish()
    }
}

fn mismatch(why: String) -> MigrationError {
    MigrationError::Mismatch(why)
}

impl<'a, F: SevFirmware + ?Sized> Incoming<'a, F> {
    /// Receive into `vm` (whose SEV context was initialised, `INIT`/`INIT2`, but not launched),
    /// with memory `mem` and `vcpus` vCPUs.
    pub fn new(
        fw: &'a mut F,
        vm: &'a VmFd,
        mem: &'a GuestMemoryMmap,
        vcpus: u32,
    ) -> Result<Self, MigrationError> {
        let layout = layout_of(mem)?;
        Ok(Incoming {
            fw,
            vm,
            mem,
            last: vec![NEVER; layout.pages() as usize],
            layout,
            vcpus,
            decoder: Decoder::new(),
            policy: None,
            shared: None,
            states: Vec::new(),
            rounds: 0,
            shared_pages: 0,
            encrypted_pages: 0,
            failed: None,
        })
    }

    /// Feed received bytes; complete records are applied at once.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), MigrationError> {
        if let Some(why) = &self.failed {
            return Err(mismatch(format!("the migration already failed: {why}")));
        }
        self.decoder.feed(data);
        loop {
            let rec = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e.into())),
            };
            if let Err(e) = self.apply(rec) {
                return Err(self.fail(e));
            }
        }
    }

    fn fail(&mut self, e: MigrationError) -> MigrationError {
        self.failed = Some(e.to_string());
        e
    }

    fn apply(&mut self, rec: Record) -> Result<(), MigrationError> {
        match rec {
            Record::Header(h) => {
                if h.layout != self.layout {
                    return Err(mismatch(format!(
                        "source memory {:?} differs from this destination's {:?}",
                        h.layout.regions(),
                        self.layout.regions()
                    )));
                }
                if h.vcpus != self.vcpus {
                    return Err(mismatch(format!(
                        "source has {} vCPUs, destination {}",
                        h.vcpus, self.vcpus
                    )));
                }
                self.policy = Some(h.policy);
            }
            Record::Session(s) => {
                let policy = self.policy.unwrap_or(0);
                self.fw.receive_start(
                    self.vm,
                    &ReceiveStart {
                        policy,
                        source_pdh: &s.pdh_cert,
                        session: &s.session,
                    },
                )?;
            }
            Record::Round(_) => self.rounds += 1,
            Record::SharedPage(p) => {
                self.mem
                    .write_slice(&p.data, GuestAddress(p.gpa))
                    .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
                self.mark(p.gpa, AS_SHARED);
                self.shared_pages += 1;
            }
            Record::EncryptedPage(p) => {
                let slice = self
                    .mem
                    .get_slice(GuestAddress(p.gpa), PAGE_SIZE as usize)
                    .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
                self.fw
                    .receive_update_data(self.vm, p.gpa, &p.header, &p.transport, &slice)?;
                self.mark(p.gpa, AS_PRIVATE);
                self.encrypted_pages += 1;
            }
            Record::SharedRanges(r) => self.shared = Some(r),
            Record::Vcpu(v) => self.states.push(v.state),
            Record::Finish(_) => {}
        }
        Ok(())
    }

    fn mark(&mut self, gpa: u64, how: u8) {
        // The decoder checked that `gpa` is a page of the layout, which is this destination's.
        if let Some(i) = self.layout.page_index(gpa) {
            self.last[i as usize] = how;
        }
    }

    /// The input ended: verify the whole stream, issue `RECEIVE_FINISH`, apply the shared ranges
    /// to `tracker` and return the vCPU states. The guest may run only after this succeeded.
    pub fn finish(mut self, tracker: &mut PageTracker) -> Result<Received, MigrationError> {
        if let Some(why) = &self.failed {
            return Err(mismatch(format!("the migration already failed: {why}")));
        }
        self.decoder.end()?;
        let shared = self.shared.take().unwrap_or_default();
        let mut want = vec![AS_PRIVATE; self.last.len()];
        for r in &shared {
            for p in 0..r.pages {
                if let Some(i) = self.layout.page_index(r.gpa + p * PAGE_SIZE) {
                    want[i as usize] = AS_SHARED;
                }
            }
        }
        for ((gpa, &got), &w) in self.layout.page_gpas().zip(&self.last).zip(&want) {
            if got == NEVER {
                return Err(mismatch(format!("page {gpa:#x} was never sent")));
            }
            if got != w {
                return Err(mismatch(format!(
                    "page {gpa:#x} was last sent {} but is {}",
                    if got == AS_SHARED {
                        "in plain"
                    } else {
                        "encrypted"
                    },
                    if w == AS_SHARED { "shared" } else { "private" }
                )));
            }
        }
        let last_gfn = self
            .layout
            .regions()
            .last()
            .map_or(0, |r| (r.gpa + r.size) / PAGE_SIZE);
        if tracker.pages() < last_gfn {
            return Err(MigrationError::Platform(Error::invalid_input(
                "page-state tracker",
                format!(
                    "tracks {} pages, guest memory ends at page {last_gfn}",
                    tracker.pages()
                ),
            )));
        }
        self.fw.receive_finish(self.vm)?;
        // Tracker updates cannot fail: every range was checked against the layout and the
        // tracker covers the layout.
        for reg in self.layout.regions() {
            let first = reg.gpa / PAGE_SIZE;
            let _ = tracker.set(first..first + reg.size / PAGE_SIZE, MemState::Private);
        }
        for r in &shared {
            let first = r.gpa / PAGE_SIZE;
            let _ = tracker.set(first..first + r.pages, MemState::Shared);
        }
        Ok(Received {
            policy: self.policy.unwrap_or(0),
            vcpus: std::mem::take(&mut self.states),
            shared,
            rounds: self.rounds,
            shared_pages: self.shared_pages,
            encrypted_pages: self.encrypted_pages,
        })
    }
}
