//! A sample Secure Execution image builder (for tests, examples and the simulator).
//!
//! [`ImageBuilder`] does what `genprotimg`/`pvimg` do for the secured part of an image: it pads
//! each component to whole pages, encrypts every page with AES-256-XTS under the tweak
//! `{prefix, offset}`, accumulates the SHA-512 page/address/tweak list digests over the
//! ciphertext, wraps a fresh protection key for each target host key (P-521 ECDH with an
//! ephemeral customer key, `SHA-256(Z ‖ 1)`, AES-256-GCM) and seals the header with AES-256-GCM.
//! The result is an SE header, a PV IPL block and the encrypted components, ready to be written
//! into guest memory. It does not build the unencrypted boot loader (stage3a) of a real image.

use p521::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zeroize::Zeroizing;

use cgs_core::{Error, Result};

use crate::crypto::{self, PAGE};
use crate::ipl::{PvComponent, PvIplBlock};
use crate::se_header::{
    header_len, KeySlot, Pcf, SeHeader, SeSecrets, DEFAULT_PSW_MASK, SE_VERSION_1,
};

/// Component kinds and their tweak type (pvimg's `ComponentKind`, in image order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComponentKind {
    /// The kernel (tweak type 40).
    Kernel,
    /// The initial RAM disk (tweak type 50).
    Ramdisk,
    /// The kernel command line (tweak type 60).
    Cmdline,
    /// The stage3b loader, always last (tweak type 70).
    Stage3b,
}

impl ComponentKind {
    /// The 16-bit tweak type in the top of the tweak prefix.
    pub fn tweak_type(self) -> u16 {
        match self {
            ComponentKind::Kernel => 40,
            ComponentKind::Ramdisk => 50,
            ComponentKind::Cmdline => 60,
            ComponentKind::Stage3b => 70,
        }
    }
}

/// One encrypted component as it goes into guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedComponent {
    /// What it is.
    pub kind: ComponentKind,
    /// Guest address.
    pub addr: u64,
    /// Tweak prefix.
    pub tweak_pref: u64,
    /// The ciphertext (whole pages).
    pub data: Vec<u8>,
}

/// A built image: header, IPL block, components and the customer communication key (which the
/// guest owner keeps to decrypt dumps).
pub struct SeImage {
    /// The SE header bytes.
    pub header: Vec<u8>,
    /// The PV IPL block (its `pv_header_addr` is where [`load`](Self::load) puts the header).
    pub ipib: PvIplBlock,
    /// The encrypted components, in UNPACK order.
    pub components: Vec<EncryptedComponent>,
    /// The customer communication key.
    pub cck: Zeroizing<[u8; 32]>,
    /// The initial secure PSW address.
    pub psw_addr: u64,
}

impl std::fmt::Debug for SeImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeImage")
            .field("header_len", &self.header.len())
            .field("ipib", &self.ipib)
            .field("components", &self.components.len())
            .field("cck", &"<redacted>")
            .finish()
    }
}

impl SeImage {
    /// Write the header and the encrypted components into guest memory (the header at the
    /// IPIB's `pv_header_addr`), as the boot loader leaves them before diag 308.
    pub fn load(&self, mem: &GuestMemoryMmap) -> Result<()> {
        let write = |data: &[u8], addr: u64| {
            mem.write_slice(data, GuestAddress(addr)).map_err(|e| {
                Error::invalid_input("SE image", format!("cannot load at {addr:#x}: {e}"))
            })
        };
        write(&self.header, self.ipib.pv_header_addr)?;
        for c in &self.components {
            write(&c.data, c.addr)?;
        }
        Ok(())
    }
}

/// Builds a sample SE image for one or more host keys.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    host_keys: Vec<PublicKey>,
    pcf: Pcf,
    scf: u64,
    header_addr: u64,
    psw_addr: Option<u64>,
    components: Vec<(ComponentKind, u64, Vec<u8>)>,
}

impl ImageBuilder {
    /// A builder for images the hosts with these public keys can run; PCF = the tools' default
    /// (0xE0), header placed at `header_addr`.
    pub fn new(host_keys: Vec<PublicKey>, header_addr: u64) -> Self {
        ImageBuilder {
            host_keys,
            pcf: Pcf::DEFAULT,
            scf: 0,
            header_addr,
            psw_addr: None,
            components: Vec::new(),
        }
    }

    /// Set the plaintext control flags (e.g. `Pcf::DEFAULT | Pcf::ALLOW_DUMPING`).
    pub fn pcf(mut self, pcf: Pcf) -> Self {
        self.pcf = pcf;
        self
    }

    /// Set the secret control flags.
    pub fn scf(mut self, scf: u64) -> Self {
        self.scf = scf;
        self
    }

    /// Set the initial secure PSW address (default: the last component's address).
    pub fn psw_addr(mut self, addr: u64) -> Self {
        self.psw_addr = Some(addr);
        self
    }

    /// Add a component at guest address `addr` (4 KiB aligned).
    pub fn component(mut self, kind: ComponentKind, addr: u64, data: impl Into<Vec<u8>>) -> Self {
        self.components.push((kind, addr, data.into()));
        self
    }

    /// Encrypt the components and seal the header.
    pub fn build(&self) -> Result<SeImage> {
        let bad = |why: String| Error::invalid_input("SE image", why);
        if self.host_keys.is_empty() {
            return Err(bad("at least one host key is needed".into()));
        }
        if self.host_keys.len() > 95 {
            return Err(bad("at most 95 host keys fit a two-page header".into()));
        }
        if self.components.is_empty() {
            return Err(bad("at least one component is needed".into()));
        }
        let mut end = 0u64;
        for (i, (kind, addr, _)) in self.components.iter().enumerate() {
            if addr % PAGE as u64 != 0 {
                return Err(bad(format!(
                    "component {i} address {addr:#x} is not 4 KiB aligned"
                )));
            }
            if i > 0 && (*addr < end || *kind <= self.components[i - 1].0) {
                return Err(bad(format!(
                    "component {i} must come after component {} in address and kind",
                    i - 1
                )));
            }
            let len = self.components[i].2.len().max(1).div_ceil(PAGE) as u64 * PAGE as u64;
            end = addr
                .checked_add(len)
                .ok_or_else(|| bad(format!("component {i} wraps")))?;
        }
        let hend = self
            .header_addr
            .saturating_add(header_len(self.host_keys.len()) as u64);
        if self
            .components
            .iter()
            .any(|(_, a, d)| self.header_addr < a + d.len().max(1) as u64 && *a < hend)
        {
            return Err(bad("the header overlaps a component".into()));
        }

        let mut secrets = SeSecrets {
            cck: [0; 32],
            xts_key: [0; 64],
            psw_mask: DEFAULT_PSW_MASK,
            psw_addr: self
                .psw_addr
                .unwrap_or(self.components[self.components.len() - 1].1),
            scf: self.scf,
        };
        OsRng.fill_bytes(&mut secrets.cck);
        OsRng.fill_bytes(&mut secrets.xts_key);

        let (mut pld, mut ald, mut tld) = (Sha512::new(), Sha512::new(), Sha512::new());
        let mut nep = 0u64;
        let mut components = Vec::with_capacity(self.components.len());
        for (kind, addr, data) in &self.components {
            let mut random = [0u8; 8];
            OsRng.fill_bytes(&mut random);
            let tweak_pref =
                (u64::from(kind.tweak_type()) << 48) | (u64::from_be_bytes(random) >> 16);
            let pages = data.len().max(1).div_ceil(PAGE);
            let mut out = data.clone();
            out.resize(pages * PAGE, 0);
            for (i, page) in out.chunks_mut(PAGE).enumerate() {
                let offset = (i * PAGE) as u64;
                let tweak = crypto::page_tweak(tweak_pref, offset);
                if !self.pcf.contains(Pcf::NO_COMPONENT_ENCRYPTION) {
                    crypto::xts_encrypt_page(&secrets.xts_key, tweak, page);
                }
                pld.update(&*page);
                ald.update((addr + offset).to_be_bytes());
                tld.update(tweak);
                nep += 1;
            }
            components.push(EncryptedComponent {
                kind: *kind,
                addr: *addr,
                tweak_pref,
                data: out,
            });
        }

        let cust = SecretKey::random(&mut OsRng);
        let mut prot = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut prot[..]);
        let key_slots = self
            .host_keys
            .iter()
            .map(|host| {
                let xkey = crypto::exchange_key(&cust, host);
                let mut wrapped = *prot;
                let tag = crypto::gcm_seal(&xkey, &[0u8; 12], &[], &mut wrapped);
                KeySlot {
                    phkh: crypto::host_key_hash(host),
                    wrapped_key: wrapped,
                    tag,
                }
            })
            .collect();
        let mut iv = [0u8; 12];
        OsRng.fill_bytes(&mut iv);
        let plain = secrets.encode();
        let hdr = SeHeader {
            version: SE_VERSION_1,
            iv,
            sea: plain.len() as u64,
            nep,
            pcf: self.pcf,
            cust_pub_key: crypto::public_key_coords(&cust.public_key()),
            pld: pld.finalize().into(),
            ald: ald.finalize().into(),
            tld: tld.finalize().into(),
            key_slots,
            // Placeholder of the right size: the plaintext only ever lives in `plain` (zeroized)
            // and, for the moment of sealing in place, in `bytes`.
            encrypted: vec![0; plain.len()],
            tag: [0; 16],
        };
        let mut bytes = hdr.encode();
        let aad_len = hdr.aad_len();
        let (aad, rest) = bytes.split_at_mut(aad_len);
        rest[..plain.len()].copy_from_slice(&plain[..]);
        let tag = crypto::gcm_seal(&prot, &iv, aad, &mut rest[..plain.len()]);
        let tlen = bytes.len();
        bytes[tlen - 16..].copy_from_slice(&tag);

        let ipib = PvIplBlock {
            version: 1,
            pv_version: 1,
            pv_header_addr: self.header_addr,
            pv_header_size: bytes.len() as u64,
            components: components
                .iter()
                .map(|c| PvComponent {
                    tweak_pref: c.tweak_pref,
                    addr: c.addr,
                    size: c.data.len() as u64,
                })
                .collect(),
        };
        Ok(SeImage {
            header: bytes,
            ipib,
            components,
            cck: Zeroizing::new(secrets.cck),
            psw_addr: secrets.psw_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_parseable_header_and_ipib() {
        let host = SecretKey::random(&mut OsRng).public_key();
        let img = ImageBuilder::new(vec![host], 0x8_0000)
            .pcf(Pcf::DEFAULT | Pcf::ALLOW_DUMPING)
            .component(ComponentKind::Kernel, 0x1_0000, vec![0xAB; 5000])
            .component(ComponentKind::Cmdline, 0x3_0000, b"console=ttyS0".to_vec())
            .component(ComponentKind::Stage3b, 0x4_0000, vec![1; 10])
            .build()
            .unwrap();
        let h = SeHeader::parse(&img.header).unwrap();
        assert_eq!(h.nep, 4);
        assert!(h.dump_allowed());
        assert_eq!(h.key_slots[0].phkh, crypto::host_key_hash(&host));
        assert_eq!(img.psw_addr, 0x4_0000);
        let ipib = PvIplBlock::parse(&img.ipib.encode()).unwrap();
        assert_eq!(ipib, img.ipib);
        assert_eq!(ipib.components[0].size, 0x2000);
        assert_eq!(ipib.components[0].tweak_pref >> 48, 40);
        // The components are really encrypted.
        assert_ne!(img.components[0].data[..5000], vec![0xAB; 5000][..]);
    }

    #[test]
    fn refuses_bad_layouts() {
        let host = SecretKey::random(&mut OsRng).public_key();
        let b = ImageBuilder::new(vec![host], 0x8_0000);
        assert!(b.clone().build().is_err());
        assert!(ImageBuilder::new(vec![], 0)
            .component(ComponentKind::Kernel, 0, [1])
            .build()
            .is_err());
        assert!(b
            .clone()
            .component(ComponentKind::Kernel, 0x1001, [1])
            .build()
            .is_err());
        assert!(b
            .clone()
            .component(ComponentKind::Cmdline, 0x1000, [1])
            .component(ComponentKind::Kernel, 0x2000, [1])
            .build()
            .is_err());
        assert!(b
            .clone()
            .component(ComponentKind::Kernel, 0x1000, vec![1; 8192])
            .component(ComponentKind::Cmdline, 0x2000, [1])
            .build()
            .is_err());
        assert!(b
            .component(ComponentKind::Kernel, 0x8_0000, [1])
            .build()
            .is_err());
    }
}
