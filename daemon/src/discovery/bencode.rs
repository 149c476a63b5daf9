//! Just enough bencode (BEP 3) to read a tracker's announce reply. The input is untrusted:
//! lengths are checked against what is left, and nesting is bounded.

use std::collections::BTreeMap;

use thiserror::Error;

const MAX_DEPTH: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BencodeError {
    #[error("bencode ends early")]
    Eof,
    #[error("bencode is malformed at byte {0}")]
    Malformed(usize),
    #[error("bencode nests too deep")]
    TooDeep,
    #[error("bytes after the bencode value")]
    Trailing,
}

/// The first value of `input`, and how many bytes follow it. Real trackers end replies with
/// a CRLF, or more, after the value; clients (libtorrent among them) read the value and
/// ignore the rest.
pub fn decode_first(input: &[u8]) -> Result<(Value, usize), BencodeError> {
    let mut p = Parser { input, at: 0 };
    let v = p.value(0)?;
    Ok((v, input.len() - p.at))
}

pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    match decode_first(input)? {
        (v, 0) => Ok(v),
        _ => Err(BencodeError::Trailing),
    }
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input.get(self.at).copied().ok_or(BencodeError::Eof)
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut d = BTreeMap::new();
                while self.peek()? != b'e' {
                    let k = self.string()?;
                    let v = self.value(depth + 1)?;
                    d.insert(k, v);
                }
                self.at += 1;
                Ok(Value::Dict(d))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.string()?)),
            _ => Err(BencodeError::Malformed(self.at)),
        }
    }

    fn number(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.at;
        while self.peek()? != end {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.input[start..self.at])
            .map_err(|_| BencodeError::Malformed(start))?;
        self.at += 1;
        text.parse().map_err(|_| BencodeError::Malformed(start))
    }

    fn string(&mut self) -> Result<Vec<u8>, BencodeError> {
        if !self.peek()?.is_ascii_digit() {
            return Err(BencodeError::Malformed(self.at));
        }
        let start = self.at;
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| BencodeError::Malformed(start))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.input.len())
            .ok_or(BencodeError::Eof)?;
        let s = self.input[self.at..end].to_vec();
        self.at = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_compact_announce_reply() {
        let mut r = b"d8:intervali1800e12:min intervali30e5:peers6:".to_vec();
        r.extend_from_slice(&[127, 0, 0, 1, 0x12, 0x8b]);
        r.extend_from_slice(b"e");
        let v = decode(&r).unwrap();
        assert_eq!(v.get("interval").and_then(Value::int), Some(1800));
        assert_eq!(v.get("min interval").and_then(Value::int), Some(30));
        assert_eq!(
            v.get("peers").and_then(Value::bytes).map(<[u8]>::len),
            Some(6)
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"d",
            b"i12",
            b"5:abc",
            b"99999999999999999999:x",
            b"-1:x",
            b"ie",
            b"de_",
            b"x",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert_eq!(decode(deep.as_bytes()), Err(BencodeError::TooDeep));
    }
}
