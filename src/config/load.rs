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
        let origin = path.display().to_string();
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("not UTF-8 text: {e}"),
            }],
        })?;
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid {
                origin,
                problems: vec![Problem {
                    path: String::new(),
                    message: "the file is empty: it would leave no trust policy, so every \
                              image would be denied; refusing it"
                        .into(),
                }],
            });
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let result = Config::parse_inner(text, &origin, Some(&base), files);
        let no_policy = |c: &Config| c.policies.is_empty() && !c.allow_no_policies;
        match result {
            Ok(c) if no_policy(&c) => Err(ConfigError::Invalid {
                origin,
                problems: vec![Config::no_policy_problem()],
            }),
            other => other,
        }
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
        let invalid = |problems| ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        };
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        // An empty file is an empty mapping: all defaults.
        let text = if text.trim().is_empty() { "{}" } else { text };
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(render_ignored_path(&path));
        let ignored = serde_ignored::Deserializer::new(de, &mut note_unknown);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(ignored);
        for path in unknown {
            let (parent, field) = match path.rsplit_once('.') {
                Some((p, f)) => (p.to_string(), f.to_string()),
                None => (String::new(), path.clone()),
            };
            problems.push(Problem {
                path,
                message: format!(
                    "unknown field `{field}`{}",
                    if parent.is_empty() {
                        String::new()
                    } else {
                        format!(" in `{parent}`")
                    }
                ),
            });
        }
        let mut config = match parsed {
            Ok(c) => c,
            Err(e) => {
                let path = render_error_path(e.path());
                let message = e.inner().to_string();
                // The YAML error may already start with the path; say it once.
                let message = message
                    .strip_prefix(&format!("{path}: "))
                    .map(str::to_string)
                    .unwrap_or(message);
                problems.push(Problem { path, message });
                return Err(invalid(problems));
            }
        };
        if let Some(base) = base {
            config.resolve_paths(base);
        }
        problems.extend(config.validate());
        if files {
            problems.extend(config.check_files());
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }
}

/// `serde_path_to_error` path → `policies[0].scopes` style.
fn render_error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
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
