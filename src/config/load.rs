//! Reading a config: YAML in, a validated [`Config`] or every problem with its path out.
//!
//! Loading is two-staged so that `vouch config check` can report *every* problem, not just
//! the first: structural problems (unknown fields, wrong types) come from deserialization —
//! unknown fields are collected with `serde_ignored` instead of failing fast — and semantic
//! problems (an empty scope list, a duplicate host, a missing key file) from
//! [`Config::validate`], which asks every section.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, EMBEDDED_DEFAULT};

/// One thing wrong with a config, located by its path (`policies[0].scopes[1]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: a config path such as `policies[0].scopes[1]` (empty for the whole file).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The config was read but is not valid; every problem is listed.
    #[error("{} problem(s) in {origin}:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Where the config came from (a path, or the embedded default).
        origin: String,
        /// Every problem found, in document order.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, when the config was read but is invalid; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

impl Config {
    /// The embedded default config (`config/default.yaml`).
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "the embedded default config", None)
    }

    /// Reads, parses and validates a config file; relative paths in it resolve against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_inner(path, false)
    }

    /// Like [`Config::load`], and also checks that every file the config names can be read
    /// (what `vouch config check` runs).
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        Config::load_inner(path, true)
    }

    fn load_inner(path: &Path, files: bool) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_file_bytes(&bytes, path, files)
    }

    /// A config file's bytes as [`Config::load`] reads them: relative paths resolve against
    /// the file's directory, and a file that would deny every image — empty, or without a
    /// policy unless `allowNoPolicies: true` — is refused (at start-up, on reload and by
    /// `vouch config check` alike).
    pub fn from_file_bytes(bytes: &[u8], path: &Path, files: bool) -> Result<Config, ConfigError> {
        match Config::read_file_bytes(bytes, path, files) {
            (Some(c), problems) if problems.is_empty() => Ok(c),
            (_, problems) => Err(ConfigError::Invalid {
                origin: path.display().to_string(),
                problems,
            }),
        }
    }

    /// What `vouch config check` reports on a file: every problem, the files it names
    /// included, and the config as far as it could be read (fields with a structural
    /// problem at their defaults), for the warnings.
    pub fn check_file(path: &Path) -> Result<(Option<Config>, Vec<Problem>), ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Config::read_file_bytes(&bytes, path, true))
    }

    fn read_file_bytes(bytes: &[u8], path: &Path, files: bool) -> (Option<Config>, Vec<Problem>) {
        let whole = |message: String| Problem {
            path: String::new(),
            message,
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return (None, vec![whole(format!("not UTF-8 text: {e}"))]),
        };
        if text.trim().is_empty() {
            return (
                None,
                vec![whole(
                    "the file is empty: it would leave no trust policy, so every image would \
                     be denied; refusing it"
                        .into(),
                )],
            );
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let (config, mut problems) = Config::read_all(text, Some(&base), files);
        if let Some(c) = &config
            && problems.is_empty()
            && c.policies.is_empty()
            && !c.allow_no_policies
        {
            problems.push(Config::no_policy_problem());
        }
        (config, problems)
    }

    fn no_policy_problem() -> Problem {
        Problem {
            path: "policies".into(),
            message: "no trust policy: every image would be denied; add a policy, or set \
                      allowNoPolicies: true if that is meant"
                .into(),
        }
    }

    /// Parses and validates config text. `base`, when given, is the directory relative file
    /// paths resolve against.
    pub fn parse(text: &str, origin: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        Config::parse_inner(text, origin, base, false)
    }

    fn parse_inner(
        text: &str,
        origin: &str,
        base: Option<&Path>,
        files: bool,
    ) -> Result<Config, ConfigError> {
        let (config, problems) = Config::read_all(text, base, files);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems,
            }),
        }
    }

    /// Every problem of config text, and the config as far as it could be read: a field
    /// with a structural problem (wrong type, missing required field) is left at its
    /// default — a list element with one is left out — and reading goes on, so one wrong
    /// type does not hide the rest. `None` only when the text is not YAML at all or is
    /// not a mapping.
    fn read_all(text: &str, base: Option<&Path>, files: bool) -> (Option<Config>, Vec<Problem>) {
        // An empty file is an empty mapping: all defaults.
        let text = if text.trim().is_empty() { "{}" } else { text };
        let mut structural = Structural::default();
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config = match structural.attempt(de) {
            Ok(c) => Some(c),
            // Read the document as a value, take away what failed, and read it again,
            // until it reads (each round removes a node, so this ends).
            Err(failed) => match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
                Err(_) => None,
                Ok(mut doc) => {
                    let mut failed = failed;
                    loop {
                        if structural.problems.len() >= MAX_STRUCTURAL_PROBLEMS
                            || !structural.remove(&mut doc, &failed)
                        {
                            break None;
                        }
                        match structural.attempt(doc.clone()) {
                            Ok(c) => break Some(c),
                            Err(again) => failed = again,
                        }
                    }
                }
            },
        };
        let Some(mut config) = config else {
            return (None, structural.into_problems());
        };
        if let Some(base) = base {
            config.resolve_paths(base);
        }
        let mut later = config.validate();
        if files {
            later.extend(config.check_files());
        }
        // Problems of the config as read are located in it; put them back at the
        // document's own paths, and leave out those under a field that already failed
        // (its default would only be blamed for the same mistake).
        for mut p in later {
            p.path = structural.original(&p.path);
            if !structural.covers(&p.path) {
                structural.problems.push(p);
            }
        }
        (Some(config), structural.into_problems())
    }
}

/// Structural problems reported at most per file: each costs one more reading of it.
const MAX_STRUCTURAL_PROBLEMS: usize = 64;

/// The structural problems found so far, and the list elements taken out to find them,
/// to give later problems the document's own paths.
#[derive(Default)]
struct Structural {
    problems: Vec<Problem>,
    /// Paths (as in the document) of the fields that failed.
    failed: Vec<String>,
    /// Per list (its path in the document), the indices of the elements taken out.
    removed: std::collections::HashMap<String, Vec<usize>>,
}

/// Where deserialization stopped, as segments of the value it was reading.
struct Failure {
    segments: Vec<Segment>,
}

#[derive(Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Structural {
    /// One reading; unknown fields are noted, the first wrong type ends it.
    fn attempt<'de, D: serde::Deserializer<'de>>(&mut self, de: D) -> Result<Config, Failure> {
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(render_ignored_path(&path));
        let ignored = serde_ignored::Deserializer::new(de, &mut note_unknown);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(ignored);
        for path in unknown {
            let path = self.original(&path);
            let (parent, field) = match path.rsplit_once('.') {
                Some((p, f)) => (p.to_string(), f.to_string()),
                None => (String::new(), path.clone()),
            };
            let field = field.split('[').next().unwrap_or_default().to_string();
            let problem = Problem {
                message: format!(
                    "unknown field `{field}`{}",
                    if parent.is_empty() {
                        String::new()
                    } else {
                        format!(" in `{parent}`")
                    }
                ),
                path,
            };
            if !self.problems.contains(&problem) {
                self.problems.push(problem);
            }
        }
        parsed.map_err(|e| {
            let segments = segments(e.path());
            let path = self.original(&render(&segments));
            let message = e.inner().to_string();
            // The YAML error may already start with the path; say it once.
            let message = message
                .strip_prefix(&format!("{path}: "))
                .map(str::to_string)
                .unwrap_or(message);
            self.failed.push(path.clone());
            self.problems.push(Problem { path, message });
            Failure { segments }
        })
    }

    /// Takes the node that failed out of `doc`: a mapping's field (it takes its default)
    /// or a list's element (it is left out). False when there is nothing to take out —
    /// the document itself is wrong.
    fn remove(&mut self, doc: &mut serde_yaml_ng::Value, failed: &Failure) -> bool {
        use serde_yaml_ng::Value;
        let Some((last, parents)) = failed.segments.split_last() else {
            return false;
        };
        let mut node = doc;
        for seg in parents {
            while let Value::Tagged(t) = node {
                node = &mut t.value;
            }
            let next = match (seg, node) {
                (Segment::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
                (Segment::Index(i), Value::Sequence(s)) => s.get_mut(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        while let Value::Tagged(t) = node {
            node = &mut t.value;
        }
        match (last, node) {
            (Segment::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
            (Segment::Index(i), Value::Sequence(s)) if *i < s.len() => {
                s.remove(*i);
                let list = self.original(&render(parents));
                let at = self.original_index(&list, *i);
                let removed = self.removed.entry(list).or_default();
                removed.push(at);
                removed.sort_unstable();
                true
            }
            _ => false,
        }
    }

    /// The index in the document of what is now element `i` of `list`.
    fn original_index(&self, list: &str, i: usize) -> usize {
        let mut at = i;
        for r in self.removed.get(list).into_iter().flatten() {
            if *r <= at {
                at += 1;
            }
        }
        at
    }

    /// A path of the config as read, as a path of the document (list indices shifted
    /// past the elements taken out).
    fn original(&self, path: &str) -> String {
        if self.removed.is_empty() {
            return path.to_string();
        }
        let mut out = String::new();
        let mut rest = path;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[')
                && let Some((n, tail)) = after.split_once(']')
                && let Ok(i) = n.parse::<usize>()
            {
                let at = self.original_index(&out, i);
                out.push_str(&format!("[{at}]"));
                rest = tail;
                continue;
            }
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let end = rest[first..]
                .find(['.', '['])
                .map(|e| e + first)
                .unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        out
    }

    /// Whether `path` is at or under a field that failed structurally.
    fn covers(&self, path: &str) -> bool {
        self.failed.iter().any(|f| {
            path == f
                || (!f.is_empty()
                    && path
                        .strip_prefix(f.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '['])))
        })
    }

    fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|seg| match seg {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } | S::Enum { variant: key } => Some(Segment::Key(key.clone())),
            S::Unknown => None,
        })
        .collect()
}

/// Segments → `policies[0].scopes` style.
fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

fn render_ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    fn walk(p: &P, out: &mut String) {
        match p {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}
