//! The `s390pv_lifecycle` fixture: a simulated host key and SE images built once (P-521 key
//! wrapping, AES-XTS components), and per input a fresh guest memory with an image loaded.

use std::sync::OnceLock;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::model::COMPONENTS;
use crate::image::{ComponentKind, ImageBuilder, SeImage};
use crate::se_header::Pcf;
use crate::uv::sim::SimConfig;

/// Guest memory per input.
pub const MEM_SIZE: usize = 1 << 20;
/// Where the images' SE header lies.
pub const HEADER_GPA: u64 = 0x8_0000;
/// Where the foreign header is written.
pub const FOREIGN_HEADER_GPA: u64 = 0x9_0000;

/// Built once per process.
pub struct Fixture {
    /// The simulated host (its key is the one the images are encrypted for).
    pub config: SimConfig,
    /// An image whose PCF allows dumping.
    pub dumpable: SeImage,
    /// The same components, dumping not allowed.
    pub sealed: SeImage,
    /// A well-formed SE header for another host.
    pub foreign_header: Vec<u8>,
}

fn image(key: p521::PublicKey, pcf: Pcf) -> SeImage {
    let built = ImageBuilder::new(vec![key], HEADER_GPA)
        .pcf(pcf)
        .component(ComponentKind::Kernel, 0x1_0000, vec![0x11; 5000])
        .component(ComponentKind::Cmdline, 0x3_0000, vec![0x22; 100])
        .component(ComponentKind::Stage3b, 0x4_0000, vec![0x33; 100])
        .build();
    match built {
        Ok(i) => i,
        // The builder's inputs are fixed: failing here is a bug, not a fuzz finding.
        #[allow(clippy::panic)]
        Err(e) => panic!("fixture image: {e}"),
    }
}

/// The process-wide fixture.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = SimConfig::random();
        let key = config.host_key.public_key();
        let foreign = SimConfig::random().host_key.public_key();
        Fixture {
            dumpable: image(key, Pcf::DEFAULT | Pcf::ALLOW_DUMPING),
            sealed: image(key, Pcf::DEFAULT),
            foreign_header: image(foreign, Pcf::DEFAULT).header,
            config,
        }
    })
}

impl Fixture {
    /// Pages per component (the same in every fixture image).
    pub fn pages(&self) -> [usize; COMPONENTS] {
        let mut pages = [0; COMPONENTS];
        for (p, c) in pages.iter_mut().zip(&self.dumpable.ipib.components) {
            *p = (c.unpack_size() / 4096) as usize;
        }
        pages
    }

    /// Fresh guest memory holding `image` and, at [`FOREIGN_HEADER_GPA`], the foreign header.
    /// `None` when the host cannot map it (not a finding).
    pub fn memory(&self, image: &SeImage) -> Option<GuestMemoryMmap> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).ok()?;
        image.load(&mem).ok()?;
        mem.write_slice(&self.foreign_header, GuestAddress(FOREIGN_HEADER_GPA))
            .ok()?;
        Some(mem)
    }
}
