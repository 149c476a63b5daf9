//! Bounds-checked little-endian reads over a byte slice, shared by the xorb and shard parsers.

use crate::error::{Error, Result};
use crate::hash::XetHash;

/// A cursor whose every read fails with `Truncated` instead of panicking past the end.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(Error::Truncated {
                what: "structure",
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn hash(&mut self) -> Result<XetHash> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(XetHash(a))
    }
}
