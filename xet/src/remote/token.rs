//! Where a Hugging Face user token comes from, in huggingface_hub's order.

use std::path::PathBuf;

/// `HF_TOKEN`, then `HUGGING_FACE_HUB_TOKEN`, then the token file (`HF_TOKEN_PATH`, else
/// `$HF_HOME/token`, else `~/.cache/huggingface/token`). Empty values count as unset.
pub fn user_token() -> Option<String> {
    for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(t) = std::env::var(var).ok().and_then(clean) {
            return Some(t);
        }
    }
    std::fs::read_to_string(token_path()?).ok().and_then(clean)
}

/// The token file huggingface_hub reads and `hf auth login` writes.
pub fn token_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_TOKEN_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Some(hf_home()?.join("token"))
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p).join("huggingface"));
    }
    Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface"))
}

fn clean(s: String) -> Option<String> {
    let t = s.replace(['\r', '\n'], "").trim().to_string();
    (!t.is_empty()).then_some(t)
}
