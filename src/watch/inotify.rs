//! The one watcher of local origins: a recursive inotify watch (via
//! `notify`) on each local origin root, whose events go to every
//! subscriber — the event engine (post events for changes made behind the
//! mount's back) and the file-system core (kernel cache invalidation).
//! Neither subscriber knows the other; the daemon wires them.
//!
//! Roots and subscribers can be added while the watcher runs: the engine
//! subscribes before the mount, the kernel-cache side once the FUSE session
//! (and its notifier) exists.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

/// One receiver of origin events.
pub type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

pub struct OriginWatcher {
    watcher: Mutex<RecommendedWatcher>,
    subscribers: Arc<RwLock<Vec<Subscriber>>>,
    watched: Mutex<BTreeSet<PathBuf>>,
}

impl OriginWatcher {
    /// A watcher with no root and no subscriber yet.
    pub fn new() -> notify::Result<OriginWatcher> {
        let subscribers: Arc<RwLock<Vec<Subscriber>>> = Arc::default();
        let subs = subscribers.clone();
        let handler = move |res: notify::Result<Event>| match res {
            Ok(event) => {
                // Called without the lock: a subscriber may journal (fsync).
                let list = subs.read().map(|l| l.clone()).unwrap_or_default();
                for s in &list {
                    s(&event);
                }
            }
            Err(e) => tracing::warn!(error = %e, "origin watcher error"),
        };
        // Never follow a symlink inside an origin: a client's link to /etc
        // would otherwise put a directory outside the origin under watch.
        let watcher = RecommendedWatcher::new(
            handler,
            notify::Config::default().with_follow_symlinks(false),
        )?;
        Ok(OriginWatcher {
            watcher: Mutex::new(watcher),
            subscribers,
            watched: Mutex::default(),
        })
    }

    /// Adds a receiver of every later event.
    pub fn subscribe(&self, s: Subscriber) {
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Watches the `roots` not watched yet (recursively). A root that cannot
    /// be watched is logged: external changes under it then fire no events
    /// and show in the mount only after the attribute TTL.
    pub fn watch(&self, roots: &[PathBuf]) {
        for root in roots {
            if !self
                .watched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(root.clone())
            {
                continue;
            }
            let res = self
                .watcher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .watch(root, RecursiveMode::Recursive);
            if let Err(e) = res {
                tracing::error!(origin = %root.display(), error = %e,
                    "cannot watch origin; changes made outside the mount fire no events and show after the attribute TTL");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn every_subscriber_hears_a_change() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = OriginWatcher::new().expect("watcher");
        let (tx, rx) = channel();
        for who in ["engine", "cache"] {
            let tx = Mutex::new(tx.clone());
            w.subscribe(Arc::new(move |e: &Event| {
                if e.paths.iter().any(|p| p.ends_with("f")) {
                    let _ = tx.lock().expect("lock").send(who);
                }
            }));
        }
        w.watch(&[d.path().to_path_buf(), d.path().to_path_buf()]);
        std::fs::write(d.path().join("f"), b"x").expect("write");
        let mut heard = BTreeSet::new();
        while heard.len() < 2 {
            heard.insert(rx.recv_timeout(Duration::from_secs(30)).expect("event"));
        }
    }
}
