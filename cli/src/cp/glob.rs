//! Shell-style patterns for one path component: `*` (any run of bytes),
//! `?` (one character), `[abc]`, `[a-z]`, `[!a]`/`[^a]`, and `\` to quote the
//! next character. Matching is on characters, so `?` takes one whole UTF-8
//! character of a unicode name; a leading `.` is matched only by a literal dot.

/// Whether `text` has a character that makes it a pattern.
pub fn is_pattern(text: &str) -> bool {
    let mut quoted = false;
    for character in text.chars() {
        if quoted {
            quoted = false;
            continue;
        }
        match character {
            '\\' => quoted = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// The text a pattern without wildcards stands for: its quotes removed.
pub fn unquote(text: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut quoted = false;
    for character in text.chars() {
        if !quoted && character == '\\' {
            quoted = true;
            continue;
        }
        quoted = false;
        result.push(character);
    }
    result
}

/// Whether the name `name` matches `pattern`, as a shell would expand it.
pub fn matches(pattern: &str, name: &str) -> bool {
    // Hidden names appear only when asked for by a literal dot, as in sh.
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

/// Iterative matcher with one backtrack point (the last `*`): linear in
/// practice, and never recursive, so no pattern can exhaust the stack.
fn match_from(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = match_class(pattern, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        // An unclosed bracket is a literal '['.
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == name[n] {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                literal => {
                    if literal == name[n] {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((star_p, star_n)) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `character` against the class starting at `pattern[start] == '['`:
/// Some((matched, index after `]`)), or None when the class is not closed.
fn match_class(pattern: &[char], start: usize, character: char) -> Option<(bool, usize)> {
    let mut index = start + 1;
    let negated = matches!(pattern.get(index), Some('!') | Some('^'));
    if negated {
        index += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let current = *pattern.get(index)?;
        if current == ']' && !first {
            return Some((matched != negated, index + 1));
        }
        first = false;
        let (low, after_low) = if current == '\\' {
            (*pattern.get(index + 1)?, index + 2)
        } else {
            (current, index + 1)
        };
        if pattern.get(after_low) == Some(&'-')
            && pattern.get(after_low + 1).is_some_and(|&c| c != ']')
        {
            let high_index = after_low + 1;
            let (high, after_high) = if pattern[high_index] == '\\' {
                (*pattern.get(high_index + 1)?, high_index + 2)
            } else {
                (pattern[high_index], high_index + 1)
            };
            if low <= character && character <= high {
                matched = true;
            }
            index = after_high;
        } else {
            if low == character {
                matched = true;
            }
            index = after_low;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_in_the_shell() {
        for (pattern, name, expected) in [
            ("*", "abc", true),
            ("*", "", true),
            ("*", ".hidden", false),
            (".*", ".hidden", true),
            ("a*", "abc", true),
            ("a*", "bac", false),
            ("*.txt", "notes.txt", true),
            ("*.txt", "notes.txt.bak", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("?", "é", true),
            ("??", "é", false),
            ("f?le", "file", true),
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[a-c]x", "bx", true),
            ("[!a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("[]]", "]", true),
            ("[a-]", "-", true),
            ("[", "[", true),
            ("a[", "a[", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("naïve*", "naïve.txt", true),
            ("data-[0-9][0-9]", "data-42", true),
            ("data-[0-9][0-9]", "data-4", false),
        ] {
            assert_eq!(
                matches(pattern, name),
                expected,
                "{pattern:?} against {name:?}"
            );
        }
    }

    #[test]
    fn patterns_are_recognised_and_unquoted() {
        for (text, pattern, plain) in [
            ("abc", false, "abc"),
            ("a*c", true, "a*c"),
            ("a?c", true, "a?c"),
            ("a[b]c", true, "a[b]c"),
            ("a\\*c", false, "a*c"),
            ("ü", false, "ü"),
        ] {
            assert_eq!(is_pattern(text), pattern, "{text:?}");
            if !pattern {
                assert_eq!(unquote(text), plain, "{text:?}");
            }
        }
    }
}
