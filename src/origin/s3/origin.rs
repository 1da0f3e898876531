//! An S3 bucket (or a key prefix of one) as an origin: POSIX operations
//! turned into object requests (SPEC §3.3), with the attribute and listing
//! cache of `metadataTtl`. Calls block the calling FUSE thread on the shared
//! tokio runtime and are bounded by the endpoint's `timeout`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use super::cache::{Listing, TtlCaches};
use super::client::S3Client;
use super::file::{S3File, Staged};
use super::keys::{self, Listed};
use super::meta::{self, Attrs, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE};
use crate::config::S3Endpoint;
use crate::error::{Errno, FsResult};
use crate::origin::{OriginDirEntry, OriginError, OriginResult, SetTime};

/// The runtime that serves every S3 request of the daemon.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("storgate-io")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the I/O runtime: {e}"))
    })
}

/// What a path is, as far as S3 knows.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    Dir(Attrs),
    File {
        size: u64,
        etag: String,
        attrs: Attrs,
    },
}

/// User metadata seen (HEAD, our own uploads), by key, valid for one ETag:
/// lets listings show the real times without a HEAD per entry. Not a TTL
/// cache: an entry stays right for as long as the object keeps its ETag, and
/// it is persisted in the index log.
type AttrIndex = HashMap<String, (String, Attrs)>;

pub struct S3Origin {
    pub(crate) client: Arc<S3Client>,
    /// Key prefix of the origin root (`""` or `"a/b/"`).
    root: String,
    name: String,
    ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) staging: PathBuf,
    cache: TtlCaches,
    attrs: Mutex<AttrIndex>,
    /// Files open for writing, by key: what they hold is the file's state.
    writers: Mutex<HashMap<String, Weak<Staged>>>,
    mounted_at: (i64, i64),
    /// Append-only log of the attribute index, so that listings right after
    /// a remount show what storgate stored (no HEAD per listed entry).
    index_log: Mutex<Option<std::fs::File>>,
    /// Where this process's own writes and deletes are recorded.
    pub(super) changes: std::sync::OnceLock<Arc<dyn crate::origin::ChangeLog>>,
    /// Keys this process is writing by one request right now (count).
    pub(super) in_flight: Mutex<HashMap<String, u32>>,
}

/// One line of the attribute index log.
#[derive(serde::Serialize, serde::Deserialize)]
struct IndexLine {
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default)]
    m: u32,
    #[serde(default)]
    u: u32,
    #[serde(default)]
    g: u32,
    #[serde(default)]
    t: (i64, i64),
}

/// Loads the index log (last line per key wins; a line without an ETag
/// forgets the key) and rewrites it compacted.
fn load_index(path: &std::path::Path) -> (HashMap<String, (String, Attrs)>, Option<std::fs::File>) {
    use std::io::BufRead;
    use std::os::unix::fs::OpenOptionsExt;
    let mut map = HashMap::new();
    if let Ok(f) = std::fs::File::open(path) {
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            let Ok(l) = serde_json::from_str::<IndexLine>(&line) else {
                continue;
            };
            match l.e {
                Some(e) => {
                    let a = Attrs {
                        mode: l.m,
                        uid: l.u,
                        gid: l.g,
                        mtime: l.t,
                    };
                    map.insert(l.k, (e, a));
                }
                None => {
                    map.remove(&l.k);
                }
            }
        }
    }
    // Compacted through the one atomic-write helper of `state/`: a crash
    // mid-compaction leaves the old index or the new one, never half of one.
    let mut out = Vec::new();
    for (k, (e, a)) in &map {
        let l = IndexLine {
            k: k.clone(),
            e: Some(e.clone()),
            m: a.mode,
            u: a.uid,
            g: a.gid,
            t: a.mtime,
        };
        match crate::state::jsonl::encode(&l) {
            Ok(line) => out.extend_from_slice(&line),
            Err(e) => {
                tracing::warn!(key = %l.k, error = %e, "cannot encode an S3 attribute index line")
            }
        }
    }
    let rewritten = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => crate::state::atomic::write_atomic(dir, name, &out).map(drop),
        _ => Ok(()),
    };
    if let Err(e) = rewritten {
        tracing::warn!(path = %path.display(), error = %e, "cannot compact the S3 attribute index");
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path);
    if let Err(e) = &log {
        tracing::warn!(path = %path.display(), error = %e, "S3 attribute index not persisted");
    }
    (map, log.ok())
}

/// `mkdir -p dir`, then mode 0700 (also when it existed with another mode).
fn private_dir(dir: &std::path::Path) -> OriginResult<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

impl S3Origin {
    pub fn new(
        ep: &S3Endpoint,
        prefix: &str,
        state_dir: &std::path::Path,
    ) -> OriginResult<Arc<S3Origin>> {
        let client = runtime()
            .block_on(S3Client::connect(ep))
            .map_err(|e| e.context(format!("aws_s3 {}", ep.name)))?;
        // Staged bytes are clients' and index lines name their files: both
        // directories are the daemon's alone, whatever the umask.
        let staging = state_dir.join(super::file::STAGING_DIR);
        private_dir(&staging)
            .map_err(|e| e.context(format!("staging directory {}", staging.display())))?;
        let index_dir = state_dir.join("s3meta");
        private_dir(&index_dir)
            .map_err(|e| e.context(format!("index directory {}", index_dir.display())))?;
        let safe = |s: &str| {
            s.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '.',
                "_",
            )
        };
        let (attrs, index_log) =
            load_index(&index_dir.join(format!("{}-{}.jsonl", safe(&ep.name), safe(&ep.bucket))));
        let timeout = client.timeout();
        Ok(Arc::new(S3Origin {
            client: Arc::new(client),
            root: keys::root_prefix(prefix),
            name: ep.name.clone(),
            ttl: ep.metadata_ttl,
            // The client's: a `timeout` of 0 means its default.
            timeout,
            staging,
            cache: TtlCaches::new(ep.metadata_ttl),
            attrs: Mutex::new(attrs),
            writers: Mutex::new(HashMap::new()),
            mounted_at: meta::now(),
            index_log: Mutex::new(index_log),
            changes: std::sync::OnceLock::new(),
            in_flight: Mutex::new(HashMap::new()),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that the endpoint answers and that the origin can be listed
    /// (one ListObjectsV2 of one key under its prefix: the bucket exists,
    /// the credentials work), within the endpoint's timeout. The error names
    /// the endpoint, its URL and the bucket. An endpoint that did not
    /// answer counts as silent afterwards: the first client calls fail fast.
    pub fn check(&self) -> OriginResult<()> {
        let res = runtime().block_on(self.client.list_page(&self.root, None, None, None, Some(1)));
        res.map(drop).map_err(|e| {
            if e.errno() == Errno::ETIMEDOUT {
                self.client.assume_silent();
            }
            e.context(self.describe())
        })
    }

    /// `aws_s3 "NAME" (URL, bucket BUCKET[, prefix P])`, for messages.
    pub fn describe(&self) -> String {
        let prefix = match self.root.as_str() {
            "" => String::new(),
            p => format!(", prefix {p}"),
        };
        format!(
            "aws_s3 {:?} ({}, bucket {}{prefix})",
            self.name,
            self.client.url(),
            self.client.bucket()
        )
    }

    pub fn metadata_ttl(&self) -> Duration {
        self.ttl
    }

    fn attrs(&self) -> std::sync::MutexGuard<'_, AttrIndex> {
        self.attrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one metadata request, never longer than the endpoint's timeout
    /// (plus a margin for the SDK's own retry pacing). The answer is the
    /// errno: the client has logged the failure with its S3 code and
    /// context where it happened.
    pub(crate) fn run<T, E: Into<Errno>>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
    ) -> FsResult<T> {
        let limit = self.timeout + Duration::from_secs(5);
        runtime().block_on(async {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => {
                    tracing::warn!(origin = %self.name, limit = ?limit, "S3 request timed out");
                    Err(Errno::ETIMEDOUT)
                }
            }
        })
    }

    /// The key prefix of the origin root (`""` or `"a/b/"`).
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    pub(crate) fn key(&self, rel: &[OsString]) -> FsResult<String> {
        keys::key_of(&self.root, rel)
    }

    fn parent_prefix(&self, rel: &[OsString]) -> FsResult<String> {
        keys::dir_prefix(&self.root, &rel[..rel.len().saturating_sub(1)])
    }

    /// Forgets what is cached about `rel` and its directory.
    pub(crate) fn invalidate(&self, rel: &[OsString]) {
        let (Ok(key), Ok(parent)) = (self.key(rel), self.parent_prefix(rel)) else {
            return;
        };
        self.cache.forget(&key, &parent);
    }

    pub(crate) fn remember_attrs(&self, key: &str, etag: &str, attrs: Attrs) {
        let unchanged = self
            .attrs()
            .insert(key.to_string(), (etag.to_string(), attrs))
            .is_some_and(|(e, a)| e == etag && a == attrs);
        if !unchanged {
            self.log_index(IndexLine {
                k: key.to_string(),
                e: Some(etag.to_string()),
                m: attrs.mode,
                u: attrs.uid,
                g: attrs.gid,
                t: attrs.mtime,
            });
        }
    }

    fn forget_attrs(&self, key: &str) {
        if self.attrs().remove(key).is_some() {
            self.log_index(IndexLine {
                k: key.to_string(),
                e: None,
                m: 0,
                u: 0,
                g: 0,
                t: (0, 0),
            });
        }
    }

    fn log_index(&self, line: IndexLine) {
        use std::io::Write;
        let mut log = self.index_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = log.as_mut()
            && let Ok(mut text) = serde_json::to_string(&line)
        {
            text.push('\n');
            // A cache: a lost line only costs accuracy until the next HEAD.
            let _ = f.write_all(text.as_bytes());
        }
    }

    pub(super) fn known_attrs(&self, key: &str, etag: &str) -> Option<Attrs> {
        match self.attrs().get(key) {
            Some((e, a)) if e == etag => Some(*a),
            _ => None,
        }
    }

    pub(crate) fn writer(&self, key: &str) -> Option<Arc<Staged>> {
        let w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        w.get(key).and_then(Weak::upgrade)
    }

    pub(crate) fn register_writer(&self, key: &str, staged: &Arc<Staged>) {
        let mut w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, s| s.strong_count() > 0);
        w.insert(key.to_string(), Arc::downgrade(staged));
    }

    fn writers_under(&self, prefix: &str) -> Vec<String> {
        let w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        w.iter()
            .filter(|(k, s)| k.starts_with(prefix) && s.strong_count() > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The listing of directory prefix `prefix`, from the cache if fresh.
    fn listing(&self, prefix: &str) -> FsResult<Listing> {
        if let Some(l) = self.cache.listing(prefix) {
            return Ok(l);
        }
        let page = self.run(self.client.list_all(prefix, Some("/")))?;
        let listed = Arc::new(keys::entries_of(prefix, &page.objects, &page.prefixes));
        self.cache.store_listing(prefix, listed.clone());
        Ok(listed)
    }

    /// What a listing says about an entry, and whether its attributes are
    /// exact (known from the index) or only LIST's size and LastModified.
    fn found_from_listing(&self, dir_key: &str, entry: &Listed) -> (Found, bool) {
        match entry {
            Listed::Dir => {
                let known = self.attrs().get(&format!("{dir_key}/")).map(|(_, a)| *a);
                (
                    Found::Dir(known.unwrap_or_else(|| self.default_dir_attrs())),
                    known.is_some(),
                )
            }
            Listed::File {
                key,
                size,
                etag,
                last_modified,
            } => {
                let known = self.known_attrs(key, etag);
                let found = Found::File {
                    size: *size,
                    etag: etag.clone(),
                    attrs: known.unwrap_or_else(|| {
                        Attrs::from_user(&HashMap::new(), DEFAULT_FILE_MODE, *last_modified)
                    }),
                };
                (found, known.is_some())
            }
        }
    }

    pub(super) fn default_dir_attrs(&self) -> Attrs {
        Attrs {
            mode: DEFAULT_DIR_MODE,
            uid: 0,
            gid: 0,
            mtime: self.mounted_at,
        }
    }

    /// What `rel` is: from an open writer, the cache, a fresh listing of its
    /// directory, or a HEAD of the key plus a one-key LIST of `key/`.
    pub(crate) fn find(&self, rel: &[OsString]) -> FsResult<Found> {
        self.find_with(rel, false).map(|(f, _)| f)
    }

    /// `listed`: the caller is turning a listing into attributes (readdirplus)
    /// and takes LIST's answer even where the object's metadata is unknown;
    /// the bool returned says whether the attributes are exact. Any other
    /// lookup of such an entry asks the object itself (one HEAD).
    pub(crate) fn find_with(&self, rel: &[OsString], listed: bool) -> FsResult<(Found, bool)> {
        if rel.is_empty() {
            return Ok((Found::Dir(self.default_dir_attrs()), true));
        }
        let key = self.key(rel)?;
        if let Some(w) = self.writer(&key) {
            return w.found().map(|f| (f, true));
        }
        if let Some(f) = self.cache.lookup(&key) {
            return f.map(|f| (f, true)).ok_or(Errno::ENOENT);
        }
        let parent = self.parent_prefix(rel)?;
        if let Some(listing) = self.cache.listing(&parent) {
            let name = key.rsplit('/').next().unwrap_or(&key);
            match listing.get(name) {
                Some(entry) => {
                    let (found, exact) = self.found_from_listing(&key, entry);
                    if exact || listed {
                        return Ok((found, exact));
                    }
                }
                None => return Err(Errno::ENOENT),
            }
        }
        let dir_prefix = format!("{key}/");
        let (head, below) = self.run(async {
            let (h, l) = tokio::join!(
                self.client.head(&key),
                self.client
                    .list_page(&dir_prefix, None, None, None, Some(1))
            );
            Ok::<_, OriginError>((h?, l?))
        })?;
        let found = if !below.objects.is_empty() || !below.prefixes.is_empty() {
            let marker = below.objects.iter().find(|o| o.key == dir_prefix);
            let attrs = match marker {
                Some(m) => match self.known_attrs(&m.key, &m.etag) {
                    Some(a) => a,
                    // One lookup of one directory: its marker's metadata.
                    None => match self.run(self.client.head(&m.key)) {
                        Ok(Some(h)) => {
                            let a = Attrs::from_user(&h.user, DEFAULT_DIR_MODE, h.last_modified);
                            self.remember_attrs(&m.key, &h.etag, a);
                            a
                        }
                        _ => Attrs {
                            mtime: meta::unix_time(m.last_modified),
                            ..self.default_dir_attrs()
                        },
                    },
                },
                None => self.default_dir_attrs(),
            };
            Some(Found::Dir(attrs))
        } else if let Some(h) = head {
            let attrs = Attrs::from_user(&h.user, DEFAULT_FILE_MODE, h.last_modified);
            self.remember_attrs(&key, &h.etag, attrs);
            Some(Found::File {
                size: h.size,
                etag: h.etag,
                attrs,
            })
        } else {
            None
        };
        self.cache.store_lookup(key, found.clone());
        found.map(|f| (f, true)).ok_or(Errno::ENOENT)
    }

    /// lstat for a listing: no HEAD; `false` when the attributes are only
    /// LIST's (the kernel must not cache them).
    pub fn lstat_listed(&self, rel: &[OsString]) -> FsResult<(libc::stat, bool)> {
        let (found, exact) = self.find_with(rel, true)?;
        let st = match found {
            Found::Dir(a) => a.stat(0, 0),
            Found::File { size, attrs, .. } => attrs.stat(size, 0),
        };
        Ok((st, exact))
    }

    pub fn lstat(&self, rel: &[OsString]) -> FsResult<libc::stat> {
        Ok(match self.find(rel)? {
            Found::Dir(a) => a.stat(0, 0),
            Found::File { size, attrs, .. } => attrs.stat(size, 0),
        })
    }

    fn require_dir(&self, rel: &[OsString]) -> FsResult<()> {
        match self.find(rel)? {
            Found::Dir(_) => Ok(()),
            Found::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn require_absent(&self, rel: &[OsString]) -> FsResult<()> {
        self.require_dir(&rel[..rel.len().saturating_sub(1)])?;
        match self.find(rel) {
            Ok(_) => Err(Errno::EEXIST),
            Err(e) if e == Errno::ENOENT => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn read_dir(&self, rel: &[OsString]) -> FsResult<Vec<OriginDirEntry>> {
        let prefix = keys::dir_prefix(&self.root, rel)?;
        let listing = self.listing(&prefix)?;
        let mut out: Vec<OriginDirEntry> = listing
            .iter()
            .map(|(name, e)| OriginDirEntry {
                name: OsString::from(name),
                d_type: match e {
                    Listed::Dir => libc::DT_DIR,
                    Listed::File { key, etag, .. } => match self.known_attrs(key, etag) {
                        Some(a) if a.is_symlink() => libc::DT_LNK,
                        _ => libc::DT_REG,
                    },
                },
            })
            .collect();
        // Files being written show before their first upload.
        for key in self.writers_under(&prefix) {
            let name = &key[prefix.len()..];
            if !name.contains('/') && !listing.contains_key(name) {
                out.push(OriginDirEntry {
                    name: OsString::from(name),
                    d_type: libc::DT_REG,
                });
            }
        }
        Ok(out)
    }

    pub fn open(self: &Arc<Self>, rel: &[OsString], flags: i32) -> FsResult<S3File> {
        let key = self.key(rel)?;
        let writes = matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
            || flags & libc::O_TRUNC != 0;
        if !writes && let Some(w) = self.writer(&key) {
            return Ok(S3File::View(w));
        }
        let found = self.find(rel)?;
        let (size, etag, attrs) = match found {
            Found::Dir(_) => return Err(Errno::EISDIR),
            Found::File { size, etag, attrs } => (size, etag, attrs),
        };
        if !writes {
            return Ok(S3File::reader(self.clone(), key, size, etag, attrs));
        }
        let truncate = flags & libc::O_TRUNC != 0;
        let staged = Staged::open(
            self.clone(),
            key.clone(),
            rel.to_vec(),
            attrs,
            flags & libc::O_APPEND != 0,
            if truncate { None } else { Some(etag) },
        )?;
        self.register_writer(&key, &staged);
        Ok(S3File::Writer(staged))
    }

    pub fn create(self: &Arc<Self>, rel: &[OsString], flags: i32, mode: u32) -> FsResult<S3File> {
        match self.require_absent(rel) {
            Ok(()) => {}
            Err(e) if e == Errno::EEXIST && flags & libc::O_EXCL == 0 => {
                return self.open(rel, flags);
            }
            Err(e) => return Err(e),
        }
        let key = self.key(rel)?;
        let attrs = Attrs::new(libc::S_IFREG | (mode & 0o7777));
        let staged = Staged::create(
            self.clone(),
            key.clone(),
            rel.to_vec(),
            attrs,
            flags & libc::O_APPEND != 0,
        )?;
        self.register_writer(&key, &staged);
        self.invalidate(rel);
        Ok(S3File::Writer(staged))
    }

    pub fn mkdir(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        self.require_absent(rel)?;
        let marker = format!("{}/", self.key(rel)?);
        let attrs = Attrs::new(libc::S_IFDIR | (mode & 0o7777));
        let _writing = self.writing_now(&marker);
        let etag = self.run(self.client.put_bytes(&marker, Vec::new(), &attrs.to_user()))?;
        self.own_wrote(&marker, &etag);
        self.remember_attrs(&marker, &etag, attrs);
        self.invalidate(rel);
        Ok(())
    }

    pub fn rmdir(&self, rel: &[OsString]) -> FsResult<()> {
        if rel.is_empty() {
            return Err(Errno::EBUSY);
        }
        self.require_dir(rel)?;
        let marker = format!("{}/", self.key(rel)?);
        let below = self.run(self.client.list_page(&marker, None, None, None, Some(2)))?;
        let occupied = below.objects.iter().any(|o| o.key != marker)
            || !below.prefixes.is_empty()
            || !self.writers_under(&marker).is_empty();
        if occupied {
            return Err(Errno::ENOTEMPTY);
        }
        self.own_deleting(&marker);
        match self.run(self.client.delete(&marker)) {
            Ok(()) => {}
            Err(e) if e == Errno::ENOENT => {}
            Err(e) => return Err(e),
        }
        self.forget_attrs(&marker);
        self.invalidate(rel);
        Ok(())
    }

    pub fn unlink(&self, rel: &[OsString]) -> FsResult<()> {
        match self.find(rel)? {
            Found::Dir(_) => return Err(Errno::EISDIR),
            Found::File { .. } => {}
        }
        let key = self.key(rel)?;
        if let Some(w) = self.writer(&key) {
            // Not uploaded yet: the object must not appear at its close.
            w.forget_target();
        }
        self.own_deleting(&key);
        match self.run(self.client.delete(&key)) {
            Ok(()) => {}
            Err(e) if e == Errno::ENOENT => {}
            Err(e) => return Err(e),
        }
        self.forget_attrs(&key);
        self.invalidate(rel);
        Ok(())
    }

    /// Symlinks are stored like s3fs: the object's body is the target.
    pub fn symlink(&self, target: &OsStr, rel: &[OsString]) -> FsResult<()> {
        self.require_absent(rel)?;
        let key = self.key(rel)?;
        let attrs = Attrs::new(libc::S_IFLNK | 0o777);
        let body = target.as_encoded_bytes().to_vec();
        let _writing = self.writing_now(&key);
        let etag = self.run(self.client.put_bytes(&key, body, &attrs.to_user()))?;
        self.own_wrote(&key, &etag);
        self.remember_attrs(&key, &etag, attrs);
        self.invalidate(rel);
        Ok(())
    }

    pub fn readlink(&self, rel: &[OsString]) -> FsResult<Vec<u8>> {
        match self.find(rel)? {
            Found::File {
                size, etag, attrs, ..
            } if attrs.is_symlink() => {
                let key = self.key(rel)?;
                let body = self.run(self.client.get_range(&key, 0..size, Some(&etag)))?;
                Ok(body.to_vec())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Files move by CopyObject + DeleteObject; directories would need one
    /// copy per object below them, so they give EXDEV (`mv` copies instead).
    pub fn rename(&self, from: &[OsString], to: &[OsString], flags: u32) -> FsResult<()> {
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(Errno::EINVAL);
        }
        let attrs = match self.find(from)? {
            Found::Dir(_) => return Err(Errno::EXDEV),
            Found::File { attrs, .. } => attrs,
        };
        self.require_dir(&to[..to.len().saturating_sub(1)])?;
        match self.find(to) {
            Ok(Found::Dir(_)) => return Err(Errno::EISDIR),
            Ok(Found::File { .. }) if flags & libc::RENAME_NOREPLACE != 0 => {
                return Err(Errno::EEXIST);
            }
            Ok(_) => {}
            Err(e) if e == Errno::ENOENT => {}
            Err(e) => return Err(e),
        }
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        if from_key == to_key {
            return Ok(());
        }
        if let Some(w) = self.writer(&from_key) {
            w.upload_now()?;
        }
        let _writing = self.writing_now(&to_key);
        let etag = self.run(self.client.copy(&from_key, &to_key, None))?;
        self.own_wrote(&to_key, &etag);
        self.remember_attrs(&to_key, &etag, attrs);
        self.own_deleting(&from_key);
        self.run(self.client.delete(&from_key))?;
        self.forget_attrs(&from_key);
        self.invalidate(from);
        self.invalidate(to);
        Ok(())
    }

    /// chmod, chown and utimens: new user metadata, by CopyObject onto the
    /// object itself (directories: their `dir/` marker, created if absent).
    pub fn update_attrs(&self, rel: &[OsString], change: impl Fn(&mut Attrs)) -> FsResult<()> {
        if rel.is_empty() {
            return Err(Errno::EPERM);
        }
        let key = self.key(rel)?;
        let writer = self.writer(&key);
        let _upload_done = match &writer {
            Some(w) if w.update_pending_attrs(&change) => return Ok(()),
            Some(w) => {
                self.invalidate(rel);
                Some(w.wait_upload())
            }
            None => None,
        };
        match self.find(rel)? {
            Found::Dir(mut attrs) => {
                change(&mut attrs);
                let marker = format!("{key}/");
                let _writing = self.writing_now(&marker);
                let etag =
                    self.run(self.client.put_bytes(&marker, Vec::new(), &attrs.to_user()))?;
                self.own_wrote(&marker, &etag);
                self.remember_attrs(&marker, &etag, attrs);
            }
            Found::File { mut attrs, .. } => {
                change(&mut attrs);
                let _writing = self.writing_now(&key);
                let etag = self.run(self.client.copy(&key, &key, Some(&attrs.to_user())))?;
                self.own_wrote(&key, &etag);
                self.remember_attrs(&key, &etag, attrs);
            }
        }
        self.invalidate(rel);
        Ok(())
    }

    pub fn chmod(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        self.update_attrs(rel, |a| a.mode = (a.mode & libc::S_IFMT) | (mode & 0o7777))
    }

    pub fn chown(&self, rel: &[OsString], uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.update_attrs(rel, |a| {
            if let Some(u) = uid {
                a.uid = u;
            }
            if let Some(g) = gid {
                a.gid = g;
            }
        })
    }

    pub fn utimens(&self, rel: &[OsString], _atime: SetTime, mtime: SetTime) -> FsResult<()> {
        let mtime = match mtime {
            SetTime::Omit => return self.find(rel).map(drop),
            SetTime::Now => meta::now(),
            SetTime::At(s, ns) => (s, ns),
        };
        self.update_attrs(rel, |a| a.mtime = mtime)
    }

    /// truncate(2) on a path: the object is rewritten at the new size.
    pub fn truncate(self: &Arc<Self>, rel: &[OsString], size: u64) -> FsResult<()> {
        let key = self.key(rel)?;
        if let Some(w) = self.writer(&key) {
            return w.set_len(size);
        }
        if size == 0 {
            let attrs = match self.find(rel)? {
                Found::Dir(_) => return Err(Errno::EISDIR),
                Found::File { mut attrs, .. } => {
                    attrs.mtime = meta::now();
                    attrs
                }
            };
            let _writing = self.writing_now(&key);
            let etag = self.run(self.client.put_bytes(&key, Vec::new(), &attrs.to_user()))?;
            self.own_wrote(&key, &etag);
            self.remember_attrs(&key, &etag, attrs);
            self.invalidate(rel);
            return Ok(());
        }
        // Refused before anything is downloaded.
        super::file::check_size(size)?;
        let file = self.open(rel, libc::O_RDWR)?;
        let res = file.set_len(size).and_then(|()| file.flush());
        // Released on every path: its staging file goes (or, after a failed
        // upload, is kept as `*.failed`).
        file.release();
        res
    }

    pub fn statvfs(&self) -> libc::statvfs {
        // SAFETY: plain old data; zero is valid.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        s.f_bsize = 4096;
        s.f_frsize = 4096;
        s.f_blocks = 1 << 40;
        s.f_bfree = 1 << 40;
        s.f_bavail = 1 << 40;
        s.f_files = 1 << 30;
        s.f_ffree = 1 << 30;
        s.f_namemax = 255;
        s
    }

    /// When `rel` was last written, for `find -newer` on directories etc.
    pub fn mounted_at(&self) -> SystemTime {
        meta::system_time(self.mounted_at)
    }
}
