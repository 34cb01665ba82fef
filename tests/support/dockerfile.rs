//! The repository's `Dockerfile` as the tests read it (Docker is not run here): its
//! instructions with continuation lines joined and comments dropped, the `KEY=VALUE` pairs
//! of `ARG` and `LABEL`, and its stages.

#![allow(dead_code)] // each test binary uses a different part

/// One instruction: the keyword (upper case) and its arguments as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub op: String,
    pub args: String,
}

/// The instructions of a Dockerfile's text, continuation lines joined, comments and blank
/// lines dropped.
pub fn instructions(text: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push(Step {
                    op: op.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The `KEY=VALUE` pairs of an `ARG` or `LABEL` line, double quotes removed; a bare `KEY`
/// (an `ARG` without default) has `None`. Panics on an unterminated quote.
pub fn pairs(args: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            out.push((key, None));
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => panic!("unterminated quote in `{args}`"),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, Some(value)));
    }
}

/// A build stage: the image it starts `FROM`, its name (`AS name`) and its instructions
/// after the `FROM`.
#[derive(Debug, Clone)]
pub struct Stage {
    pub from: String,
    pub name: Option<String>,
    pub steps: Vec<Step>,
}

/// The stages of a Dockerfile's instructions, in order; `--platform=…` flags are skipped.
pub fn stages(steps: &[Step]) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for step in steps {
        if step.op == "FROM" {
            let words: Vec<&str> = step
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            out.push(Stage {
                from: words.first().copied().unwrap_or_default().to_string(),
                name,
                steps: Vec::new(),
            });
        } else if let Some(stage) = out.last_mut() {
            stage.steps.push(step.clone());
        }
    }
    out
}
