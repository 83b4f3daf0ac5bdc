//! Input files as bytes: a regular file is mapped read-only (no copy into fresh memory, which
//! costs more than hashing it), anything else (a pipe, a device) is read.
//!
//! A mapped file truncated while `cgs-measure` reads it makes the kernel raise SIGBUS on the
//! missing pages; a handler installed with the first mapping turns that into the CLI's error
//! contract (`Error: …` on stderr, exit status 1) instead of a crash. A file changed
//! concurrently gives a digest of mixed contents, as a read would.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::Once;

/// What the SIGBUS handler prints.
const TRUNCATED: &[u8] = b"Error: an input file was truncated while it was being read\n";

extern "C" fn on_sigbus(_signal: libc::c_int) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is a static.
    unsafe {
        libc::write(2, TRUNCATED.as_ptr().cast(), TRUNCATED.len());
        libc::_exit(1);
    }
}

/// Installs [`on_sigbus`] once per process (before the first mapping is read).
fn catch_sigbus() -> io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: a zeroed `sigaction` is a valid starting value; the handler only calls
        // async-signal-safe functions; no other code in this binary handles SIGBUS.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
    });
    result
}

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
        catch_sigbus()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "CGS_MEASURE_TRUNCATE_CHILD";

    /// Maps a file, truncates it and reads the lost pages: in a child process (this test binary
    /// re-run with [`CHILD`] set), which must end with the CLI's error, not a signal.
    #[test]
    fn truncated_mapping_is_an_error_not_a_crash() {
        if let Some(path) = std::env::var_os(CHILD) {
            std::fs::write(&path, vec![0x5Au8; 64 * 1024]).unwrap();
            let bytes = FileBytes::open(path.as_os_str()).unwrap();
            assert!(matches!(bytes, FileBytes::Mapped { .. }));
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
            panic!("read {sum} from a truncated mapping without SIGBUS");
        }
        let dir = std::env::temp_dir().join(format!("cgs-measure-trunc-{}", std::process::id()));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "file::tests::truncated_mapping_is_an_error_not_a_crash",
            ])
            .env(CHILD, &dir)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("Error: an input file was truncated"),
            "{stderr}"
        );
    }

    #[test]
    fn regular_files_are_mapped_and_others_read() {
        let path = std::env::temp_dir().join(format!("cgs-measure-map-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let mapped = FileBytes::open(path.as_os_str()).unwrap();
        assert!(matches!(mapped, FileBytes::Mapped { .. }));
        assert_eq!(&mapped[..], b"abc");
        std::fs::write(&path, b"").unwrap();
        let empty = FileBytes::open(path.as_os_str()).unwrap();
        assert!(matches!(empty, FileBytes::Read(ref v) if v.is_empty()));
        let _ = std::fs::remove_file(&path);
        let null = FileBytes::open(std::ffi::OsStr::new("/dev/null")).unwrap();
        assert!(matches!(null, FileBytes::Read(_)));
    }
}
