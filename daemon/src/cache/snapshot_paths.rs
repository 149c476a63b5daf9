//! Whether a repo's file paths can all stand in one snapshot folder, decided before anything
//! is written: a pull that cannot link every file must not leave some of them behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The longest name one path component may have (Linux's NAME_MAX, ext4, xfs, btrfs,
/// tmpfs: bytes).
pub const NAME_MAX: usize = 255;

/// Why the paths cannot all be linked, or Ok.
pub fn check(rels: &[PathBuf]) -> Result<(), String> {
    for rel in rels {
        if let Some(long) = rel
            .components()
            .map(|c| c.as_os_str())
            .find(|c| c.len() > NAME_MAX)
        {
            return Err(format!(
                "{}: the name {:?}… is {} bytes, over the {NAME_MAX} a file system allows",
                rel.display(),
                long.to_string_lossy().chars().take(40).collect::<String>(),
                long.len()
            ));
        }
    }
    let files: HashSet<&Path> = rels.iter().map(PathBuf::as_path).collect();
    for rel in rels {
        if let Some(dir) = rel.ancestors().skip(1).find(|a| files.contains(a)) {
            return Err(format!(
                "{} is listed both as a file and as the folder of {}; one snapshot cannot hold both",
                dir.display(),
                rel.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn ordinary_repos_pass() {
        assert!(check(&paths(&["a/b.txt", "a/c/d.bin", "config.json", "ab"])).is_ok());
    }

    #[test]
    fn a_file_that_is_also_a_folder_is_refused() {
        let e = check(&paths(&["x/y/z.bin", "x/y"])).unwrap_err();
        assert!(e.contains("x/y is listed both as a file"), "{e}");
    }

    #[test]
    fn a_name_over_the_limit_is_refused_and_one_at_it_passes() {
        let at = "n".repeat(NAME_MAX);
        assert!(check(&paths(&[&format!("d/{at}")])).is_ok());
        let over = "n".repeat(NAME_MAX + 1);
        let e = check(&paths(&[&format!("d/{over}")])).unwrap_err();
        assert!(e.contains("256 bytes"), "{e}");
    }
}
