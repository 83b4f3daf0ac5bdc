//! Input files as bytes: a regular file is mapped read-only (no copy into fresh memory, which
//! costs more than hashing it), anything else (a pipe, a device) is read.
//!
//! A mapped file must not be truncated while `cgs-measure` runs (the kernel would end the process
//! with SIGBUS); one changed concurrently gives a digest of mixed contents, as a read would.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

/// The bytes of a file.
pub enum FileBytes {
    /// A private read-only mapping of `len > 0` bytes at `ptr`, unmapped on drop.
    Mapped { ptr: NonNull<u8>, len: usize },
    /// Contents read into memory.
    Read(Vec<u8>),
}

impl FileBytes {
    /// Maps or reads the file at `path`.
    pub fn open(path: &std::ffi::OsStr) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() == 0 {
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            return Ok(FileBytes::Read(data));
        }
        let len = usize::try_from(meta.len())
            .ok()
            .filter(|&l| isize::try_from(l).is_ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        // SAFETY: a fresh private read-only mapping of `len` bytes of an open file at an address
        // the kernel picks; it aliases no Rust object. MAP_POPULATE only prefaults it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(FileBytes::Mapped { ptr, len })
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping is `len` readable bytes until `drop`, which needs `&mut self`
            // and so cannot run while the returned borrow of `self` lives; nothing in this
            // process writes to it (PROT_READ).
            FileBytes::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            FileBytes::Read(data) => data,
        }
    }
}

impl Drop for FileBytes {
    fn drop(&mut self) {
        if let FileBytes::Mapped { ptr, len } = self {
            // SAFETY: `ptr`/`len` are exactly the mapping `open` made, unmapped only here; no
            // borrow of it outlives `self`.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), *len);
            }
        }
    }
}
