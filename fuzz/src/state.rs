//! zestd's own files, which a crash, a full disk or a user can leave damaged: the resume
//! journal of a partial download, the index's records, the pull records.

use zestd::engine::journal::parse_records;
use zestd::index::{decode_manifest, decode_paths};
use zestd::pulls::record::PullRecord;

pub fn run(data: &[u8]) {
    let (records, checkpoints, used) = parse_records(data);
    // What was read lies inside the input, and a record is only kept whole.
    assert!(used <= data.len());
    assert!(records.len() * 48 + checkpoints.len() * 44 <= used);
    let _ = decode_paths(data);
    if let Some(chunks) = decode_manifest(data) {
        assert_eq!(chunks.len() * 36, data.len());
    }
    let _ = serde_json::from_slice::<PullRecord>(data);
}
