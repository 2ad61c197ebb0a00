//! Shell-style globs (`*` any run, `?` one character) for names in the configuration: tool
//! names, key names.

/// Whether `text` matches `pattern`; ASCII case-insensitively when asked.
pub fn glob_match(pattern: &str, text: &str, ignore_ascii_case: bool) -> bool {
    glob_match_bytes(pattern.as_bytes(), text.as_bytes(), ignore_ascii_case)
}

/// [`glob_match`] on bytes (masking matches JSON keys as they are read).
pub fn glob_match_bytes(p: &[u8], t: &[u8], ignore_ascii_case: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if ignore_ascii_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Iterative matching with one backtrack point for the last `*`: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("query_*", "query_sales", false));
        assert!(glob_match("*", "", false));
        assert!(glob_match("*secret*", "AWS_SECRET_KEY", true));
        assert!(!glob_match("*secret*", "AWS_SECRET_KEY", false));
        assert!(glob_match("a?c", "abc", false));
        assert!(!glob_match("a?c", "ac", false));
        assert!(glob_match("a*b*c", "axxbyyc", false));
        assert!(!glob_match("a*b*c", "axxbyy", false));
        assert!(!glob_match("write_*", "query_write_x", false));
    }
}
