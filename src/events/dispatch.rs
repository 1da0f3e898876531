//! The event engine (SPEC §4.1, §4.2, §4.4): which workflow an event of a
//! bucket runs, pre events run inline while the client waits, post events
//! journaled before the client's call returns and run by a worker pool,
//! and the webhooks of each finished item. (Changes made behind the mount's
//! back arrive through [`Engine::origin_event`], in `origin.rs`, and the
//! pollers of `detect.rs`.)
//!
//! Failed post items are retried up to [`MAX_ATTEMPTS`] runs in all (after
//! 4 s, then 16 s, on the engine's one retry timer), then written to the
//! journal's dead-letter file; every aborted run calls `onItemAborted`, a
//! completed one `onItemCompleted`. Webhooks of pre events go to a bounded
//! pool so the client does not wait for them.
//!
//! Each event runs in a tracing span `event` (bucket, event, path, and the
//! journal id of a post event), entered by the worker around the item.
//!
//! Names are bytes (SPEC §9.1): an event's path, its journal key, its hit
//! count and its item all use the lossless text of [`crate::name`], so two
//! names that differ in any byte are two events; the worker finds the source
//! by the exact components that text decodes to. Logs print it with `{:?}`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;

use super::deferred::{HookPool, RetryTimer, retry_pause};
use super::error::EventError;
use super::journal::{Journal, PostEvent};
use crate::bucket::BucketState;
use crate::bucket::selfchange::SelfChanges;
use crate::bucket::{PRESTAGE_DIR, clean_tmp, source_dir};
use crate::config::model::{Config, Timing, Webhooks, Workflow};
use crate::filter::CompiledFilter;
use crate::item::Item;
use crate::item::Source;
use crate::item::{candidate, item_of, path_text};
use crate::name::split_path;
use crate::sink::{Ev, PreRefusal};
use crate::state::hits::HitStore;
use crate::throttle::CpuGate;
use crate::workflow::runner::{Outcome, Runner};
use crate::workflow::webhook::{WebhookCaller, WebhookEnv};

/// Runs of one post item before it is given up (dead-lettered).
pub const MAX_ATTEMPTS: u32 = 3;

/// An enabled event of a bucket, ready to match.
pub(super) struct Rule {
    filter: CompiledFilter,
    workflow: usize,
    timing: Timing,
    webhooks: Webhooks,
}

pub(super) struct BucketRules {
    pub(super) state: BucketState,
    pub(super) name: String,
    pub(super) workflows: Vec<Workflow>,
    pub(super) rules: [Option<Rule>; 3],
}

/// Counters for logs, metrics and tests.
#[derive(Default)]
pub struct EngineStats {
    pub completed: AtomicU64,
    pub aborted: AtomicU64,
    pub journal_errors: AtomicU64,
}

pub struct Engine {
    pub(super) buckets: Vec<BucketRules>,
    by_name: FxHashMap<OsString, usize>,
    journal: Arc<Journal>,
    hits: HitStore,
    runner: Runner,
    webhooks: Arc<WebhookCaller>,
    /// Pauses before retries of failed post items.
    retries: RetryTimer,
    /// Webhooks of pre events.
    hooks: HookPool,
    gate: Arc<CpuGate>,
    stop: AtomicBool,
    state_dir: PathBuf,
    tmp_dir: PathBuf,
    pub stats: EngineStats,
    /// Pollers, reconcilers and what inotify already fired.
    pub(super) detection: super::detect::Detection,
}

impl Engine {
    /// The engine for the enabled buckets `buckets` of `config`; opens the
    /// journal (replaying what a previous run left) and the hit counts.
    pub fn new(config: &Config, buckets: &[BucketState]) -> Result<Arc<Engine>, EventError> {
        Engine::with_gate(config, buckets, CpuGate::start(&config.throttling))
    }

    /// Like [`Engine::new`] with a given CPU gate (tests inject one).
    pub fn with_gate(
        config: &Config,
        buckets: &[BucketState],
        gate: Arc<CpuGate>,
    ) -> Result<Arc<Engine>, EventError> {
        let state = &config.state_dir;
        let tmp = state.join("tmp");
        for dir in [
            state.clone(),
            tmp.clone(),
            state.join("journal"),
            state.join(PRESTAGE_DIR),
        ] {
            // The top directory may be the operator's; what is below is ours.
            let made = if dir == *state {
                crate::state::private::create_dir(&dir)
            } else {
                crate::state::private::own_dir(&dir)
            };
            made.map_err(|source| EventError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        clean_tmp(&tmp);
        let (journal, replay) =
            Journal::open(&state.join("journal")).map_err(|source| EventError::Journal {
                state_dir: state.clone(),
                source,
            })?;
        if !replay.is_empty() {
            tracing::info!(events = replay.len(), "replaying unfinished post events");
        }
        let mut rules = Vec::new();
        let mut by_name = FxHashMap::default();
        for b in &config.buckets {
            let Some(state) = buckets.iter().find(|s| s.name == OsStr::new(&b.meta.name)) else {
                continue;
            };
            let mut slot: [Option<Rule>; 3] = [None, None, None];
            for (ev, e) in [
                (Ev::Get, &b.events.on_get),
                (Ev::Put, &b.events.on_put),
                (Ev::Delete, &b.events.on_delete),
            ] {
                let Some(trigger) = e.trigger.as_ref().filter(|_| e.enable) else {
                    continue;
                };
                let Some(wi) = b.workflows.iter().position(|w| w.name == trigger.workflow) else {
                    continue;
                };
                if !b.workflows[wi].enable {
                    tracing::warn!(bucket = %b.meta.name, event = ev.name(), workflow = %trigger.workflow,
                        "the event's workflow is disabled; the event does nothing");
                    continue;
                }
                let filter =
                    CompiledFilter::new(e.filter.as_ref()).map_err(|m| EventError::Filter {
                        bucket: b.meta.name.clone(),
                        event: ev.name(),
                        message: m.to_string(),
                    })?;
                slot[ev.index()] = Some(Rule {
                    filter,
                    workflow: wi,
                    timing: trigger.timing,
                    webhooks: e.webhooks.clone(),
                });
            }
            by_name.insert(OsString::from(&b.meta.name), rules.len());
            rules.push(BucketRules {
                state: state.clone(),
                name: b.meta.name.clone(),
                workflows: b.workflows.clone(),
                rules: slot,
            });
        }
        // Own changes must be known until the slowest poller looks again.
        let keep = Engine::longest_interval(buckets) * 3 + Duration::from_secs(30);
        let selfc = Arc::new(SelfChanges::watching(state).keep_at_least(keep));
        crate::bucket::attach_self_changes(buckets, &selfc);
        let threads = |e: std::io::Error| EventError::CreateDir {
            path: state.clone(),
            source: std::io::Error::new(e.kind(), format!("cannot start an engine thread: {e}")),
        };
        Ok(Arc::new(Engine {
            buckets: rules,
            by_name,
            journal: Arc::new(journal),
            retries: RetryTimer::start().map_err(threads)?,
            hooks: HookPool::start(2, 1024).map_err(threads)?,
            hits: HitStore::open(state),
            runner: Runner::new(selfc, tmp.clone(), config.function_base_url.clone()),
            state_dir: state.clone(),
            tmp_dir: tmp,
            webhooks: Arc::new(WebhookCaller::new()),
            gate,
            stop: AtomicBool::new(false),
            stats: EngineStats::default(),
            detection: Default::default(),
        }))
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    pub fn webhooks(&self) -> &WebhookCaller {
        &self.webhooks
    }

    pub fn gate(&self) -> &CpuGate {
        &self.gate
    }

    pub fn hits(&self) -> &HitStore {
        &self.hits
    }

    /// The enabled bucket called `name`, as the engine serves it.
    pub fn bucket_state(&self, name: &str) -> Option<&BucketState> {
        self.bucket_index(OsStr::new(name))
            .map(|b| &self.buckets[b].state)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    pub fn self_changes(&self) -> &SelfChanges {
        self.runner.self_changes()
    }

    pub fn bucket_index(&self, name: &OsStr) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The timing of `ev` in bucket `b`, if the bucket has that event.
    pub fn timing(&self, b: usize, ev: Ev) -> Option<Timing> {
        self.buckets[b].rules[ev.index()].as_ref().map(|r| r.timing)
    }

    /// Whether bucket `b` has any of onPut / onDelete (the events the
    /// watcher and the self-change registry serve).
    pub(super) fn watches(&self, b: usize) -> bool {
        self.timing(b, Ev::Put).is_some() || self.timing(b, Ev::Delete).is_some()
    }

    fn matches(&self, b: usize, ev: Ev, path: &[OsString], st: &libc::stat) -> Option<&Rule> {
        let rule = self.buckets[b].rules[ev.index()].as_ref()?;
        let name = path.last().map_or(OsStr::new(""), |n| n.as_os_str());
        rule.filter
            .matches_event(&candidate(name, st, 1), SystemTime::now())
            .then_some(rule)
    }

    fn source_dir(&self, b: usize, path: &[OsString]) -> String {
        source_dir(&self.buckets[b].state.tree, path)
    }

    /// `path` was written: its `item.hits` count starts again (whether or
    /// not the bucket has onPut).
    pub fn written(&self, b: usize, path: &[OsString]) {
        self.hits.reset(&self.buckets[b].name, &path_text(path));
    }

    /// `item.hits` for an event that fires: an onGet counts one more, an
    /// onPut starts again from zero.
    fn count_hit(&self, ev: Ev, bucket: &str, path: &str) -> u64 {
        match ev {
            Ev::Get => self.hits.hit(bucket, path),
            Ev::Put => {
                self.hits.reset(bucket, path);
                0
            }
            Ev::Delete => self.hits.get(bucket, path),
        }
    }

    /// Fires a post event: filter, then the journal (durable on return).
    pub fn post(&self, b: usize, ev: Ev, path: &[OsString], st: &libc::stat) {
        if self.matches(b, ev, path, st).is_none() {
            return;
        }
        let br = &self.buckets[b];
        let Some(rule) = br.rules[ev.index()].as_ref() else {
            return;
        };
        let text = path_text(path);
        let span = tracing::debug_span!("event", bucket = %br.name, event = ev.name(), path = ?text,
            id = tracing::field::Empty);
        let _entered = span.enter();
        let hits = self.count_hit(ev, &br.name, &text);
        let item = item_of(path, st, hits);
        let value = serde_json::to_value(&item).unwrap_or(serde_json::Value::Null);
        let event = PostEvent::new(
            br.name.clone(),
            br.workflows[rule.workflow].name.clone(),
            ev.name(),
            text.clone(),
            value,
        );
        match self.journal.append(event) {
            Ok(appended) => {
                span.record("id", appended.id());
            }
            Err(e) => {
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(bucket = %br.name, event = ev.name(), path = ?text, error = %e,
                    "cannot journal a post event; it is lost");
            }
        }
    }

    /// Runs a pre event while the client waits: Ok(false) when the filter
    /// does not match, Ok(true) when the workflow completed, Err when it
    /// aborted.
    pub fn pre(
        &self,
        b: usize,
        ev: Ev,
        path: &[OsString],
        st: &libc::stat,
        source: Source,
    ) -> Result<bool, PreRefusal> {
        let Some(rule) = self.matches(b, ev, path, st) else {
            return Ok(false);
        };
        let br = &self.buckets[b];
        let text = path_text(path);
        let span = tracing::info_span!("event", bucket = %br.name, event = ev.name(), path = ?text,
            timing = "pre");
        let _entered = span.enter();
        let hits = self.count_hit(ev, &br.name, &text);
        let item = item_of(path, st, hits);
        let wf = &br.workflows[rule.workflow];
        let source_dir = self.source_dir(b, path);
        let outcome = self.runner.run(&br.state, wf, &item, &source, &source_dir);
        self.finish(b, ev, rule, wf, &item, &outcome, 1, true);
        match outcome.error {
            None => Ok(true),
            Some(message) => Err(PreRefusal { message }),
        }
    }

    /// Counts, logs and reports a finished run; webhooks go to the hook
    /// pool when `detach` (a client is waiting).
    #[allow(clippy::too_many_arguments)]
    fn finish(
        self: &Engine,
        b: usize,
        ev: Ev,
        rule: &Rule,
        wf: &Workflow,
        item: &Item,
        outcome: &Outcome,
        attempt: u32,
        detach: bool,
    ) {
        let br = &self.buckets[b];
        let (hook_name, hook) = match &outcome.error {
            None => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(bucket = %br.name, event = ev.name(), workflow = %wf.name, path = ?item.path, "item completed");
                ("onItemCompleted", rule.webhooks.on_item_completed.clone())
            }
            Some(e) => {
                self.stats.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(bucket = %br.name, event = ev.name(), workflow = %wf.name, path = ?item.path,
                    attempt, error = %e, "item aborted");
                ("onItemAborted", rule.webhooks.on_item_aborted.clone())
            }
        };
        let Some(hook) = hook else { return };
        let payload = serde_json::json!({
            "event": ev.name(),
            "hook": hook_name,
            "bucket": br.name,
            "workflow": wf.name,
            "item": item,
            "outputs": outcome.outputs,
            "error": outcome.error,
            "chunk": null,
            "attempt": attempt,
        });
        let call = {
            let bucket = br.name.clone();
            let path = item.path.clone();
            move |caller: &WebhookCaller| {
                let env = WebhookEnv {
                    event: ev.name(),
                    bucket: &bucket,
                    path: &path,
                    hook: hook_name,
                };
                // Failures are logged and counted by the caller; they never
                // fail the item.
                let _ = caller.call(&hook, &payload, &env);
            }
        };
        if detach {
            let caller = self.webhooks.clone();
            self.hooks.submit(move || call(&caller));
        } else {
            call(&self.webhooks);
        }
    }

    /// Starts `n` workers running journaled post events.
    pub fn start_workers(self: &Arc<Self>, n: usize) -> Vec<std::thread::JoinHandle<()>> {
        (0..n.max(1))
            .map(|i| {
                let engine = self.clone();
                std::thread::Builder::new()
                    .name(format!("storgate-worker-{i}"))
                    .spawn(move || engine.work_loop())
                    .unwrap_or_else(|e| panic!("cannot start a worker thread: {e}"))
            })
            .collect()
    }

    /// Stops the workers after their current item and syncs the journal.
    /// Retries not yet due stay journaled (in flight: replayed at the next
    /// start); queued webhooks are still called.
    pub fn shutdown(&self) {
        self.stop_change_detection();
        self.stop.store(true, Ordering::Relaxed);
        self.gate.stop();
        self.retries.stop();
        self.hooks.stop();
        if let Err(e) = self.journal.sync() {
            tracing::warn!(error = %e, "cannot sync the journal at shutdown");
        }
    }

    fn work_loop(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(ev) = self.journal.take_blocking(Duration::from_millis(500)) {
                // Throttling holds back new post items (SPEC §6.3); pre
                // events never wait here. Asked with the event in hand, so
                // the one pass per pause period never goes to an empty queue.
                self.gate.wait_ready(&self.stop);
                if self.stop.load(Ordering::Relaxed) {
                    // Still journaled (taken, not done): replayed at the next start.
                    return;
                }
                self.run_post(ev);
            }
        }
    }

    fn run_post(self: &Arc<Self>, ev: PostEvent) {
        let id = ev.id;
        let span = tracing::info_span!("event", bucket = %ev.bucket, event = %ev.event, path = ?ev.path,
            id, attempt = ev.attempts + 1);
        let _entered = span.enter();
        let resolved = self.by_name.get(OsStr::new(&ev.bucket)).and_then(|&b| {
            let kind = Ev::from_name(&ev.event)?;
            let rule = self.buckets[b].rules[kind.index()].as_ref()?;
            (self.buckets[b].workflows[rule.workflow].name == ev.workflow)
                .then_some((b, kind, rule))
        });
        let Some((b, kind, rule)) = resolved else {
            // The config changed since the event was journaled.
            tracing::warn!(bucket = %ev.bucket, event = %ev.event, workflow = %ev.workflow, path = ?ev.path,
                "journaled event no longer matches the configuration; dropped");
            let _ = self.journal.failed(id, false, "no longer configured");
            return;
        };
        let br = &self.buckets[b];
        let wf = &br.workflows[rule.workflow];
        let mut item: Item = serde_json::from_value(ev.item.clone()).unwrap_or_default();
        item.hits = self.hits.get(&br.name, &ev.path);
        // The exact components: `ev.path` is lossless text.
        let comps = split_path(&ev.path);
        if comps.iter().any(|c| c == "..") {
            // No name is `..`: a damaged or forged journal line.
            tracing::warn!(bucket = %ev.bucket, path = ?ev.path, "journaled path has a `..` component; dropped");
            let _ = self.journal.failed(id, false, "path has a `..` component");
            return;
        }
        let source = match kind {
            Ev::Delete => Source::Empty,
            _ => {
                let store = crate::bucket::store::Store {
                    bucket: &br.state,
                    selfc: self.self_changes(),
                    tmp_dir: Path::new("/"),
                };
                match store.find(&comps) {
                    Ok(_) => Source::Bucket(comps.clone()),
                    Err(e) if e == crate::error::Errno::ENOENT => {
                        // Deleted (or renamed) since: the later event covers it.
                        tracing::debug!(bucket = %br.name, path = ?ev.path, "item gone before its post event ran");
                        let _ = self.journal.done(id);
                        return;
                    }
                    Err(_) => Source::Bucket(comps.clone()),
                }
            }
        };
        let source_dir = self.source_dir(b, &comps);
        let outcome = self.runner.run(&br.state, wf, &item, &source, &source_dir);
        let attempt = ev.attempts + 1;
        self.finish(b, kind, rule, wf, &item, &outcome, attempt, false);
        let result = match &outcome.error {
            None => self.journal.done(id).map(drop),
            Some(err) if attempt < MAX_ATTEMPTS => {
                // Pause before the retry without holding a worker; the event
                // stays in flight in the journal meanwhile.
                let journal = self.journal.clone();
                let err = err.clone();
                self.retries.after(retry_pause(attempt), move || {
                    if let Err(e) = journal.failed(id, true, &err) {
                        tracing::error!(error = %e, "cannot requeue a failed event");
                    }
                });
                Ok(())
            }
            Some(err) => self.journal.failed(id, false, err).map(drop),
        };
        if let Err(e) = result {
            self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot record an event's end in the journal");
        }
    }
}

/// Workers for post events and for the items of a batch chunk:
/// `STORGATE_WORKERS` (1–256), else 8.
pub fn worker_count() -> usize {
    std::env::var("STORGATE_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=256).contains(n))
        .unwrap_or(8)
}

impl crate::sink::EventSink for Engine {
    fn bucket_index(&self, name: &OsStr) -> Option<usize> {
        Engine::bucket_index(self, name)
    }
    fn timing(&self, b: usize, ev: Ev) -> Option<Timing> {
        Engine::timing(self, b, ev)
    }
    fn written(&self, b: usize, path: &[OsString]) {
        Engine::written(self, b, path)
    }
    fn post(&self, b: usize, ev: Ev, path: &[OsString], st: &libc::stat) {
        Engine::post(self, b, ev, path, st)
    }
    fn pre(
        &self,
        b: usize,
        ev: Ev,
        path: &[OsString],
        st: &libc::stat,
        source: Source,
    ) -> Result<bool, PreRefusal> {
        Engine::pre(self, b, ev, path, st, source)
    }
    fn self_changes(&self) -> &SelfChanges {
        Engine::self_changes(self)
    }
    fn state_dir(&self) -> &Path {
        Engine::state_dir(self)
    }
    fn tmp_dir(&self) -> &Path {
        Engine::tmp_dir(self)
    }
}
