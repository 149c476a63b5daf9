//! The short-lived CAS token the Hub's xet-read-token endpoint hands out.

use std::time::{SystemTime, UNIX_EPOCH};

/// A CAS access token, as the Hub's xet-read-token endpoint hands it out.
#[derive(Clone, Debug)]
pub struct CasToken {
    pub endpoint: String,
    pub access_token: String,
    pub expires_unix: u64,
}

impl CasToken {
    /// Refresh a minute early, as huggingface_hub does, so no request races the expiry.
    pub(crate) fn fresh(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.expires_unix > now + 60
    }
}
