//! Runs one item through one workflow (SPEC §5): every task at once, each
//! rendering its `savePath`, producing its output (copy, `exec`, HTTP
//! function) and writing it atomically with `whenExist`; when all succeed,
//! `onComplete` acts on the source. The item is complete when every task
//! succeeded, aborted when any failed; the outcome lists each output.
//!
//! A rendered path is the lossless text form of [`crate::name`]: it is
//! written (and `onComplete` moves to it) at exactly the bytes it decodes
//! to, and reported to webhooks as that text.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{WorkflowError, WorkflowResult};
use super::functions;
use super::template::{Templates, check_bucket_path};
use crate::bucket::BucketState;
use crate::bucket::selfchange::SelfChanges;
use crate::bucket::store::{LocalSource, Store, WriteStatus, output_mode};
use crate::config::model::{Function, SrcOp, Task, Workflow};
use crate::error::Errno;
use crate::item::{Item, Source};
use crate::name::split_path;
use crate::tree::Place;

/// One output of an item, as webhooks report it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Output {
    #[serde(rename = "savePath")]
    pub save_path: String,
    pub status: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub outputs: Vec<Output>,
    /// `None` = complete; else why the item was aborted.
    pub error: Option<String>,
    /// The source no longer exists (the item was not run).
    pub gone: bool,
}

impl Outcome {
    pub fn completed(&self) -> bool {
        self.error.is_none()
    }
}

/// What every task of an item reads, and the mode its outputs get.
#[derive(Clone, Copy)]
struct TaskInput<'a> {
    source: &'a Path,
    mode: u32,
}

/// Shared by every item run of a daemon or command.
pub struct Runner {
    templates: Templates,
    selfc: Arc<SelfChanges>,
    tmp_dir: PathBuf,
    function_base_url: Option<String>,
}

impl Runner {
    pub fn new(
        selfc: Arc<SelfChanges>,
        tmp_dir: PathBuf,
        function_base_url: Option<String>,
    ) -> Runner {
        Runner {
            templates: Templates::new(),
            selfc,
            tmp_dir,
            function_base_url,
        }
    }

    pub fn self_changes(&self) -> &Arc<SelfChanges> {
        &self.selfc
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    fn store<'a>(&'a self, bucket: &'a BucketState) -> Store<'a> {
        Store {
            bucket,
            selfc: &self.selfc,
            tmp_dir: &self.tmp_dir,
        }
    }

    /// The savePath of `task` for `item`, checked against the bucket.
    pub fn save_path(
        &self,
        bucket: &BucketState,
        task: &Task,
        item: &Item,
        source_dir: &str,
    ) -> Result<String, WorkflowError> {
        let rendered = self
            .templates
            .render_path(
                &task.save_path,
                item,
                source_dir,
                task.path_pattern.as_ref(),
            )
            .map_err(path_error)?;
        check_bucket_path(&rendered, &bucket.tree)
            .map_err(|e| path_error(e.in_template(&task.save_path)))
    }

    /// Runs `workflow` on `item`, inside a `workflow_item` span (bucket,
    /// workflow, path) that its task threads enter too, so every log line
    /// of the item names it.
    pub fn run(
        &self,
        bucket: &BucketState,
        workflow: &Workflow,
        item: &Item,
        source: &Source,
        source_dir: &str,
    ) -> Outcome {
        let span = tracing::info_span!(
            "workflow_item",
            bucket = %bucket.name.to_string_lossy(),
            workflow = %workflow.name,
            path = ?item.path,
        );
        let _entered = span.enter();
        let store = self.store(bucket);
        let empty = || Ok(LocalSource::borrowed(PathBuf::from("/dev/null")));
        let found = match source {
            Source::Bucket(comps) => Some(store.find(comps)),
            // A local lstat is cheap and catches a file gone since the
            // listing; an S3 HEAD per listed object is not.
            Source::Listed(comps, st) => {
                let place = match bucket.tree.place(comps, false) {
                    Place::Mount { mount, rel } => Some((mount, rel)),
                    Place::Root { rel } => {
                        let mut roots = bucket.tree.root_mounts();
                        match (roots.next(), roots.next()) {
                            (Some(only), None) => Some((only, rel)),
                            // Merged roots: which one holds it takes a lookup.
                            _ => None,
                        }
                    }
                    Place::Hidden => None,
                };
                Some(match place {
                    Some((mount, rel)) if bucket.origins[mount].as_local().is_none() => {
                        Ok((mount, rel, *st))
                    }
                    _ => store.find(comps),
                })
            }
            Source::File(_) | Source::Empty => None,
        };
        let was = match &found {
            Some(Ok((_, _, st))) => Some(*st),
            _ => None,
        };
        let local = match (source, found) {
            (Source::File(p), _) => Ok(LocalSource::borrowed(p.clone())),
            (_, Some(Err(e))) if e == Errno::ENOENT => {
                return Outcome {
                    outputs: Vec::new(),
                    error: Some(format!("source {:?}: {e}", item.path)),
                    gone: true,
                };
            }
            (_, Some(Err(e))) => Err(WorkflowError::new(
                e,
                format!("source {:?}: {e}", item.path),
            )),
            // No task reads the bytes: don't fetch them.
            _ if workflow.tasks.is_empty() => empty(),
            (_, Some(Ok((mount, rel, st)))) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                store.materialize(mount, &rel).map_err(store_error)
            }
            // Directories and links carry no bytes: tasks read nothing.
            _ => empty(),
        };
        let local = match local {
            Ok(l) => l,
            Err(error) => {
                // A listed object deleted since: gone, not failed.
                let gone = match source {
                    Source::Listed(comps, _) => {
                        matches!(store.find(comps), Err(e) if e == Errno::ENOENT)
                    }
                    _ => false,
                };
                return Outcome {
                    outputs: Vec::new(),
                    error: Some(error.to_string()),
                    gone,
                };
            }
        };
        // The file opened is the one the tasks read. When it is not the one
        // found for the event (replaced in between — perhaps by a client
        // racing the worker), the item is what it is now, not what it was.
        let current;
        let item = match (was, local.st) {
            (Some(was), Some(now)) if (was.st_dev, was.st_ino) != (now.st_dev, now.st_ino) => {
                tracing::info!("replaced since the event: processed as it is now");
                let comps = match source {
                    Source::Bucket(c) | Source::Listed(c, _) => c.as_slice(),
                    _ => &[],
                };
                current = crate::item::item_of(comps, &now, item.hits);
                &current
            }
            _ => item,
        };
        let mode = output_mode(match local.st {
            Some(st) => st.st_mode,
            None => u32::from_str_radix(&item.mode, 8).unwrap_or(0o644),
        });
        let results: Vec<(String, WorkflowResult<WriteStatus>)> = std::thread::scope(|s| {
            let handles: Vec<_> = workflow
                .tasks
                .iter()
                .enumerate()
                .map(|(i, task)| {
                    let store = &store;
                    let local = &local.path;
                    let span = &span;
                    s.spawn(move || {
                        let _entered = span.enter();
                        let input = TaskInput {
                            source: local,
                            mode,
                        };
                        self.run_task(store, i, task, item, input, source_dir)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        let e = WorkflowError::new(Errno::EIO, "task panicked");
                        (String::new(), Err(e))
                    })
                })
                .collect()
        });
        let processed = local.st.map(|st| (st.st_dev, st.st_ino));
        drop(local);
        let mut outcome = Outcome::default();
        let mut errors = Vec::new();
        for (path, r) in results {
            match r {
                Ok(st) => outcome.outputs.push(Output {
                    save_path: path,
                    status: st.as_str(),
                }),
                Err(e) => {
                    outcome.outputs.push(Output {
                        save_path: path,
                        status: "failed",
                    });
                    errors.push(e.to_string());
                }
            }
        }
        if errors.is_empty()
            && let Source::Bucket(comps) | Source::Listed(comps, _) = source
            && let Err(e) = self.on_complete(&store, workflow, item, comps, processed, source_dir)
        {
            errors.push(format!("onComplete: {e}"));
        }
        if !errors.is_empty() {
            outcome.error = Some(errors.join("; "));
        }
        outcome
    }

    fn run_task(
        &self,
        store: &Store,
        index: usize,
        task: &Task,
        item: &Item,
        input: TaskInput<'_>,
        source_dir: &str,
    ) -> (String, WorkflowResult<WriteStatus>) {
        let TaskInput { source, mode } = input;
        let path = match self.save_path(store.bucket, task, item, source_dir) {
            Ok(p) => p,
            Err(e) => return (String::new(), Err(e.context(format!("task {index}")))),
        };
        let comps = split_path(&path);
        let result = match &task.function {
            Function::Copy => store
                .write(&comps, &path, task.when_exist, mode, &|tmp| {
                    // Bytes only: std::fs::copy would also give the root-owned
                    // temp the source's mode, setuid bits included.
                    let copy = || -> std::io::Result<()> {
                        let mut from = std::fs::File::open(source)?;
                        let mut to = std::fs::File::create(tmp)?;
                        std::io::copy(&mut from, &mut to).map(drop)
                    };
                    copy().map_err(|e| format!("copy {:?}: {e}", item.path).into())
                })
                .map_err(store_error),
            Function::Exec(args) => {
                let argv: WorkflowResult<Vec<_>> = args
                    .iter()
                    .map(|a| self.templates.render_arg(a, item, source_dir))
                    .collect();
                argv.and_then(|argv| {
                    store
                        .write(&comps, &path, task.when_exist, mode, &|tmp| {
                            Ok(functions::run_exec(&argv, source, tmp, task.timeout)?)
                        })
                        .map_err(store_error)
                })
            }
            Function::Http(function) => match &self.function_base_url {
                Some(base) => {
                    let url = format!("{}{function}", base.trim_end_matches('/'));
                    store
                        .write(&comps, &path, task.when_exist, mode, &|tmp| {
                            Ok(functions::run_http(&url, source, tmp, task.timeout)?)
                        })
                        .map_err(store_error)
                }
                None => Err(WorkflowError::new(
                    Errno::EINVAL,
                    format!("function {function:?} needs functionBaseUrl"),
                )),
            },
        };
        let result = result.map_err(|e| e.context(format!("task {index} ({path})")));
        (path, result)
    }

    fn on_complete(
        &self,
        store: &Store,
        workflow: &Workflow,
        item: &Item,
        source: &[OsString],
        processed: Option<(u64, u64)>,
        source_dir: &str,
    ) -> WorkflowResult<()> {
        match &workflow.on_complete.src {
            SrcOp::None => Ok(()),
            SrcOp::Delete => store
                .remove(source, &item.path, processed)
                .map_err(store_error),
            SrcOp::Move { path } => {
                let rendered = self
                    .templates
                    .render_path(path, item, source_dir, None)
                    .map_err(path_error)?;
                let to = check_bucket_path(&rendered, &store.bucket.tree)
                    .map_err(|e| path_error(e.in_template(path)))?;
                store
                    .rename(source, &split_path(&to), &item.path, &to, processed)
                    .map_err(store_error)
            }
        }
    }
}

/// A template that cannot render or renders an unsafe path: EINVAL.
fn path_error(e: super::template::PathError) -> WorkflowError {
    WorkflowError::wrap(Errno::EINVAL, e.to_string(), e)
}

/// The bucket store's errors are plain messages today; they keep their
/// text (and get EIO) until the store has an error type of its own.
/// A failure of the bucket store, as the item's error: EIO (the workflow
/// failed, whatever the origin said) with the store's message and cause.
fn store_error(e: crate::bucket::error::BucketError) -> WorkflowError {
    WorkflowError::wrap(Errno::EIO, e.to_string(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bucket with `/in` and a hidden `/out` (local), and its workflows.
    fn bucket(root: &Path, workflows: serde_json::Value) -> (BucketState, Vec<Workflow>) {
        std::fs::create_dir_all(root.join("in")).expect("mkdir");
        std::fs::create_dir_all(root.join("out")).expect("mkdir");
        let text = serde_json::json!({
            "stateDir": root.join("state"),
            "buckets": [{"meta": {"name": "b"},
                "mounts": [
                    {"mountPoint": "/in", "originPath": root.join("in")},
                    {"mountPoint": "/out", "originPath": root.join("out"), "expose": false}],
                "workflows": workflows}]
        })
        .to_string();
        let cfg = crate::config::load_str(&text)
            .unwrap_or_else(|e| panic!("config: {e:?}"))
            .config;
        let state = crate::bucket::build_buckets(&cfg)
            .expect("buckets")
            .remove(0);
        (state, cfg.buckets[0].workflows.clone())
    }

    fn item(path: &str) -> Item {
        let comps = split_path(path);
        let mut st = crate::item::gone_stat(false);
        st.st_mode |= 0o644;
        crate::item::item_of(&comps, &st, 0)
    }

    fn runner(root: &Path) -> Runner {
        let tmp = root.join("state/tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        Runner::new(Default::default(), tmp, None)
    }

    #[test]
    fn when_exist_overwrite_skip_and_diff() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        let (b, wfs) = bucket(
            root,
            serde_json::json!([
                {"name": "w", "tasks": [
                    {"savePath": "/out/over/{{ item.filename }}"},
                    {"savePath": "/out/skip/{{ item.filename }}", "whenExist": "skip"},
                    {"savePath": "/out/diff/{{ item.filename }}", "whenExist": "diff"}]}
            ]),
        );
        let r = runner(root);
        std::fs::write(root.join("in/a.txt"), b"one").expect("write");
        let src = Source::Bucket(split_path("/in/a.txt"));
        let first = r.run(&b, &wfs[0], &item("/in/a.txt"), &src, "/in");
        assert!(first.completed(), "{first:?}");
        let statuses: Vec<_> = first.outputs.iter().map(|o| o.status).collect();
        assert_eq!(
            statuses,
            ["written", "written", "written"],
            "parents created"
        );

        let again = r.run(&b, &wfs[0], &item("/in/a.txt"), &src, "/in");
        let statuses: Vec<_> = again.outputs.iter().map(|o| o.status).collect();
        assert_eq!(statuses, ["written", "skipped", "unchanged"]);

        std::fs::write(root.join("in/a.txt"), b"two").expect("write");
        let changed = r.run(&b, &wfs[0], &item("/in/a.txt"), &src, "/in");
        let statuses: Vec<_> = changed.outputs.iter().map(|o| o.status).collect();
        assert_eq!(statuses, ["written", "skipped", "written"]);
        let read = |p: &str| std::fs::read(root.join(p)).expect("read");
        assert_eq!(read("out/over/a.txt"), b"two");
        assert_eq!(read("out/skip/a.txt"), b"one");
        assert_eq!(read("out/diff/a.txt"), b"two");
        // No temporary file is left behind.
        for dir in ["out/over", "out/skip", "out/diff"] {
            let names: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("list")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(names.len(), 1, "{dir}: {names:?}");
        }
    }

    #[test]
    fn on_complete_keeps_an_upload_that_replaced_the_processed_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        let src_path = root.join("in/a.txt");
        // The task itself plays the uploader: it replaces the source (a new
        // inode at the same name) while the workflow runs.
        let replace = format!(
            "cat; echo new > {0}.up && mv {0}.up {0}",
            src_path.display()
        );
        let (b, wfs) = bucket(
            root,
            serde_json::json!([
                {"name": "rm", "tasks": [
                    {"function": {"exec": ["sh", "-c", replace]},
                     "savePath": "/out/{{ item.filename }}"}],
                 "onComplete": {"src": {"op": "delete"}}},
                {"name": "mv", "tasks": [
                    {"function": {"exec": ["sh", "-c", replace]},
                     "savePath": "/out/{{ item.filename }}"}],
                 "onComplete": {"src": {"op": "move", "path": "/out/done/{{ item.filename }}"}}}
            ]),
        );
        let r = runner(root);
        for wf in &wfs {
            std::fs::write(&src_path, b"old\n").expect("write");
            let src = Source::Bucket(split_path("/in/a.txt"));
            let out = r.run(&b, wf, &item("/in/a.txt"), &src, "/in");
            let err = out.error.clone().unwrap_or_default();
            assert!(
                err.contains("replaced after it was processed"),
                "{}: {out:?}",
                wf.name
            );
            assert_eq!(
                std::fs::read(&src_path).expect("the new upload is kept"),
                b"new\n",
                "{}",
                wf.name
            );
            assert_eq!(
                std::fs::read(root.join("out/a.txt")).expect("out"),
                b"old\n"
            );
            assert!(!root.join("out/done/a.txt").exists(), "{}", wf.name);
        }
    }

    #[test]
    fn on_complete_move_and_delete_and_a_failing_task_keeps_the_source() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        let (b, wfs) = bucket(
            root,
            serde_json::json!([
                {"name": "mv", "tasks": [{"savePath": "/out/copy/{{ item.filename }}"}],
                 "onComplete": {"src": {"op": "move", "path": "/out/done/{{ item.filename }}"}}},
                {"name": "rm", "tasks": [{"savePath": "/out/copy/{{ item.filename }}"}],
                 "onComplete": {"src": {"op": "delete"}}},
                {"name": "bad", "tasks": [
                    {"savePath": "/out/copy/{{ item.filename }}.ok"},
                    {"function": {"exec": ["false"]}, "savePath": "/out/never"}],
                 "onComplete": {"src": {"op": "delete"}}}
            ]),
        );
        let r = runner(root);
        for n in ["m.txt", "r.txt", "k.txt"] {
            std::fs::write(root.join("in").join(n), n).expect("write");
        }
        let run = |wf: usize, name: &str| {
            let p = format!("/in/{name}");
            r.run(
                &b,
                &wfs[wf],
                &item(&p),
                &Source::Bucket(split_path(&p)),
                "/in",
            )
        };
        assert!(run(0, "m.txt").completed());
        assert!(!root.join("in/m.txt").exists(), "moved away");
        assert_eq!(
            std::fs::read(root.join("out/done/m.txt")).expect("moved"),
            b"m.txt"
        );
        assert!(run(1, "r.txt").completed());
        assert!(!root.join("in/r.txt").exists(), "deleted");
        let bad = run(2, "k.txt");
        assert!(!bad.completed());
        assert!(
            bad.error.as_deref().is_some_and(|e| e.contains("false")),
            "{bad:?}"
        );
        assert!(
            root.join("in/k.txt").exists(),
            "an aborted item keeps its source"
        );
        let statuses: Vec<_> = bad.outputs.iter().map(|o| o.status).collect();
        assert_eq!(statuses, ["written", "failed"]);
    }

    #[test]
    fn non_utf8_names_write_and_move_to_their_exact_bytes() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        let (b, wfs) = bucket(
            root,
            serde_json::json!([
                {"name": "w", "tasks": [{"savePath": "/out/copy/{{ item.filename }}"}],
                 "onComplete": {"src": {"op": "move", "path": "/out/done/{{ item.filename }}"}}}
            ]),
        );
        let r = runner(root);
        let names = [&b"bad\xff.jpg"[..], b"bad\xfe.jpg"];
        for n in names {
            std::fs::write(root.join("in").join(OsStr::from_bytes(n)), n).expect("write");
        }
        let mut saved = Vec::new();
        for n in names {
            let comps = vec![OsString::from("in"), OsStr::from_bytes(n).to_os_string()];
            let mut st = crate::item::gone_stat(false);
            st.st_mode |= 0o644;
            let it = crate::item::item_of(&comps, &st, 0);
            let out = r.run(&b, &wfs[0], &it, &Source::Bucket(comps), "/in");
            assert!(out.completed(), "{out:?}");
            saved.push(out.outputs[0].save_path.clone());
        }
        assert_ne!(saved[0], saved[1], "two outputs, reported apart");
        for n in names {
            let name = OsStr::from_bytes(n);
            let read = |dir: &str| std::fs::read(root.join(dir).join(name)).expect("output");
            assert_eq!(read("out/copy"), n, "copy of {name:?}");
            assert_eq!(read("out/done"), n, "moved {name:?}");
            assert!(!root.join("in").join(name).exists());
        }
        assert_eq!(
            std::fs::read_dir(root.join("out/copy"))
                .expect("list")
                .count(),
            2
        );
    }

    #[test]
    fn hostile_rendered_paths_fail_the_task_and_write_nothing_outside() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        let (b, wfs) = bucket(
            root,
            serde_json::json!([
                {"name": "w", "tasks": [{"savePath": "/out/{{ item.filename | replace('_', '/') }}"}]}
            ]),
        );
        let r = runner(root);
        let name = "___.._.._.._etc_passwd";
        std::fs::write(root.join("in").join(name), b"x").expect("write");
        let p = format!("/in/{name}");
        let out = r.run(
            &b,
            &wfs[0],
            &item(&p),
            &Source::Bucket(split_path(&p)),
            "/in",
        );
        assert!(!out.completed());
        assert!(
            out.error.as_deref().is_some_and(|e| e.contains("..")),
            "{out:?}"
        );
        assert!(!root.join("etc").exists() && !root.join("out/etc").exists());
    }
}
