//! The OVMF footer GUID table and SEV metadata sections.
//!
//! The last bytes of an OVMF image (mapped to end just below 4 GiB) hold a GUID-tagged table,
//! scanned backwards from a footer 32 bytes before the end: `[data][u16 len][GUID]`, where `len`
//! counts data, length and GUID. Entries give the SEV-ES AP reset address, the kernel-hashes table
//! and the offset of the `ASEV` metadata block, whose sections QEMU turns into SNP launch pages.

use super::error::{MeasureError, Result};
use super::guid::{self, Guid};

/// The OVMF image ends at this guest-physical address.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// A footer-table entry header: `u16` length + GUID.
const ENTRY_HEADER: usize = 18;
/// The footer entry ends this many bytes before the end of the image.
const FOOTER_END_OFFSET: usize = 32;
/// `ASEV` header: signature, size, version, item count.
const METADATA_HEADER: usize = 16;
/// One metadata section descriptor: gpa, size, type.
const METADATA_DESC: usize = 12;

/// A SEV metadata section type (`OvmfSevMetadata.asm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `SNP_SEC_MEM` (1): pre-validated memory the firmware expects to be zero.
    SecMem,
    /// `SNP_SECRETS` (2): the SNP secrets page.
    Secrets,
    /// `CPUID` (3): the SNP CPUID page.
    Cpuid,
    /// `SVSM_CAA` (4): the SVSM calling-area page.
    SvsmCaa,
    /// `SNP_KERNEL_HASHES` (0x10): the page holding the kernel-hashes table.
    KernelHashes,
    /// Any other value.
    Unknown(u32),
}

impl SectionKind {
    /// The kind of a raw section type.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            1 => SectionKind::SecMem,
            2 => SectionKind::Secrets,
            3 => SectionKind::Cpuid,
            4 => SectionKind::SvsmCaa,
            0x10 => SectionKind::KernelHashes,
            other => SectionKind::Unknown(other),
        }
    }
}

/// One SEV metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetadataSection {
    /// Guest-physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// Section type.
    pub kind: SectionKind,
}

/// A parsed OVMF image (borrowing its bytes).
#[derive(Debug, Clone)]
pub struct OvmfImage<'a> {
    data: &'a [u8],
    end: u64,
    table: Vec<(Guid, &'a [u8])>,
    sections: Vec<MetadataSection>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn footer_err(why: impl Into<std::borrow::Cow<'static, str>>) -> MeasureError {
    MeasureError::FooterTable { why: why.into() }
}

fn metadata_err(why: impl Into<std::borrow::Cow<'static, str>>) -> MeasureError {
    MeasureError::Metadata { why: why.into() }
}

impl<'a> OvmfImage<'a> {
    /// Parses the footer table and the SEV metadata. An image without the footer GUID has an empty
    /// table (legacy SEV still measures it); a present but malformed table or metadata block is an
    /// error.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        Self::parse_at(data, FOUR_GIB)
    }

    /// Like [`OvmfImage::parse`] for an image (e.g. a Coconut-SVSM binary, same table format)
    /// that ends at `end_gpa` instead of 4 GiB.
    pub fn parse_at(data: &'a [u8], end_gpa: u64) -> Result<Self> {
        if (data.len() as u64) > end_gpa {
            return Err(MeasureError::invalid(
                "firmware image",
                format!("{} bytes do not fit below {end_gpa:#x}", data.len()),
            ));
        }
        let table = parse_footer_table(data)?;
        let mut image = OvmfImage {
            end: end_gpa,
            data,
            table,
            sections: Vec::new(),
        };
        image.sections = match image.table_entry(&guid::OVMF_SEV_METADATA) {
            Some(entry) => parse_metadata(data, entry)?,
            None => Vec::new(),
        };
        Ok(image)
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The GPA of the first byte (the image ends at 4 GiB, or where [`OvmfImage::parse_at`] put it).
    pub fn gpa(&self) -> u64 {
        self.end - self.data.len() as u64
    }

    /// The SVSM entry point (`SVSM_INFO` offset + the image's GPA), for a Coconut-SVSM image.
    pub fn svsm_entry(&self) -> Result<u64> {
        let off = self.entry_u32(&guid::SVSM_INFO, "SVSM_INFO_GUID", 0)?;
        self.gpa()
            .checked_add(u64::from(off))
            .ok_or_else(|| MeasureError::invalid("SVSM entry", "offset wraps the address space"))
    }

    /// All footer-table entries, nearest the footer first.
    pub fn table(&self) -> &[(Guid, &'a [u8])] {
        &self.table
    }

    /// The data of the footer-table entry `guid` (the one nearest the footer, as QEMU finds it).
    pub fn table_entry(&self, guid: &Guid) -> Option<&'a [u8]> {
        self.table.iter().find(|(g, _)| g == guid).map(|(_, d)| *d)
    }

    fn entry_u32(&self, guid: &Guid, name: &'static str, index: usize) -> Result<u32> {
        let entry = self
            .table_entry(guid)
            .ok_or(MeasureError::MissingTableEntry { name })?;
        u32_at(entry, index * 4).ok_or(MeasureError::ShortTableEntry {
            name,
            len: entry.len(),
            need: index * 4 + 4,
        })
    }

    /// The SEV-ES AP reset address (`SEV_ES_RESET_BLOCK`): IP in bits 15:0, CS base in 31:16.
    pub fn sev_es_reset_eip(&self) -> Result<u32> {
        self.entry_u32(&guid::SEV_ES_RESET_BLOCK, "SEV_ES_RESET_BLOCK_GUID", 0)
    }

    /// The kernel-hashes table area `(gpa, size)`, if the image has one with a nonzero GPA.
    pub fn sev_hashes_table(&self) -> Result<Option<(u32, u32)>> {
        if self.table_entry(&guid::SEV_HASH_TABLE_RV).is_none() {
            return Ok(None);
        }
        let gpa = self.entry_u32(&guid::SEV_HASH_TABLE_RV, "SEV_HASH_TABLE_RV_GUID", 0)?;
        let size = self.entry_u32(&guid::SEV_HASH_TABLE_RV, "SEV_HASH_TABLE_RV_GUID", 1)?;
        Ok((gpa != 0).then_some((gpa, size)))
    }

    /// The SEV secret area `(base, size)` (the default LAUNCH_SECRET target), if present.
    pub fn sev_secret_block(&self) -> Result<Option<(u32, u32)>> {
        if self.table_entry(&guid::SEV_SECRET_BLOCK).is_none() {
            return Ok(None);
        }
        let base = self.entry_u32(&guid::SEV_SECRET_BLOCK, "SEV_SECRET_BLOCK_GUID", 0)?;
        let size = self.entry_u32(&guid::SEV_SECRET_BLOCK, "SEV_SECRET_BLOCK_GUID", 1)?;
        Ok(Some((base, size)))
    }

    /// The SEV metadata sections in file order (empty without a metadata entry).
    pub fn metadata_sections(&self) -> &[MetadataSection] {
        &self.sections
    }

    /// Whether a metadata section of `kind` exists.
    pub fn has_section(&self, kind: SectionKind) -> bool {
        self.sections.iter().any(|s| s.kind == kind)
    }
}

fn parse_footer_table(data: &[u8]) -> Result<Vec<(Guid, &[u8])>> {
    let len = data.len();
    if len < FOOTER_END_OFFSET + ENTRY_HEADER {
        return Err(MeasureError::OvmfTooSmall { len });
    }
    let footer = len - FOOTER_END_OFFSET - ENTRY_HEADER;
    let guid_bytes = &data[footer + 2..footer + ENTRY_HEADER];
    if guid_bytes != guid::OVMF_TABLE_FOOTER.0 {
        return Ok(Vec::new());
    }
    let total = usize::from(u16_at(data, footer).unwrap_or(0));
    if total < ENTRY_HEADER {
        return Err(footer_err(format!(
            "table size {total} is below {ENTRY_HEADER}"
        )));
    }
    let table_len = total - ENTRY_HEADER;
    if table_len > footer {
        return Err(footer_err(format!("table size {total} exceeds the image")));
    }
    let mut rest = &data[footer - table_len..footer];
    let mut entries = Vec::new();
    while rest.len() >= ENTRY_HEADER {
        let hdr = rest.len() - ENTRY_HEADER;
        let size = usize::from(u16_at(rest, hdr).unwrap_or(0));
        if size < ENTRY_HEADER {
            return Err(footer_err(format!("Invalid entry size {size}")));
        }
        if size > rest.len() {
            return Err(footer_err(format!(
                "entry size {size} exceeds the {} table bytes left",
                rest.len()
            )));
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&rest[hdr + 2..]);
        let start = rest.len() - size;
        entries.push((Guid(g), &rest[start..hdr]));
        rest = &rest[..start];
    }
    Ok(entries)
}

fn parse_metadata(data: &[u8], entry: &[u8]) -> Result<Vec<MetadataSection>> {
    let offset = u32_at(entry, 0).ok_or(MeasureError::ShortTableEntry {
        name: "OVMF_SEV_META_DATA_GUID",
        len: entry.len(),
        need: 4,
    })? as usize;
    let start = data
        .len()
        .checked_sub(offset)
        .ok_or_else(|| metadata_err(format!("offset {offset:#x} exceeds the image")))?;
    let hdr = data
        .get(start..start + METADATA_HEADER)
        .ok_or_else(|| metadata_err("header exceeds the image"))?;
    if &hdr[0..4] != b"ASEV" {
        return Err(metadata_err("Wrong SEV metadata signature"));
    }
    let size = u32_at(hdr, 4).unwrap_or(0) as usize;
    let version = u32_at(hdr, 8).unwrap_or(0);
    let count = u32_at(hdr, 12).unwrap_or(0) as usize;
    if version != 1 {
        return Err(metadata_err(format!(
            "Wrong SEV metadata version {version}"
        )));
    }
    let items_len = count
        .checked_mul(METADATA_DESC)
        .filter(|n| n.saturating_add(METADATA_HEADER) <= size)
        .ok_or_else(|| {
            metadata_err(format!("{count} sections do not fit the {size}-byte block"))
        })?;
    let items = data
        .get(start + METADATA_HEADER..start + METADATA_HEADER + items_len)
        .ok_or_else(|| metadata_err("sections exceed the image"))?;
    Ok(items
        .chunks_exact(METADATA_DESC)
        .map(|d| MetadataSection {
            gpa: u32_at(d, 0).unwrap_or(0),
            size: u32_at(d, 4).unwrap_or(0),
            kind: SectionKind::from_raw(u32_at(d, 8).unwrap_or(0)),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic 4 KiB image with a footer table, a reset block, a hashes table and an `ASEV`
    /// block holding `sections`.
    pub(crate) fn synthetic_image(sections: &[(u32, u32, u32)]) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        // ASEV block at 0x100.
        let meta_off = 0x100;
        let size = METADATA_HEADER + sections.len() * METADATA_DESC;
        img[meta_off..meta_off + 4].copy_from_slice(b"ASEV");
        img[meta_off + 4..meta_off + 8].copy_from_slice(&(size as u32).to_le_bytes());
        img[meta_off + 8..meta_off + 12].copy_from_slice(&1u32.to_le_bytes());
        img[meta_off + 12..meta_off + 16].copy_from_slice(&(sections.len() as u32).to_le_bytes());
        for (i, (gpa, len, kind)) in sections.iter().enumerate() {
            let o = meta_off + METADATA_HEADER + i * METADATA_DESC;
            img[o..o + 4].copy_from_slice(&gpa.to_le_bytes());
            img[o + 4..o + 8].copy_from_slice(&len.to_le_bytes());
            img[o + 8..o + 12].copy_from_slice(&kind.to_le_bytes());
        }
        let mut table = Vec::new();
        let mut push = |g: &Guid, data: &[u8]| {
            table.extend_from_slice(data);
            table.extend_from_slice(&((data.len() + ENTRY_HEADER) as u16).to_le_bytes());
            table.extend_from_slice(&g.0);
        };
        push(&guid::SEV_HASH_TABLE_RV, &[0x00, 0x0C, 0x81, 0, 0, 4, 0, 0]);
        push(&guid::SEV_ES_RESET_BLOCK, &0x0080_B004u32.to_le_bytes());
        push(
            &guid::OVMF_SEV_METADATA,
            &((4096 - meta_off) as u32).to_le_bytes(),
        );
        let footer = 4096 - FOOTER_END_OFFSET - ENTRY_HEADER;
        let start = footer - table.len();
        img[start..footer].copy_from_slice(&table);
        img[footer..footer + 2]
            .copy_from_slice(&((table.len() + ENTRY_HEADER) as u16).to_le_bytes());
        img[footer + 2..footer + ENTRY_HEADER].copy_from_slice(&guid::OVMF_TABLE_FOOTER.0);
        img
    }

    #[test]
    fn parses_a_synthetic_image() {
        let img = synthetic_image(&[
            (0x80_0000, 0x9000, 1),
            (0x80D000, 0x1000, 2),
            (0x81_0000, 0x1000, 0x10),
        ]);
        let o = OvmfImage::parse(&img).unwrap();
        assert_eq!(o.gpa(), 0xFFFF_F000);
        assert_eq!(o.sev_es_reset_eip().unwrap(), 0x0080_B004);
        assert_eq!(o.sev_hashes_table().unwrap(), Some((0x81_0C00, 0x400)));
        assert_eq!(o.sev_secret_block().unwrap(), None);
        assert_eq!(o.metadata_sections().len(), 3);
        assert_eq!(o.metadata_sections()[1].kind, SectionKind::Secrets);
        assert!(o.has_section(SectionKind::KernelHashes));
        assert!(!o.has_section(SectionKind::Cpuid));
    }

    /// Regression: an SVSM offset near the top of the address space once overflowed `gpa + off`.
    #[test]
    fn svsm_entry_that_wraps_is_an_error() {
        let mut img = vec![0u8; 4096];
        let footer = 4096 - FOOTER_END_OFFSET - ENTRY_HEADER;
        let mut table = 0xFFFF_FFFFu32.to_le_bytes().to_vec();
        table.extend_from_slice(&((4 + ENTRY_HEADER) as u16).to_le_bytes());
        table.extend_from_slice(&guid::SVSM_INFO.0);
        img[footer - table.len()..footer].copy_from_slice(&table);
        img[footer..footer + 2]
            .copy_from_slice(&((table.len() + ENTRY_HEADER) as u16).to_le_bytes());
        img[footer + 2..footer + ENTRY_HEADER].copy_from_slice(&guid::OVMF_TABLE_FOOTER.0);
        let top = OvmfImage::parse_at(&img, u64::MAX).unwrap();
        assert!(matches!(
            top.svsm_entry(),
            Err(MeasureError::InvalidInput { .. })
        ));
        let low = OvmfImage::parse_at(&img, FOUR_GIB).unwrap();
        assert_eq!(low.svsm_entry().unwrap(), FOUR_GIB - 4096 + 0xFFFF_FFFF);
    }

    #[test]
    fn no_footer_means_empty_table() {
        let img = vec![0u8; 8192];
        let o = OvmfImage::parse(&img).unwrap();
        assert!(o.table().is_empty());
        assert_eq!(
            o.sev_es_reset_eip(),
            Err(MeasureError::MissingTableEntry {
                name: "SEV_ES_RESET_BLOCK_GUID"
            })
        );
        assert!(matches!(
            OvmfImage::parse(&[0u8; 49]),
            Err(MeasureError::OvmfTooSmall { len: 49 })
        ));
    }

    #[test]
    fn malformed_tables_are_typed_errors() {
        let good = synthetic_image(&[(0x80_0000, 0x1000, 1)]);
        let footer = 4096 - FOOTER_END_OFFSET - ENTRY_HEADER;
        // Footer length below the header size.
        let mut bad = good.clone();
        bad[footer..footer + 2].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            OvmfImage::parse(&bad),
            Err(MeasureError::FooterTable { .. })
        ));
        // Footer length beyond the image.
        let mut bad = good.clone();
        bad[footer..footer + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert!(matches!(
            OvmfImage::parse(&bad),
            Err(MeasureError::FooterTable { .. })
        ));
        // An entry length of 0.
        let mut bad = good.clone();
        bad[footer - ENTRY_HEADER..footer - ENTRY_HEADER + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            OvmfImage::parse(&bad),
            Err(MeasureError::FooterTable { .. })
        ));
        // Bad ASEV signature, version, count.
        for (off, val) in [(0x100usize, 0u32), (0x108, 2), (0x10C, 1000)] {
            let mut bad = good.clone();
            bad[off..off + 4].copy_from_slice(&val.to_le_bytes());
            assert!(
                matches!(OvmfImage::parse(&bad), Err(MeasureError::Metadata { .. })),
                "{off:#x}"
            );
        }
    }
}
