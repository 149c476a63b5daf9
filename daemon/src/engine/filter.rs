//! `--include` / `--exclude`, with huggingface_hub's `filter_repo_objects` semantics:
//! `fnmatch` patterns (where `*` also matches `/`), and a trailing `/` meaning "everything
//! below".

pub struct Filter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        let norm = |p: &String| {
            if p.ends_with('/') {
                format!("{p}*")
            } else {
                p.clone()
            }
        };
        Filter {
            include: include.iter().map(norm).collect(),
            exclude: exclude.iter().map(norm).collect(),
        }
    }

    pub fn accepts(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| fnmatch(path, p)))
            && !self.exclude.iter().any(|p| fnmatch(path, p))
    }
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`; no special `/`.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    matches(&n, &p)
}

fn matches(n: &[char], p: &[char]) -> bool {
    // Iterative wildcard matching with one backtrack point for the last `*`.
    let (mut ni, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    ni += 1;
                    pi += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni]) {
                        if ok {
                            ni += 1;
                            pi += len;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        // An unclosed `[` is a literal, as in Python.
                        ni += 1;
                        pi += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    ni += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p`; returns (matched, class length).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && i > start {
            break;
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let hi = p[i + 2];
            if ch <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_python_fnmatch() {
        assert!(fnmatch("model.safetensors", "*.safetensors"));
        assert!(fnmatch("a/b/model.safetensors", "*.safetensors"));
        assert!(fnmatch("nested/x.bin", "nested/*"));
        assert!(!fnmatch("config.json", "*.safetensors"));
        assert!(fnmatch("a1", "a[0-9]"));
        assert!(!fnmatch("a1", "a[!0-9]"));
        assert!(fnmatch("a]", "a[]]"));
        assert!(fnmatch("[x", "[x"));
        assert!(fnmatch("abc", "a?c"));
        assert!(fnmatch("", "*"));
        let f = Filter::new(
            &["tokenizer/".into(), "*.json".into()],
            &["special*".into()],
        );
        assert!(f.accepts("tokenizer/a.txt"));
        assert!(f.accepts("config.json"));
        assert!(!f.accepts("model.bin"));
        assert!(!f.accepts("special.json"));
    }
}
