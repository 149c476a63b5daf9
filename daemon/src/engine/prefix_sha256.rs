//! The LFS SHA-256 of a download, computed from the bytes on disk while the file's verified
//! prefix grows. The end-to-end read-back then costs little after the last chunk lands,
//! instead of a pass over the whole file at the moment the whole swarm finishes together.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::peer::LiveFile;

/// How often the background pass looks for newly placed chunks.
const STEP: Duration = Duration::from_millis(250);

pub struct PrefixSha256 {
    hasher: Sha256,
    /// Bytes hashed so far, all from the file's start.
    pos: u64,
    /// The next chunk to hash.
    next: u32,
    buf: Vec<u8>,
}

impl PrefixSha256 {
    fn new() -> Self {
        PrefixSha256 {
            hasher: Sha256::new(),
            pos: 0,
            next: 0,
            buf: Vec::new(),
        }
    }

    /// Hashes on, reading back from `file`, over every chunk already placed from `pos` on.
    fn advance(&mut self, live: &LiveFile, file: &File) -> std::io::Result<()> {
        while let Some(p) = live.get(self.next) {
            if p.offset != self.pos {
                return Err(std::io::Error::other("chunk table has a gap"));
            }
            self.buf.resize(p.size as usize, 0);
            file.read_exact_at(&mut self.buf, p.offset)?;
            self.hasher.update(&self.buf);
            self.pos += u64::from(p.size);
            self.next += 1;
        }
        Ok(())
    }

    /// The hex digest, if every byte up to `size` was hashed.
    fn finish(self, size: u64) -> Option<String> {
        (self.pos == size).then(|| {
            self.hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }
}

/// A background pass over a download's growing prefix. Dropping it stops the pass.
pub struct Background {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Option<PrefixSha256>>>,
    live: Arc<LiveFile>,
}

impl Background {
    pub fn start(live: Arc<LiveFile>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, l) = (stop.clone(), live.clone());
        let task = tokio::spawn(async move {
            let mut cur = PrefixSha256::new();
            loop {
                let l2 = l.clone();
                let (back, ok) = tokio::task::spawn_blocking(move || {
                    let ok = cur.advance(&l2, &l2.file).is_ok();
                    (cur, ok)
                })
                .await
                .ok()?;
                cur = back;
                if !ok {
                    return None;
                }
                if s.load(Ordering::Acquire) {
                    return Some(cur);
                }
                tokio::time::sleep(STEP).await;
            }
        });
        Background {
            stop,
            task: Some(task),
            live,
        }
    }

    /// The digest of the whole file, once every chunk is placed; None if the pass failed
    /// (the caller then reads the whole file again).
    pub async fn finish(mut self, size: u64) -> Option<String> {
        self.stop.store(true, Ordering::Release);
        let mut cur = self.task.take()?.await.ok()??;
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || {
            cur.advance(&live, &live.file).ok()?;
            cur.finish(size)
        })
        .await
        .ok()?
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Placed;
    use std::io::Write;

    fn scratch() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "zest-sha-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn digest_matches_a_full_pass_in_any_arrival_order() {
        let dir = scratch();
        let path = dir.join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let sizes = [100_000u32, 50_000, 150_000];
        let live = Arc::new(LiveFile::new(xet::XetHash::default(), file, sizes.len()));
        let bg = Background::start(live.clone());
        let mut offset = 0u64;
        let mut placed = Vec::new();
        for s in sizes {
            placed.push(Placed {
                hash: xet::XetHash::default(),
                size: s,
                offset,
            });
            offset += u64::from(s);
        }
        // Last chunk first: the pass waits for the gap to fill.
        live.set(2, placed[2]);
        tokio::time::sleep(STEP * 2).await;
        live.set(0, placed[0]);
        live.set(1, placed[1]);
        let got = bg.finish(data.len() as u64).await;
        let want: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, Some(want));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_incomplete_file_has_no_digest() {
        let dir = scratch();
        let path = dir.join("f");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let live = Arc::new(LiveFile::new(xet::XetHash::default(), file, 2));
        live.set(
            0,
            Placed {
                hash: xet::XetHash::default(),
                size: 500,
                offset: 0,
            },
        );
        assert_eq!(Background::start(live).finish(1000).await, None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
