//! The minijinja environment (strict undefined, no escaping, storgate's
//! filters) and rendering of path templates and `exec` arguments.

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, UndefinedBehavior, Value, context};

use super::GROUPS_VAR;
use super::error::PathError;
use super::filters;
use super::groups::substitute_groups;
use super::path::normalize_path;
use crate::config::template::prepare;
use crate::error::Errno;
use crate::item::Item;
use crate::workflow::error::WorkflowError;

impl Item {
    fn to_value(&self) -> Value {
        context! {
            path => self.path.clone(),
            filename => self.filename.clone(),
            dirname => self.dirname.clone(),
            state => self.state.clone(),
            size => self.size,
            owner => self.owner.clone(),
            group => self.group.clone(),
            mode => self.mode.clone(),
            mtime => self.mtime,
            atime => self.atime,
            ctime => self.ctime,
            inode => self.inode,
            hits => self.hits,
        }
    }
}

/// The minijinja environment with storgate's filters.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// Why rendering failed, before the caller adds the template's name.
enum RenderFail {
    NoGroup { group: String },
    Engine(String),
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // The default delimiters always build; keep minijinja's default
        // (trailing newline dropped) in the impossible other case.
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        filters::register(&mut env);
        Templates { env }
    }

    /// Render a savePath / onComplete path: pathPattern captures substituted
    /// for #1, #2… BEFORE rendering (no match → Err naming the pattern),
    /// rendered with `item` and `source_dir`, then normalised.
    ///
    /// The result is absolute, normalised and free of `..`, NUL and
    /// over-long components; whether it lies inside a mount of the bucket is
    /// [`check_bucket_path`]'s job.
    pub fn render_path(
        &self,
        template: &str,
        item: &Item,
        source_dir: &str,
        path_pattern: Option<&regex::Regex>,
    ) -> Result<String, PathError> {
        let groups = match path_pattern {
            None => None,
            Some(re) => {
                let caps = re.captures(&item.path).ok_or_else(|| PathError::NoMatch {
                    template: template.to_string(),
                    pattern: re.as_str().to_string(),
                    path: item.path.clone(),
                })?;
                Some(
                    caps.iter()
                        .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let rendered = self
            .render(template, item, source_dir, groups.as_deref())
            .map_err(|f| match f {
                RenderFail::NoGroup { group } => PathError::NoGroup {
                    template: template.to_string(),
                    pattern: path_pattern.map_or(String::new(), |re| re.as_str().to_string()),
                    group,
                    groups: groups.as_ref().map_or(0, |g| g.len().saturating_sub(1)),
                },
                RenderFail::Engine(message) => PathError::Render {
                    template: template.to_string(),
                    message,
                },
            })?;
        normalize_path(&rendered).map_err(|problem| PathError::Bad {
            template: Some(template.to_string()),
            path: rendered,
            problem,
        })
    }

    /// Render an exec argument (no path normalisation). `#N` is plain text
    /// here. A NUL byte in the result is an error (no program argument can
    /// hold one).
    pub fn render_arg(
        &self,
        template: &str,
        item: &Item,
        source_dir: &str,
    ) -> Result<String, WorkflowError> {
        let out = self
            .render(template, item, source_dir, None)
            .map_err(|f| match f {
                RenderFail::Engine(m) => format!("exec argument {template:?}: {m}"),
                // Unreachable without captures; worded anyway.
                RenderFail::NoGroup { group } => {
                    format!("exec argument {template:?}: #{group} has no capture group")
                }
            })
            .map_err(|m| WorkflowError::new(Errno::EINVAL, m))?;
        if out.contains('\0') {
            return Err(WorkflowError::new(
                Errno::EINVAL,
                format!("exec argument {template:?} rendered {out:?}, which contains a NUL byte"),
            ));
        }
        Ok(out)
    }

    fn render(
        &self,
        template: &str,
        item: &Item,
        source_dir: &str,
        groups: Option<&[String]>,
    ) -> Result<String, RenderFail> {
        let mut src = prepare(template);
        if let Some(groups) = groups {
            src =
                substitute_groups(&src, groups).map_err(|g| RenderFail::NoGroup { group: g.0 })?;
        }
        let groups_value = Value::from(groups.map(<[String]>::to_vec).unwrap_or_default());
        let ctx = Value::from_pairs([
            ("item", item.to_value()),
            ("source_dir", Value::from(source_dir)),
            (GROUPS_VAR, groups_value),
        ]);
        self.env
            .render_str(&src, ctx)
            .map_err(|e| RenderFail::Engine(describe(&e, template)))
    }
}

/// minijinja's error as one line: kind, detail, line (for multi-line
/// templates) and the causes.
fn describe(e: &Error, template: &str) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if template.contains('\n')
        && let Some(l) = e.line()
    {
        s.push_str(&format!(" (line {l})"));
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}
