//! Benchmark helper: generates model-like data and measures the xet crate's kernels.
//!
//! `zest-bench gen-bf16 PATH BYTES` writes bf16-like weights;
//! `zest-bench kernels PATH` prints the throughput of chunking, chunk hashing, the full
//! file hash, and LZ4 / BG4-LZ4 decompression over the file's own chunks.

use std::io::Write;
use std::time::Instant;

use xet::chunking::Chunker;
use xet::compression::{CompressionScheme, compress_into, decompress_into};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("gen-bf16") if args.len() == 4 => generate(&args[2], &args[3]),
        Some("kernels") if args.len() == 3 => kernels(&args[2]),
        _ => Err("usage: zest-bench gen-bf16 PATH BYTES | zest-bench kernels PATH".to_owned()),
    };
    if let Err(e) = result {
        eprintln!("zest-bench: {e}");
        std::process::exit(2);
    }
}

fn generate(path: &str, bytes: &str) -> Result<(), String> {
    let n: usize = bytes.parse().map_err(|e| format!("size {bytes:?}: {e}"))?;
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?);
    // Written in 64 MiB pieces with distinct seeds so memory stays small and no piece repeats.
    let piece = 64 << 20;
    let mut written = 0;
    let mut seed = 1;
    while written < n {
        let len = piece.min(n - written);
        f.write_all(&zest_tests::bf16_weights(len, seed))
            .map_err(|e| e.to_string())?;
        written += len;
        seed += 1;
    }
    f.flush().map_err(|e| e.to_string())
}

fn rate(label: &str, bytes: usize, secs: f64) {
    println!(
        "{label:<28} {:>8.0} MiB/s  ({:.3} s for {} MiB)",
        bytes as f64 / secs / 1048576.0,
        secs,
        bytes >> 20
    );
}

fn kernels(path: &str) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;

    let t = Instant::now();
    let mut chunker = Chunker::new();
    let mut bounds = Vec::new();
    let mut pos = 0;
    while let Some(n) = chunker.next_boundary(&data[pos..]) {
        pos += n;
        bounds.push(pos);
    }
    if chunker.finish().is_some() {
        bounds.push(data.len());
    }
    rate("chunking (1 thread)", data.len(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut start = 0;
    for &end in &bounds {
        std::hint::black_box(xet::hash::chunk_hash(&data[start..end]));
        start = end;
    }
    rate(
        "chunk hashing (1 thread)",
        data.len(),
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    let d = xet::file_hash::hash_reader(&data[..]).map_err(|e| e.to_string())?;
    rate(
        "file hash (pipeline)",
        data.len(),
        t.elapsed().as_secs_f64(),
    );
    std::hint::black_box(d);

    let t = Instant::now();
    let d = xet::piece_hash::hash_at(&data[..], data.len() as u64).map_err(|e| e.to_string())?;
    rate(
        "file hash (pieces, zestctl)",
        data.len(),
        t.elapsed().as_secs_f64(),
    );
    std::hint::black_box(d);

    // Decompression over the file's own chunks, as a download sees them.
    let sample = &bounds[..bounds.len().min(4096)];
    for scheme in [CompressionScheme::Lz4, CompressionScheme::ByteGrouping4Lz4] {
        let mut compressed = Vec::new();
        let mut start = 0;
        let mut raw = 0;
        for &end in sample {
            let mut c = Vec::new();
            compress_into(scheme, &data[start..end], &mut c).map_err(|e| e.to_string())?;
            compressed.push((c, end - start));
            raw += end - start;
            start = end;
        }
        let t = Instant::now();
        let mut out = Vec::with_capacity(xet::MAX_CHUNK_SIZE);
        for (c, len) in &compressed {
            out.clear();
            decompress_into(scheme, c, *len, &mut out).map_err(|e| e.to_string())?;
        }
        let stored: usize = compressed.iter().map(|(c, _)| c.len()).sum();
        rate(
            &format!("{} decompress", scheme.name()),
            raw,
            t.elapsed().as_secs_f64(),
        );
        println!(
            "{:<28} ratio {:.3}",
            format!("{} compressed size", scheme.name()),
            stored as f64 / raw as f64
        );
    }
    Ok(())
}
