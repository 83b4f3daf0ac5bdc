//! Little-endian reading and writing of migration-stream fields, with every length checked.
//!
//! [`Reader`] never reads past its buffer: each accessor returns
//! [`StreamError::Malformed`] naming the record when the bytes run out, and [`Reader::finish`]
//! refuses trailing bytes, so a record's payload is consumed exactly.

use super::stream::StreamError;

/// A bounds-checked cursor over one record's payload.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    record: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, the payload of a `record` record.
    pub(crate) fn new(buf: &'a [u8], record: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            record,
        }
    }

    fn short(&self, want: usize) -> StreamError {
        StreamError::Malformed {
            record: self.record,
            why: format!(
                "payload too short: needs {want} more bytes at offset {}, has {}",
                self.pos,
                self.buf.len() - self.pos
            ),
        }
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], StreamError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.short(n))?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| self.short(n))?;
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StreamError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A `u8`.
    pub(crate) fn u8(&mut self) -> Result<u8, StreamError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `u16`.
    pub(crate) fn u16(&mut self) -> Result<u16, StreamError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, StreamError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, StreamError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u32` length prefix followed by that many bytes; the length must be in `1..=max`.
    pub(crate) fn blob(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], StreamError> {
        let len = self.u32()? as usize;
        if len == 0 || len > max {
            return Err(StreamError::Malformed {
                record: self.record,
                why: format!("{field} length {len} is outside 1..={max}"),
            });
        }
        self.bytes(len)
    }

    /// Check that the whole payload was consumed.
    pub(crate) fn finish(self) -> Result<(), StreamError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(StreamError::Malformed {
                record: self.record,
                why: format!(
                    "{} trailing bytes after the last field",
                    self.buf.len() - self.pos
                ),
            })
        }
    }
}

/// Appends little-endian fields to a payload buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    /// An empty payload with room for `cap` bytes.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(cap),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A `u32` length prefix and the bytes (callers bound the length first).
    pub(crate) fn blob(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32).bytes(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_checks_every_length() {
        let mut w = Writer::default();
        w.u8(1).u16(2).u32(3).u64(4).blob(b"abc");
        let mut r = Reader::new(&w.buf, "test");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.u64().unwrap(), 4);
        assert_eq!(r.blob("b", 3).unwrap(), b"abc");
        r.finish().unwrap();

        let mut r = Reader::new(&w.buf[..5], "test");
        r.u8().unwrap();
        r.u16().unwrap();
        assert!(matches!(r.u32(), Err(StreamError::Malformed { .. })));

        let mut r = Reader::new(&w.buf[15..], "test");
        assert!(r.blob("b", 2).is_err(), "length above the maximum");
        let mut r = Reader::new(&[0, 0, 0, 0], "test");
        assert!(r.blob("b", 2).is_err(), "zero length");
        let r = Reader::new(&[0], "test");
        assert!(r.finish().is_err(), "trailing byte");
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], "test");
        assert!(
            r.blob("b", usize::MAX).is_err(),
            "length beyond the payload"
        );
    }
}
