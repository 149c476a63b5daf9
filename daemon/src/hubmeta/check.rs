//! What an answer from the fleet must be before it is used. A listing or a ref cannot be
//! proven (only the Hub or a fleet member gives them); what can be proven is: a blob
//! against its id, a reconstruction against its own consistency (its bytes are checked
//! chunk by chunk against the file's Xet hash as they land, like any other download).

use sha1::Digest as _;
use xet::reconstruction::Reconstruction;
use xet::remote::TreeEntry;

use super::query::is_commit;

/// The most entries a listing from the fleet may have.
pub const MAX_TREE_ENTRIES: usize = 1_000_000;

pub fn commit(body: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(body).map_err(|_| "a commit id that is not text".to_string())?;
    if is_commit(s) {
        Ok(s.to_string())
    } else {
        Err(format!("a malformed commit id {s:?}"))
    }
}

pub fn tree(body: &[u8]) -> Result<Vec<TreeEntry>, String> {
    let entries: Vec<TreeEntry> =
        serde_json::from_slice(body).map_err(|e| format!("a malformed listing: {e}"))?;
    if entries.len() > MAX_TREE_ENTRIES {
        return Err(format!("a listing of {} entries", entries.len()));
    }
    Ok(entries)
}

pub fn reconstruction(body: &[u8]) -> Result<Reconstruction, String> {
    let r = Reconstruction::from_v2_json(body).map_err(|e| e.to_string())?;
    r.validate().map_err(|e| e.to_string())?;
    Ok(r)
}

/// `body` is the content `blob_id` names: its git blob id (40 hex), or its sha256 (64 hex,
/// an LFS object).
pub fn blob(blob_id: &str, body: &[u8]) -> Result<(), String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let got = if blob_id.len() == 64 {
        hex(&sha2::Sha256::digest(body))
    } else {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {}\0", body.len()).as_bytes());
        h.update(body);
        hex(&h.finalize())
    };
    if got == blob_id {
        Ok(())
    } else {
        Err(format!("bytes that hash to {got}, not {blob_id}"))
    }
}

/// Whatever `body` must be to answer `q`.
pub fn answer(q: &super::Query, body: &[u8]) -> Result<(), String> {
    use super::Query;
    match q {
        Query::Revision { .. } => commit(body).map(drop),
        Query::Tree { .. } => tree(body).map(drop),
        Query::Reconstruction(_) => reconstruction(body).map(drop),
        Query::Blob { blob_id, .. } => blob(blob_id, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_against_git_and_lfs_ids() {
        // `git hash-object` of "hello\n".
        blob("ce013625030ba8dba906f756967f9e9ca394464a", b"hello\n").unwrap();
        assert!(blob("ce013625030ba8dba906f756967f9e9ca394464a", b"hellO\n").is_err());
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        blob(sha, b"hello\n").unwrap();
        assert!(blob(sha, b"").is_err());
    }

    #[test]
    fn commits_and_listings_are_parsed_strictly() {
        assert!(commit("a".repeat(40).as_bytes()).is_ok());
        assert!(commit(b"main").is_err());
        assert!(commit(&[0xff; 40]).is_err());
        let t =
            tree(br#"[{"type":"file","path":"a","size":3,"oid":"x","lfs":null,"xetHash":null}]"#)
                .unwrap();
        assert_eq!(t[0].path, "a");
        assert!(tree(b"{}").is_err());
    }

    #[test]
    fn a_listing_survives_its_own_serialization() {
        let body = br#"[{"type":"file","path":"w.bin","size":9,"oid":"o","lfs":{"oid":"s","size":9,"pointerSize":130},"xetHash":"ab"}]"#;
        let t = tree(body).unwrap();
        assert_eq!(tree(&serde_json::to_vec(&t).unwrap()).unwrap(), t);
    }

    #[test]
    fn a_reconstruction_must_be_consistent() {
        let h = "d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb";
        let ok = format!(
            r#"{{"offset_into_first_range":0,"terms":[{{"hash":"{h}","unpacked_length":10,"range":{{"start":0,"end":1}}}}],"xorbs":{{"{h}":[{{"url":"http://x","ranges":[{{"chunks":{{"start":0,"end":1}},"bytes":{{"start":0,"end":20}}}}]}}]}}}}"#
        );
        let r = reconstruction(ok.as_bytes()).unwrap();
        assert_eq!(
            reconstruction(&serde_json::to_vec(&r).unwrap()).unwrap(),
            r,
            "what zestd keeps reads back"
        );
        let no_source = ok.replace(
            r#""start":0,"end":1},"bytes""#,
            r#""start":5,"end":6},"bytes""#,
        );
        assert_ne!(no_source, ok);
        assert!(reconstruction(no_source.as_bytes()).is_err());
    }
}
