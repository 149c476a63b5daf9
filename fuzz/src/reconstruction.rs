//! Reconstruction answers of the CAS (v1 and v2 JSON): the path zestd takes from the answer
//! to a download plan, and the endpoint's rewrite of the answer's URLs.

use xet::reconstruction::Reconstruction;
use zestd::endpoint::rewrite;
use zestd::engine::file_plan::{XorbSpan, group_terms, place_terms, total_chunks};

pub fn run(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let version = if which & 1 == 0 { "v1" } else { "v2" };
    let parsed = if version == "v1" {
        Reconstruction::from_v1_json(body)
    } else {
        Reconstruction::from_v2_json(body)
    };
    if let Ok(recon) = parsed
        && recon.validate().is_ok()
    {
        plan(&recon);
    }
    // The endpoint rewrites what the CAS sent; what it returns is JSON again.
    if let Some(out) = rewrite::reconstruction_body(body, version, |f| {
        format!("http://127.0.0.1:4748/xorb/{}", f.xorb)
    }) && serde_json::from_slice::<serde_json::Value>(&out).is_err()
    {
        panic!("the rewritten reconstruction is not JSON");
    }
}

/// What the engine derives from a validated reconstruction, with the invariants it relies on.
fn plan(recon: &Reconstruction) {
    let terms = place_terms(recon);
    let total = total_chunks(&terms);
    let groups = group_terms(recon, &terms).ok();
    let mut offset = 0u64;
    let mut next_chunk = 0u32;
    for t in &terms {
        assert_eq!(t.offset, offset);
        assert_eq!(t.first_chunk, next_chunk);
        offset += t.len;
        next_chunk += t.chunks.len();
    }
    assert_eq!(next_chunk, total);
    if let Some(groups) = groups {
        for g in &groups {
            for &ti in &g.terms {
                assert!(g.chunks.contains(&terms[ti].chunks));
            }
        }
    }
    for span in XorbSpan::of(&terms) {
        for (a, b) in span.file_ranges(&terms) {
            assert!(a < b && b <= total);
        }
    }
}
