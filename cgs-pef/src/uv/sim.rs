//! A software model of the POWER ultravisor and of KVM's side of the secure-guest protocol.
//!
//! The simulator keeps the state a real PEF host keeps, split the way the real one is split:
//!
//! - **KVM** (`arch/powerpc/kvm/book3s_hv_uvmem.c`): whether the host has secure memory, whether
//!   `KVM_CAP_PPC_SECURE_GUEST` was enabled on the VM (`svm_enabled`), the guest's
//!   `secure_guest` flags (INIT_START, INIT_DONE), and the `H_SVM_INIT_START` / `_DONE` /
//!   `_ABORT` / `H_SVM_PAGE_IN` / `H_SVM_PAGE_OUT` hcalls the ultravisor makes, with the return
//!   codes the kernel gives (`H_AUTHORITY` when the capability was not enabled, `H_UNSUPPORTED`
//!   without secure memory, for hash-MMU guests or before INIT_START, `H_STATE` for an abort after
//!   INIT_DONE, `H_P2`/`H_P3` for bad flags/order); and `KVM_PPC_SVM_OFF`, which fails with
//!   `EBUSY` while vCPUs run and otherwise terminates the secure guest.
//! - **The ultravisor** (`Documentation/arch/powerpc/ultravisor.rst`): the guest's `UV_ESM`
//!   (blob at P1, FDT at P2, `U_PERMISSION` when an integrity check fails, `U_SUCCESS` when the
//!   guest already is secure), `UV_SHARE_PAGE` / `UV_UNSHARE_PAGE` / `UV_UNSHARE_ALL_PAGES` (pages
//!   zeroed on every transition, `U_PARAMETER` for a bad gfn, `U_P2` for a bad count), and the
//!   hypervisor's `UV_PAGE_IN` / `UV_PAGE_OUT` (P3 address, P4 flags, P5 order), where paged-out
//!   pages reach host memory encrypted and authenticated and come back only if untouched.
//!
//! Simplifications (see the crate README): the ESM blob is the simulator's own sealed format
//! ([`crate::esm`]); page-out uses AES-256-CTR + HMAC-SHA-256 under keys derived from the
//! simulated ultravisor key; return codes the public documentation does not give are marked
//! "simulator choice" on the method that returns them; `U_INVALID` ("VM is not secure"), named
//! by the documentation but defined in no public header, is reported as `U_FUNCTION`.
//! There is one guest per simulator and no LPID argument.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::Mac;
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use zeroize::{Zeroize, Zeroizing};

use cgs_core::{Error, FirmwareStatus, Result};

use super::{Ultravisor, OP_ENABLE_CAP, OP_SVM_OFF};
use crate::esm::{EsmBlob, EsmError, ESM_HEADER_LEN};
use crate::key::UvKey;
use crate::papr::*;
use crate::PAGE_SHIFT;

/// The firmware name the simulator's errors carry.
pub const SIM_FIRMWARE: &str = "POWER UV (simulated)";

/// Flattened device tree magic, big endian at the FDT's first byte.
pub const FDT_MAGIC: u32 = 0xd00d_feed;

/// How many events [`SimUltravisor::events`] keeps.
pub const EVENT_LOG_LEN: usize = 256;

type Aes256Ctr = ctr::Ctr64BE<Aes256>;

/// The host the simulator pretends to be.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// An ultravisor with secure memory is present: `KVM_CHECK_EXTENSION` reports
    /// `KVM_CAP_PPC_SECURE_GUEST` and `H_SVM_INIT_START` does not fail with `H_UNSUPPORTED`.
    pub secure_guests_available: bool,
    /// The guest uses the radix MMU (only radix guests can become secure).
    pub radix_guest: bool,
    /// The ultravisor's key (ESM blobs are sealed with it).
    pub key: UvKey,
    /// log2 of the host kernel's page size, the granule of every secure-memory transition and
    /// the only `order` the hcalls accept: 16 (64 KiB, [`PAGE_SHIFT`], what POWER
    /// distributions ship) or 12 (4 KiB kernels).
    pub page_shift: u32,
}

impl SimConfig {
    /// A PEF-capable host with a radix guest and the given key.
    pub fn new(key: UvKey) -> Self {
        SimConfig {
            secure_guests_available: true,
            radix_guest: true,
            key,
            page_shift: PAGE_SHIFT,
        }
    }
}

/// Where one guest page lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    /// Ordinary host memory (the guest is not secure, or has not reached this page yet).
    Normal,
    /// In secure memory: the host's page holds nothing of it and host access is refused.
    Secure,
    /// Shared by a secure guest with the host (virtio buffers, VPAs): host memory.
    Shared,
    /// A secure page paged out by the hypervisor: host memory holds its ciphertext.
    PagedOut,
}

/// The guest's secure-mode progress (KVM's `secure_guest` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestMode {
    /// A normal guest.
    Normal,
    /// `H_SVM_INIT_START` succeeded; pages are moving to secure memory.
    InitStarted,
    /// `H_SVM_INIT_DONE` succeeded: a secure guest.
    Secure,
}

/// One call the simulator handled, for logs and examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimEvent {
    /// The call (`"UV_ESM"`, `"H_SVM_INIT_START"`, `"KVM_PPC_SVM_OFF"`, …).
    pub call: &'static str,
    /// Its first two arguments (0 when it has fewer).
    pub args: [u64; 2],
    /// Its hcall/ultracall return code (for ioctls: 0 or `-errno`).
    pub rc: i64,
}

impl fmt::Display for SimEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({:#x}, {:#x}) = {}",
            self.call,
            self.args[0],
            self.args[1],
            if self.call.starts_with("KVM_") {
                std::borrow::Cow::Owned(self.rc.to_string())
            } else {
                std::borrow::Cow::Borrowed(rc_name(self.rc))
            }
        )
    }
}

struct Page {
    state: PageState,
    /// Plaintext, only while `Secure`.
    secure: Option<Zeroizing<Vec<u8>>>,
    /// Nonce and tag of the last page-out, only while `PagedOut`.
    nonce: u64,
    tag: [u8; 32],
}

impl Page {
    fn secure(data: Zeroizing<Vec<u8>>) -> Self {
        Page {
            state: PageState::Secure,
            secure: Some(data),
            nonce: 0,
            tag: [0; 32],
        }
    }

    fn shared() -> Self {
        Page {
            state: PageState::Shared,
            secure: None,
            nonce: 0,
            tag: [0; 32],
        }
    }
}

/// The simulated POWER ultravisor (plus KVM's hcall side), for one guest.
pub struct SimUltravisor {
    shift: u32,
    page_size: u64,
    config: SimConfig,
    enc_key: Zeroizing<[u8; 32]>,
    mac_key: UvKey,
    mem: GuestMemoryMmap,
    gfns: Vec<u64>,
    svm_enabled: bool,
    mode: GuestMode,
    pages: BTreeMap<u64, Page>,
    running_vcpus: usize,
    fail_enable_cap: Option<i32>,
    fail_svm_off: Option<i32>,
    next_nonce: u64,
    terminations: u64,
    events: VecDeque<SimEvent>,
}

impl fmt::Debug for SimUltravisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUltravisor")
            .field(
                "secure_guests_available",
                &self.config.secure_guests_available,
            )
            .field("radix_guest", &self.config.radix_guest)
            .field("svm_enabled", &self.svm_enabled)
            .field("mode", &self.mode)
            .field("secure_pages", &self.count(PageState::Secure))
            .field("shared_pages", &self.count(PageState::Shared))
            .field("paged_out_pages", &self.count(PageState::PagedOut))
            .field("running_vcpus", &self.running_vcpus)
            .finish_non_exhaustive()
    }
}

impl SimUltravisor {
    /// A simulator for the guest whose RAM is `mem` (a clone of the VMM's guest memory: the
    /// mappings are shared). Every region must be aligned and sized to the configured page, as
    /// POWER KVM's secure-memory code requires.
    pub fn new(config: SimConfig, mem: &GuestMemoryMmap) -> Result<Self> {
        let shift = config.page_shift;
        if shift != 12 && shift != 16 {
            return Err(Error::invalid_input(
                "simulator page size",
                format!("page shift {shift}: POWER KVM uses 4 KiB (12) or 64 KiB (16) pages"),
            ));
        }
        let page_size = 1u64 << shift;
        let mut gfns = Vec::new();
        for region in mem.iter() {
            let start = region.start_addr().0;
            let len = region.len();
            if start % page_size != 0 || len % page_size != 0 {
                return Err(Error::invalid_input(
                    "guest memory",
                    format!(
                        "region [{start:#x}, +{len:#x}) is not aligned to the {page_size:#x}-byte \
                         secure-memory page"
                    ),
                ));
            }
            gfns.extend((0..len / page_size).map(|i| (start >> shift) + i));
        }
        if gfns.is_empty() {
            return Err(Error::invalid_input("guest memory", "no memory"));
        }
        gfns.sort_unstable();
        let enc_key = config.key.derive(b"cgs-pef page-out encryption");
        let mac_key = UvKey::from_bytes(*config.key.derive(b"cgs-pef page-out integrity"));
        Ok(SimUltravisor {
            shift,
            page_size,
            config,
            enc_key,
            mac_key,
            mem: mem.clone(),
            gfns,
            svm_enabled: false,
            mode: GuestMode::Normal,
            pages: BTreeMap::new(),
            running_vcpus: 0,
            fail_enable_cap: None,
            fail_svm_off: None,
            next_nonce: 1,
            terminations: 0,
            events: VecDeque::new(),
        })
    }

    // ----- queries -------------------------------------------------------------------------

    /// log2 of the secure-memory page size.
    pub fn page_shift(&self) -> u32 {
        self.shift
    }

    /// The secure-memory page size in bytes.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Whether `KVM_CAP_PPC_SECURE_GUEST` was enabled on the VM.
    pub fn svm_enabled(&self) -> bool {
        self.svm_enabled
    }

    /// The guest's secure-mode progress.
    pub fn mode(&self) -> GuestMode {
        self.mode
    }

    /// Whether the guest is a secure VM.
    pub fn is_secure(&self) -> bool {
        self.mode == GuestMode::Secure
    }

    /// The state of the page containing `gpa`.
    pub fn page_state(&self, gpa: u64) -> Result<PageState> {
        let gfn = gpa >> self.shift;
        if !self.gfn_valid(gfn) {
            return Err(Error::invalid_input(
                "guest address",
                format!("{gpa:#x} is not guest memory"),
            ));
        }
        Ok(self.state(gfn))
    }

    /// How many pages are in `state`.
    pub fn count(&self, state: PageState) -> usize {
        if state == PageState::Normal {
            return self.gfns.len() - self.pages.len();
        }
        self.pages.values().filter(|p| p.state == state).count()
    }

    /// How many times a secure guest was terminated by `KVM_PPC_SVM_OFF`.
    pub fn terminations(&self) -> u64 {
        self.terminations
    }

    /// The most recent calls, oldest first (at most [`EVENT_LOG_LEN`]).
    pub fn events(&self) -> impl Iterator<Item = &SimEvent> {
        self.events.iter()
    }

    /// The last call handled.
    pub fn last_event(&self) -> Option<&SimEvent> {
        self.events.back()
    }

    // ----- test and VMM controls ---------------------------------------------------------------

    /// Tell the simulator how many vCPUs are inside `KVM_RUN` (`KVM_PPC_SVM_OFF` fails with
    /// `EBUSY` while any is).
    pub fn set_running_vcpus(&mut self, n: usize) {
        self.running_vcpus = n;
    }

    /// Make the next `KVM_ENABLE_CAP` fail with `errno`.
    pub fn fail_next_enable_cap(&mut self, errno: i32) {
        self.fail_enable_cap = Some(errno);
    }

    /// Make the next `KVM_PPC_SVM_OFF` fail with `errno` (ENOTTY: a kernel without the ioctl).
    pub fn fail_next_svm_off(&mut self, errno: i32) {
        self.fail_svm_off = Some(errno);
    }

    // ----- the host's view of memory -------------------------------------------------------------

    /// The host (VMM, devices) reads guest memory. Refused for secure pages; paged-out pages read
    /// as their ciphertext.
    pub fn host_read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        self.host_access_check("host read", gpa, buf.len())?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|e| Error::invalid_input("guest address", e.to_string()))
    }

    /// The host writes guest memory. Refused for secure pages (writing a paged-out page's
    /// ciphertext is possible, and makes the next page-in fail its integrity check).
    pub fn host_write(&mut self, gpa: u64, data: &[u8]) -> Result<()> {
        self.host_access_check("host write", gpa, data.len())?;
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|e| Error::invalid_input("guest address", e.to_string()))
    }

    fn host_access_check(&self, op: &'static str, gpa: u64, len: usize) -> Result<()> {
        let end = gpa
            .checked_add(len as u64)
            .filter(|_| self.mem.check_range(GuestAddress(gpa), len))
            .ok_or_else(|| {
                Error::invalid_input(
                    "guest address",
                    format!("[{gpa:#x}, +{len:#x}) is not guest memory"),
                )
            })?;
        if len == 0 {
            return Ok(());
        }
        let first = gpa >> self.shift;
        let last = (end - 1) >> self.shift;
        for (gfn, page) in self.pages.range(first..=last) {
            if page.state == PageState::Secure {
                return Err(Error::Firmware {
                    op,
                    status: FirmwareStatus {
                        firmware: SIM_FIRMWARE,
                        code: H_PERMISSION as u64,
                        name: "H_PERMISSION".into(),
                        detail: Some(format!(
                            "guest page {:#x} is in secure memory",
                            gfn << self.shift
                        )),
                    },
                });
            }
        }
        Ok(())
    }

    // ----- the guest's view of memory -------------------------------------------------------------

    /// The guest reads its own memory (secure pages from secure memory; a paged-out page is paged
    /// back in first, as the ultravisor does on the guest's fault).
    pub fn guest_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        self.check_guest_range(gpa, buf.len())?;
        let mut off = 0usize;
        while off < buf.len() {
            let at = gpa + off as u64;
            let gfn = at >> self.shift;
            let in_page = (at % self.page_size) as usize;
            let n = (self.page_size as usize - in_page).min(buf.len() - off);
            self.fault_in(gfn)?;
            let chunk = &mut buf[off..off + n];
            match self.pages.get(&gfn).and_then(|p| p.secure.as_ref()) {
                Some(secure) => chunk.copy_from_slice(&secure[in_page..in_page + n]),
                None => self
                    .mem
                    .read_slice(chunk, GuestAddress(at))
                    .map_err(|e| Error::invalid_input("guest address", e.to_string()))?,
            }
            off += n;
        }
        Ok(())
    }

    /// The guest writes its own memory.
    pub fn guest_write(&mut self, gpa: u64, data: &[u8]) -> Result<()> {
        self.check_guest_range(gpa, data.len())?;
        let mut off = 0usize;
        while off < data.len() {
            let at = gpa + off as u64;
            let gfn = at >> self.shift;
            let in_page = (at % self.page_size) as usize;
            let n = (self.page_size as usize - in_page).min(data.len() - off);
            self.fault_in(gfn)?;
            let chunk = &data[off..off + n];
            match self.pages.get_mut(&gfn).and_then(|p| p.secure.as_mut()) {
                Some(secure) => secure[in_page..in_page + n].copy_from_slice(chunk),
                None => self
                    .mem
                    .write_slice(chunk, GuestAddress(at))
                    .map_err(|e| Error::invalid_input("guest address", e.to_string()))?,
            }
            off += n;
        }
        Ok(())
    }

    fn check_guest_range(&self, gpa: u64, len: usize) -> Result<()> {
        if gpa.checked_add(len as u64).is_none() || !self.mem.check_range(GuestAddress(gpa), len) {
            return Err(Error::invalid_input(
                "guest address",
                format!("[{gpa:#x}, +{len:#x}) is not guest memory"),
            ));
        }
        Ok(())
    }

    /// A guest touch of a paged-out page: the ultravisor asks KVM for it (`H_SVM_PAGE_IN`).
    fn fault_in(&mut self, gfn: u64) -> Result<()> {
        if self.state(gfn) != PageState::PagedOut {
            return Ok(());
        }
        let rc = self.h_svm_page_in(gfn << self.shift, 0, u64::from(self.shift));
        if rc != H_SUCCESS {
            return Err(sim_error(
                "H_SVM_PAGE_IN",
                rc,
                "paging in a paged-out secure page",
            ));
        }
        Ok(())
    }

    // ----- ultracalls made by the guest ------------------------------------------------------------

    /// The guest's ultracall interface (`sc 2` with R3 = opcode): `UV_ESM`, `UV_SHARE_PAGE`,
    /// `UV_UNSHARE_PAGE`, `UV_UNSHARE_ALL_PAGES`. Other opcodes are hypervisor-only and return
    /// `U_PERMISSION` (simulator choice), unknown ones `U_FUNCTION`. Arguments are untrusted.
    pub fn guest_ultracall(&mut self, opcode: u64, args: [u64; 2]) -> i64 {
        match opcode {
            UV_ESM => self.uv_esm(args[0], args[1]),
            UV_SHARE_PAGE => self.uv_share_page(args[0], args[1]),
            UV_UNSHARE_PAGE => self.uv_unshare_page(args[0], args[1]),
            UV_UNSHARE_ALL_PAGES => self.uv_unshare_all_pages(),
            UV_PAGE_IN | UV_PAGE_OUT | UV_SVM_TERMINATE => {
                self.log(opcode_name(opcode), args, H_PERMISSION)
            }
            _ => self.log("UNKNOWN ULTRACALL", args, H_FUNCTION),
        }
    }

    /// `UV_ESM(esm_blob_addr, fdt)`: the guest asks to become secure.
    ///
    /// The ultravisor reads and checks the blob (`U_PARAMETER` if it cannot be read or is
    /// malformed) and the FDT magic (`U_P2`), tells KVM (`H_SVM_INIT_START`; when KVM refuses,
    /// `U_PERMISSION` for `H_AUTHORITY` and `U_NOT_AVAILABLE` otherwise — simulator choice),
    /// checks that every protected region is guest memory (`U_PARAMETER`) and that its contents
    /// match the blob's MAC (`U_PERMISSION`), aborting the transition (`H_SVM_INIT_ABORT`) on
    /// failure; then moves every guest page to secure memory (`H_SVM_PAGE_IN`) and finishes
    /// (`H_SVM_INIT_DONE`). A guest that is already secure gets `U_SUCCESS`.
    pub fn uv_esm(&mut self, esm_blob_addr: u64, fdt: u64) -> i64 {
        let args = [esm_blob_addr, fdt];
        let rc = self.esm(esm_blob_addr, fdt);
        self.log("UV_ESM", args, rc)
    }

    fn esm(&mut self, blob_addr: u64, fdt: u64) -> i64 {
        match self.mode {
            GuestMode::Secure => return H_SUCCESS,
            // Another vCPU's ESM is in progress (simulator choice).
            GuestMode::InitStarted => return H_BUSY,
            GuestMode::Normal => {}
        }
        let Ok(blob) = self.read_esm_blob(blob_addr) else {
            return H_PARAMETER;
        };
        let mut magic = [0u8; 4];
        if self.mem.read_slice(&mut magic, GuestAddress(fdt)).is_err()
            || u32::from_be_bytes(magic) != FDT_MAGIC
        {
            return H_P2;
        }
        match self.h_svm_init_start() {
            H_SUCCESS => {}
            H_AUTHORITY => return H_PERMISSION,
            _ => return H_NOT_AVAILABLE,
        }
        for r in blob.regions() {
            let Ok(len) = usize::try_from(r.len) else {
                self.h_svm_init_abort();
                return H_PARAMETER;
            };
            if !self.mem.check_range(GuestAddress(r.gpa), len) {
                self.h_svm_init_abort();
                return H_PARAMETER;
            }
        }
        let mem = &self.mem;
        let verified = blob.verify(&self.config.key, |gpa, buf| {
            mem.read_slice(buf, GuestAddress(gpa))
        });
        match verified {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.h_svm_init_abort();
                return H_PERMISSION;
            }
            Err(_) => {
                self.h_svm_init_abort();
                return H_PARAMETER;
            }
        }
        let gfns = self.gfns.clone();
        for gfn in gfns {
            if self.state(gfn) != PageState::Normal {
                continue;
            }
            let rc = self.h_svm_page_in(gfn << self.shift, 0, u64::from(self.shift));
            if rc != H_SUCCESS {
                self.h_svm_init_abort();
                return H_PARAMETER;
            }
        }
        self.h_svm_init_done()
    }

    fn read_esm_blob(&self, addr: u64) -> std::result::Result<EsmBlob, EsmError> {
        let mut header = [0u8; ESM_HEADER_LEN];
        self.mem
            .read_slice(&mut header, GuestAddress(addr))
            .map_err(|_| EsmError::Length {
                expected: ESM_HEADER_LEN,
                actual: 0,
            })?;
        let count = EsmBlob::peek_count(&header)?;
        let mut bytes = vec![0u8; EsmBlob::encoded_len(count)];
        addr.checked_add(bytes.len() as u64)
            .ok_or(EsmError::Length {
                expected: bytes.len(),
                actual: 0,
            })?;
        self.mem
            .read_slice(&mut bytes, GuestAddress(addr))
            .map_err(|_| EsmError::Length {
                expected: bytes.len(),
                actual: 0,
            })?;
        EsmBlob::parse(&bytes)
    }

    /// `UV_SHARE_PAGE(gfn, num)`: a secure guest shares `num` pages with the host. The pages are
    /// zeroed (their secure contents are destroyed, never handed to the host). `U_FUNCTION` when
    /// the guest is not secure (the documentation's `U_INVALID`), `U_PARAMETER` for a bad `gfn`,
    /// `U_P2` for a bad `num`; nothing changes on error.
    pub fn uv_share_page(&mut self, gfn: u64, num: u64) -> i64 {
        let rc = self.share_range(gfn, num, true);
        self.log("UV_SHARE_PAGE", [gfn, num], rc)
    }

    /// `UV_UNSHARE_PAGE(gfn, num)`: stop sharing; the pages become secure again, zeroed. Same
    /// return codes as [`uv_share_page`](Self::uv_share_page).
    pub fn uv_unshare_page(&mut self, gfn: u64, num: u64) -> i64 {
        let rc = self.share_range(gfn, num, false);
        self.log("UV_UNSHARE_PAGE", [gfn, num], rc)
    }

    /// `UV_UNSHARE_ALL_PAGES`: every shared page becomes secure again, zeroed.
    pub fn uv_unshare_all_pages(&mut self) -> i64 {
        let rc = if self.mode != GuestMode::Secure {
            H_FUNCTION
        } else {
            let shared: Vec<u64> = self
                .pages
                .iter()
                .filter(|(_, p)| p.state == PageState::Shared)
                .map(|(g, _)| *g)
                .collect();
            self.apply_share(&shared, false)
        };
        self.log("UV_UNSHARE_ALL_PAGES", [0, 0], rc)
    }

    fn share_range(&mut self, gfn: u64, num: u64, share: bool) -> i64 {
        if self.mode != GuestMode::Secure {
            return H_FUNCTION;
        }
        if !self.gfn_valid(gfn) {
            return H_PARAMETER;
        }
        if num == 0 || num > self.gfns.len() as u64 {
            return H_P2;
        }
        let Some(last) = gfn.checked_add(num - 1) else {
            return H_P2;
        };
        let range: Vec<u64> = (gfn..=last).collect();
        if !range.iter().all(|g| self.gfn_valid(*g)) {
            return H_P2;
        }
        self.apply_share(&range, share)
    }

    fn apply_share(&mut self, gfns: &[u64], share: bool) -> i64 {
        // Zero the host side first: it is the only step that touches memory and could fail, so
        // a failure leaves every page's state as it was.
        // Every transition zeroes the pages (ultravisor.rst), on both sides.
        for &gfn in gfns {
            if self.zero_host_page(gfn).is_err() {
                return H_PARAMETER;
            }
        }
        for &gfn in gfns {
            let page = if share {
                Page::shared()
            } else {
                Page::secure(Zeroizing::new(vec![0u8; self.page_size as usize]))
            };
            // Dropping the old page zeroizes any secure contents it held.
            self.pages.insert(gfn, page);
        }
        H_SUCCESS
    }

    // ----- hcalls the ultravisor makes into KVM ---------------------------------------------------

    /// `H_SVM_INIT_START`: `H_UNSUPPORTED` without secure memory or for a hash-MMU guest,
    /// `H_AUTHORITY` unless `KVM_CAP_PPC_SECURE_GUEST` was enabled, `H_STATE` when a transition
    /// already started (simulator choice), else `H_SUCCESS`.
    pub fn h_svm_init_start(&mut self) -> i64 {
        let rc = if !self.config.secure_guests_available || !self.config.radix_guest {
            H_UNSUPPORTED
        } else if !self.svm_enabled {
            H_AUTHORITY
        } else if self.mode != GuestMode::Normal {
            H_STATE
        } else {
            self.mode = GuestMode::InitStarted;
            H_SUCCESS
        };
        self.log("H_SVM_INIT_START", [0, 0], rc)
    }

    /// `H_SVM_INIT_DONE`: `H_UNSUPPORTED` before `H_SVM_INIT_START`, else the guest is secure.
    pub fn h_svm_init_done(&mut self) -> i64 {
        let rc = if self.mode == GuestMode::Normal {
            H_UNSUPPORTED
        } else {
            self.mode = GuestMode::Secure;
            H_SUCCESS
        };
        self.log("H_SVM_INIT_DONE", [0, 0], rc)
    }

    /// `H_SVM_INIT_ABORT`: `H_UNSUPPORTED` before `H_SVM_INIT_START`, `H_STATE` after
    /// `H_SVM_INIT_DONE`; otherwise every page goes back to host memory with its contents and the
    /// guest is normal again, and — as KVM does, so that the ultravisor fails the guest's
    /// `UV_ESM` — the call returns `H_PARAMETER`.
    pub fn h_svm_init_abort(&mut self) -> i64 {
        let rc = match self.mode {
            GuestMode::Normal => H_UNSUPPORTED,
            GuestMode::Secure => H_STATE,
            GuestMode::InitStarted => {
                self.return_pages_to_host();
                self.mode = GuestMode::Normal;
                H_PARAMETER
            }
        };
        self.log("H_SVM_INIT_ABORT", [0, 0], rc)
    }

    fn return_pages_to_host(&mut self) {
        let pages = std::mem::take(&mut self.pages);
        for (gfn, page) in pages {
            let gpa = GuestAddress(gfn << self.shift);
            // The ranges were validated when the pages moved in, so the writes cannot fail; the
            // page is host memory again either way.
            match page.state {
                PageState::Secure => {
                    if let Some(data) = &page.secure {
                        let _ = self.mem.write_slice(data, gpa);
                    }
                }
                // A page paged out during the transition comes back decrypted too; one whose
                // ciphertext the host modified comes back zeroed (simulator choice).
                PageState::PagedOut => {
                    let mut data = Zeroizing::new(vec![0u8; self.page_size as usize]);
                    let intact = self.mem.read_slice(&mut data, gpa).is_ok()
                        && self.tag_matches(gfn, page.nonce, &data, &page.tag);
                    if intact {
                        self.apply_keystream(page.nonce, &mut data);
                    } else {
                        data.fill(0);
                    }
                    let _ = self.mem.write_slice(&data, gpa);
                }
                PageState::Normal | PageState::Shared => {}
            }
        }
    }

    /// `H_SVM_PAGE_IN(gpa, flags, order)`: `H_UNSUPPORTED` before `H_SVM_INIT_START`, `H_P3` for
    /// an order other than the page shift, `H_P2` for flags other than `H_PAGE_IN_SHARED`,
    /// `H_PARAMETER` for an address that is not guest memory or a page already in secure memory;
    /// otherwise KVM hands the page to the ultravisor (`UV_PAGE_IN`), or shares it.
    pub fn h_svm_page_in(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        let rc = self.page_in(gpa, flags, order);
        self.log("H_SVM_PAGE_IN", [gpa, flags], rc)
    }

    fn page_in(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        if self.mode == GuestMode::Normal {
            return H_UNSUPPORTED;
        }
        if order != u64::from(self.shift) {
            return H_P3;
        }
        if flags & !H_PAGE_IN_SHARED != 0 {
            return H_P2;
        }
        let gfn = gpa >> self.shift;
        if gpa % self.page_size != 0 || !self.gfn_valid(gfn) {
            return H_PARAMETER;
        }
        if flags & H_PAGE_IN_SHARED != 0 {
            return self.apply_share(&[gfn], true);
        }
        if self.state(gfn) == PageState::Secure {
            return H_PARAMETER;
        }
        match self.uv_page_in(gpa, 0, order) {
            H_SUCCESS => H_SUCCESS,
            _ => H_PARAMETER,
        }
    }

    /// `H_SVM_PAGE_OUT(gpa, flags, order)`: the ultravisor gives a secure page back to KVM, which
    /// receives it encrypted (`UV_PAGE_OUT`). `H_UNSUPPORTED` before `H_SVM_INIT_START`, `H_P3`
    /// bad order, `H_P2` non-zero flags, `H_PARAMETER` bad address; a page that is not in secure
    /// memory is left alone (`H_SUCCESS`, as KVM does).
    pub fn h_svm_page_out(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        let rc = if self.mode == GuestMode::Normal {
            H_UNSUPPORTED
        } else if order != u64::from(self.shift) {
            H_P3
        } else if flags != 0 {
            H_P2
        } else if gpa % self.page_size != 0 || !self.gfn_valid(gpa >> self.shift) {
            H_PARAMETER
        } else if self.state(gpa >> self.shift) != PageState::Secure {
            H_SUCCESS
        } else {
            match self.uv_page_out(gpa, 0, order) {
                H_SUCCESS => H_SUCCESS,
                _ => H_PARAMETER,
            }
        };
        self.log("H_SVM_PAGE_OUT", [gpa, flags], rc)
    }

    // ----- ultracalls made by KVM -------------------------------------------------------------------

    /// `UV_PAGE_IN(gpa, flags, order)` (source page = the host page backing `gpa`): move a page
    /// into secure memory. A normal page's contents are copied in; a paged-out page's ciphertext
    /// is authenticated and decrypted (`U_PERMISSION` if the host modified it — simulator
    /// choice); the host page is zeroed. `U_FUNCTION` for a normal guest (the documentation's
    /// `U_INVALID`), `U_P3` bad address, `U_P4` unknown flags, `U_P5` unsupported order,
    /// `U_PARAMETER` for a page that is already secure or shared (simulator choice).
    pub fn uv_page_in(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        let rc = self.uv_page_in_inner(gpa, flags, order);
        self.log("UV_PAGE_IN", [gpa, flags], rc)
    }

    /// The argument checks `UV_PAGE_IN` and `UV_PAGE_OUT` share; the page's gfn when they pass.
    fn uv_page_args(&self, gpa: u64, flags: u64, order: u64) -> std::result::Result<u64, i64> {
        if self.mode == GuestMode::Normal {
            return Err(H_FUNCTION);
        }
        if gpa % self.page_size != 0 || !self.gfn_valid(gpa >> self.shift) {
            return Err(H_P3);
        }
        if flags != 0 {
            return Err(H_P4);
        }
        if order != u64::from(self.shift) {
            return Err(H_P5);
        }
        Ok(gpa >> self.shift)
    }

    fn uv_page_in_inner(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        let gfn = match self.uv_page_args(gpa, flags, order) {
            Ok(gfn) => gfn,
            Err(rc) => return rc,
        };
        let mut data = Zeroizing::new(vec![0u8; self.page_size as usize]);
        if self.mem.read_slice(&mut data, GuestAddress(gpa)).is_err() {
            return H_P3;
        }
        match self.pages.get(&gfn) {
            None => {}
            Some(p) if p.state == PageState::PagedOut => {
                if !self.tag_matches(gfn, p.nonce, &data, &p.tag) {
                    return H_PERMISSION;
                }
                self.apply_keystream(p.nonce, &mut data);
            }
            Some(_) => return H_PARAMETER,
        }
        if self.zero_host_page(gfn).is_err() {
            return H_P3;
        }
        self.pages.insert(gfn, Page::secure(data));
        H_SUCCESS
    }

    /// `UV_PAGE_OUT(gpa, flags, order)` (destination = the host page backing `gpa`): encrypt a
    /// secure page into host memory and keep only its integrity tag. Argument checks as
    /// [`uv_page_in`](Self::uv_page_in); `U_PARAMETER` for a page that is not secure
    /// (simulator choice).
    pub fn uv_page_out(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        let rc = self.uv_page_out_inner(gpa, flags, order);
        self.log("UV_PAGE_OUT", [gpa, flags], rc)
    }

    fn uv_page_out_inner(&mut self, gpa: u64, flags: u64, order: u64) -> i64 {
        let gfn = match self.uv_page_args(gpa, flags, order) {
            Ok(gfn) => gfn,
            Err(rc) => return rc,
        };
        let Some(plain) = self
            .pages
            .get(&gfn)
            .filter(|p| p.state == PageState::Secure)
            .and_then(|p| p.secure.as_ref())
        else {
            return H_PARAMETER;
        };
        let nonce = self.next_nonce;
        let mut cipher = Zeroizing::new(plain.to_vec());
        self.apply_keystream(nonce, &mut cipher);
        let tag = self.tag(gfn, nonce, &cipher);
        if self.mem.write_slice(&cipher, GuestAddress(gpa)).is_err() {
            return H_P3;
        }
        self.next_nonce = self.next_nonce.wrapping_add(1);
        self.pages.insert(
            gfn,
            Page {
                state: PageState::PagedOut,
                secure: None,
                nonce,
                tag,
            },
        );
        H_SUCCESS
    }

    // ----- helpers -------------------------------------------------------------------------

    fn gfn_valid(&self, gfn: u64) -> bool {
        self.gfns.binary_search(&gfn).is_ok()
    }

    fn state(&self, gfn: u64) -> PageState {
        self.pages.get(&gfn).map_or(PageState::Normal, |p| p.state)
    }

    fn zero_host_page(&self, gfn: u64) -> std::result::Result<(), vm_memory::GuestMemoryError> {
        let zero = vec![0u8; self.page_size as usize];
        self.mem.write_slice(&zero, GuestAddress(gfn << self.shift))
    }

    fn apply_keystream(&self, nonce: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&nonce.to_be_bytes());
        let mut c = Aes256Ctr::new((&*self.enc_key).into(), (&iv).into());
        c.apply_keystream(data);
    }

    /// The page-out MAC state over (gfn, nonce, ciphertext).
    fn tag_mac(&self, gfn: u64, nonce: u64, cipher: &[u8]) -> crate::key::HmacSha256 {
        let mut mac = self.mac_key.mac();
        mac.update(&gfn.to_le_bytes());
        mac.update(&nonce.to_le_bytes());
        mac.update(cipher);
        mac
    }

    fn tag(&self, gfn: u64, nonce: u64, cipher: &[u8]) -> [u8; 32] {
        self.tag_mac(gfn, nonce, cipher)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Constant-time check of a page-out tag.
    fn tag_matches(&self, gfn: u64, nonce: u64, cipher: &[u8], tag: &[u8; 32]) -> bool {
        self.tag_mac(gfn, nonce, cipher).verify_slice(tag).is_ok()
    }

    fn log(&mut self, call: &'static str, args: [u64; 2], rc: i64) -> i64 {
        if self.events.len() == EVENT_LOG_LEN {
            self.events.pop_front();
        }
        self.events.push_back(SimEvent { call, args, rc });
        rc
    }

    /// Check the simulator's internal invariants (for fuzzing and tests): page records only for
    /// guest memory, plaintext exactly for secure pages, no page records for a normal guest,
    /// the host never able to read a secure page.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        if self.mode == GuestMode::Normal && !self.pages.is_empty() {
            return Err(format!(
                "normal guest with {} page records",
                self.pages.len()
            ));
        }
        for (gfn, p) in &self.pages {
            if !self.gfn_valid(*gfn) {
                return Err(format!("page record for non-memory gfn {gfn:#x}"));
            }
            let has_plain = p
                .secure
                .as_ref()
                .is_some_and(|s| s.len() == self.page_size as usize);
            if has_plain != (p.state == PageState::Secure) || (p.state == PageState::Normal) {
                return Err(format!(
                    "gfn {gfn:#x} in {:?} with plaintext {has_plain}",
                    p.state
                ));
            }
            if p.state == PageState::Secure {
                let mut b = [0u8; 1];
                if self.host_read(gfn << self.shift, &mut b).is_ok() {
                    return Err(format!("host could read secure gfn {gfn:#x}"));
                }
            }
        }
        Ok(())
    }

    fn terminate(&mut self) -> std::result::Result<(), vm_memory::GuestMemoryError> {
        let mut first_err = Ok(());
        let pages = std::mem::take(&mut self.pages);
        for (gfn, mut page) in pages {
            if page.state != PageState::Shared {
                if let Err(e) = self.zero_host_page(gfn) {
                    if first_err.is_ok() {
                        first_err = Err(e);
                    }
                }
            }
            if let Some(s) = page.secure.as_mut() {
                s.zeroize();
            }
        }
        self.mode = GuestMode::Normal;
        self.terminations += 1;
        self.log("UV_SVM_TERMINATE", [0, 0], H_SUCCESS);
        first_err
    }
}

fn sim_error(op: &'static str, rc: i64, detail: &str) -> Error {
    Error::Firmware {
        op,
        status: FirmwareStatus {
            firmware: SIM_FIRMWARE,
            code: rc as u64,
            name: rc_name(rc).into(),
            detail: Some(detail.to_string()),
        },
    }
}

fn errno_error(op: &'static str, errno: i32) -> Error {
    Error::kvm(op, vmm_sys_util::errno::Error::new(errno))
}

impl SimUltravisor {
    /// The model of `KVM_CHECK_EXTENSION(KVM_CAP_PPC_SECURE_GUEST)`.
    pub fn kvm_check_extension(&mut self) -> bool {
        let ok = self.config.secure_guests_available;
        self.log("KVM_CHECK_EXTENSION", [0, 0], i64::from(ok));
        ok
    }

    /// The model of `KVM_ENABLE_CAP(KVM_CAP_PPC_SECURE_GUEST)`: `EINVAL` without secure memory
    /// (as `kvmhv_enable_svm` does), or the injected errno.
    pub fn kvm_enable_cap(&mut self) -> Result<()> {
        let errno = self
            .fail_enable_cap
            .take()
            .or(if self.config.secure_guests_available {
                None
            } else {
                Some(libc::EINVAL)
            });
        if let Some(errno) = errno {
            self.log("KVM_ENABLE_CAP", [0, 0], -i64::from(errno));
            return Err(errno_error(OP_ENABLE_CAP, errno));
        }
        self.svm_enabled = true;
        self.log("KVM_ENABLE_CAP", [0, 0], 0);
        Ok(())
    }

    /// The model of `KVM_PPC_SVM_OFF`: the injected errno, `EBUSY` while vCPUs run, else
    /// `UV_SVM_TERMINATE` for a secure (or transitioning) guest — secure memory scrubbed, host
    /// copies of secure and paged-out pages zeroed, every page normal again — and success (also
    /// for a normal guest). `svm_enabled` stays set, as in KVM.
    pub fn kvm_svm_off(&mut self) -> Result<()> {
        let errno = self
            .fail_svm_off
            .take()
            .or((self.running_vcpus > 0).then_some(libc::EBUSY));
        if let Some(errno) = errno {
            self.log("KVM_PPC_SVM_OFF", [0, 0], -i64::from(errno));
            return Err(errno_error(OP_SVM_OFF, errno));
        }
        let scrubbed = if self.mode == GuestMode::Normal {
            Ok(())
        } else {
            self.terminate()
        };
        self.log("KVM_PPC_SVM_OFF", [0, 0], 0);
        scrubbed.map_err(|e| Error::invalid_input("guest memory", format!("scrubbing: {e}")))
    }
}

impl Ultravisor for SimUltravisor {
    fn name(&self) -> &'static str {
        "simulated POWER ultravisor"
    }

    fn secure_guest_supported(&mut self, _vm: &VmFd) -> Result<bool> {
        Ok(self.kvm_check_extension())
    }

    fn enable_secure_guest(&mut self, _vm: &VmFd) -> Result<()> {
        self.kvm_enable_cap()
    }

    fn svm_off(&mut self, _vm: &VmFd) -> Result<()> {
        self.kvm_svm_off()
    }
}
