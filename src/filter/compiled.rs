//! [`CompiledFilter`]: a validated filter with its patterns compiled once,
//! and the tests of an event's or a scan's item against it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::age::age_matches;
use super::candidate::{Candidate, ItemKind, name_text};
use crate::config::ConfigError;
use crate::config::model::{AgeStamp, FileType, Filter};
use crate::config::pattern::{self, Pattern};
use crate::config::units::{AgeFilter, SizeFilter};

/// A filter ready to test items: patterns compiled once. Cheap to share
/// (`Clone` copies reference-counted regexes).
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    patterns: Vec<Pattern>,
    excludes: Vec<Pattern>,
    filetype: FileType,
    recursive: bool,
    hidden: bool,
    age: Option<AgeFilter>,
    age_stamp: AgeStamp,
    size: Option<SizeFilter>,
    depth: u32,
}

impl CompiledFilter {
    /// Compiles a filter. `None` (the config's absent or `null` filter)
    /// behaves exactly like `{}`, i.e. every §4.3 default: every regular file
    /// (not directories, links or other kinds) whose name does not start with
    /// `.`, and for a batch scan only the items directly in its `path`. (The
    /// hidden default is what keeps rsync's `.name.XXXXXX` temporaries out of
    /// a landing-zone scan.)
    ///
    /// Fails only on a pattern `storgate check` refuses (the same compiler,
    /// [`pattern::compile`]) or on one too large for the regex engine; the
    /// error's path is the entry, e.g. `patterns[1]`.
    pub fn new(f: Option<&Filter>) -> Result<CompiledFilter, ConfigError> {
        let default = Filter::default();
        let f = f.unwrap_or(&default);
        let compile = |key: &str, list: &[String]| -> Result<Vec<Pattern>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    pattern::compile(p, f.use_regex).map_err(|e| e.at(format!("{key}[{i}]")))
                })
                .collect()
        };
        Ok(CompiledFilter {
            patterns: compile("patterns", &f.patterns)?,
            excludes: compile("excludes", &f.excludes)?,
            filetype: f.filetype,
            recursive: f.recursive,
            hidden: f.hidden,
            age: f.age,
            age_stamp: f.age_stamp,
            size: f.size,
            depth: f.depth,
        })
    }

    /// For a file-system event (onGet/onPut/onDelete): every rule except
    /// `recursive` and `depth` (an event concerns one item wherever it is).
    pub fn matches_event(&self, c: &Candidate, now: SystemTime) -> bool {
        self.matches_item(c, now)
    }

    /// For an item found by a batch scan: every rule, including the depth
    /// rule (`c.depth` 1 = directly in the scan path; 0, the scan path
    /// itself, never matches — Ansible never reports the path it searches).
    pub fn matches_scan(&self, c: &Candidate, now: SystemTime) -> bool {
        self.depth_admits(c.depth) && self.matches_item(c, now)
    }

    /// Whether a scan must list the entries of a directory at `dir_depth` (0 =
    /// the scan path itself, 1 = a directory directly in it, …), i.e. whether
    /// items at `dir_depth + 1` can match. The scan path itself is always
    /// listed. Like Ansible, neither `hidden` nor `excludes` prune: a scan
    /// still looks inside `.git/` or an excluded directory, and tests the
    /// names found there one by one.
    pub fn descend(&self, dir_depth: u32) -> bool {
        dir_depth == 0 || (self.recursive && (self.depth == 0 || dir_depth < self.depth))
    }

    fn depth_admits(&self, depth: u32) -> bool {
        match (depth, self.recursive) {
            (0, _) => false,
            (_, false) => depth == 1,
            (_, true) => self.depth == 0 || depth <= self.depth,
        }
    }

    /// Every rule but depth, cheapest first.
    fn matches_item(&self, c: &Candidate, now: SystemTime) -> bool {
        let kind_ok = match self.filetype {
            FileType::File => c.kind == ItemKind::File,
            FileType::Directory => c.kind == ItemKind::Directory,
            FileType::Link => c.kind == ItemKind::Link,
            FileType::Any => true,
        };
        if !kind_ok {
            return false;
        }
        if !self.hidden && c.name.as_bytes().first() == Some(&b'.') {
            return false;
        }
        if let Some(size) = self.size
            && c.kind == ItemKind::File
            && !size.matches(c.size)
        {
            return false;
        }
        if let Some(age) = self.age {
            let stamp = match self.age_stamp {
                AgeStamp::Mtime => c.mtime,
                AgeStamp::Atime => c.atime,
                AgeStamp::Ctime => c.ctime,
            };
            if !age_matches(&age, stamp, now) {
                return false;
            }
        }
        self.name_matches(c.name)
    }

    /// Patterns and excludes (Ansible's `pfilter`).
    fn name_matches(&self, name: &OsStr) -> bool {
        if self.patterns.is_empty() && self.excludes.is_empty() {
            return true;
        }
        let name = name_text(name);
        (self.patterns.is_empty() || self.patterns.iter().any(|m| m.is_match(&name)))
            && !self.excludes.iter().any(|m| m.is_match(&name))
    }
}
