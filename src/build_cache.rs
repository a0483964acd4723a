//! The build cache in `[paths] cache`: what the last run read and wrote, so that the next one reads
//! only the digest files that changed (`read_digests`) and renders only the issue pages whose inputs
//! changed (`SiteCache`). It never decides what the output says: an entry is used only when what it
//! was made from is unchanged, and a cache that is missing, unreadable, corrupt or written by another
//! Gazette binary is ignored and rewritten. Deleting the folder is always safe.

use std::collections::{BTreeMap, VecDeque};
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Datelike as _, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::digest::{self, Closest, Corpus, Digest, FileResult, ParseError, Signals};
use crate::fingerprint::{self, Fingerprint};

/// Bumped whenever what is stored changes shape or meaning.
const FORMAT: u32 = 3;

/// A file whose times are this close to (or after) the moment its cache entry was written may have
/// changed again within the same tick of the file system's clock (FAT keeps 2 s): it is not trusted
/// by its times alone. Git's "racily clean" entries, with a margin for coarse clocks.
const SETTLE: Duration = if cfg!(test) { Duration::from_millis(300) } else { Duration::from_secs(2) };

/// The digest cache is split into this many files by a hash of the file name, so that one edited
/// digest rewrites a small part of it.
const BUCKETS: usize = 64;
const _: () = assert!(BUCKETS <= 256, "a file's bucket is kept in a byte");

/// What identifies a file's version without reading it: size, modification and change times in
/// nanoseconds, inode. An edit that keeps the size still moves the times; a file replaced by
/// renaming another over it has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    len: u64,
    mtime: i128,
    ctime: i128,
    inode: u64,
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        let nanos = |t: std::io::Result<SystemTime>| t.ok().map_or(0, system_nanos);
        #[cfg(unix)]
        let (ctime, inode) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128, meta.ino())
        };
        #[cfg(not(unix))]
        let (ctime, inode) = (0, 0);
        Stamp { len: meta.len(), mtime: nanos(meta.modified()), ctime, inode }
    }

    /// The file's stamp now, `None` when it is gone.
    pub fn of_path(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| Stamp::of(&m))
    }

    /// Whether the file had stopped changing well before `written` (the cache file's own
    /// modification time, from the same clock): only then do equal stamps mean equal contents.
    fn settled_before(&self, written: i128) -> bool {
        self.mtime.max(self.ctime) + SETTLE.as_nanos() as i128 <= written
    }
}

fn system_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The modification time of a cache file, in nanoseconds.
fn written_at(meta: &Metadata) -> i128 {
    meta.modified().map_or(i128::MIN, system_nanos)
}

/// What the output of this very binary depends on besides its inputs: a cache written by another
/// build of Gazette (another parser, other renderers) is not used.
fn binary_identity() -> String {
    let exe = std::env::current_exe().ok().and_then(|p| std::fs::metadata(p).ok()).map(|m| Stamp::of(&m));
    format!("{} {FORMAT} {exe:?}", env!("CARGO_PKG_VERSION"))
}

/// What the digest cache and the week record of the digests in `dir` are made for: this binary
/// and that folder, however it is spelled (relative or absolute).
fn digests_key(dir: &Path) -> String {
    let dir = crate::config::one_spelling(dir);
    Fingerprint::of(&[&binary_identity(), &dir.to_string_lossy()])
}

/// Writes `bytes` to `path` through a temporary file of this process renamed into place, so that
/// another Gazette reading it never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

// ---------------------------------------------------------------------------------------------
// Digests

/// Whether a command may bring the build cache up to date. Only the commands that write the
/// archive do (build, run, send, serve when it builds): a command that only looks (check,
/// status, preview) uses what the cache holds and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Read,
    Update,
}

/// Reads `[paths] digests` as `digest::read_folder` does, parsing only the files whose stamp is not
/// the one recorded in `cache_dir` with their light digest (or problems), and records those there.
/// A digest from the cache is light (`Digest::light`); a parsed one is whole. The cache is best
/// effort: when it cannot be read or written, every file is simply parsed. With `CacheUse::Read`
/// nothing is written. Also gives every file's stamp, for `WeekHashes`.
pub fn read_digests(dir: &Path, cache_dir: &Path, cache_use: CacheUse) -> std::io::Result<(Corpus, Stamps)> {
    let key = digests_key(dir);
    let folder = cache_dir.join("digests");
    let buckets: Vec<usize> = (0..BUCKETS).collect();
    let files = list_stamped(dir)?;
    let cached: Vec<Option<Bucket>> = crate::render::par_map(&buckets, |&b| Bucket::load(&bucket_path(&folder, b), &key, dir));

    // Each bucket's files, in name order, each with its result from the bucket when the stamps match.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); BUCKETS];
    let bucket_of_file: Vec<u8> = files.iter().map(|(name, _)| bucket_of(name) as u8).collect();
    for (k, &b) in bucket_of_file.iter().enumerate() {
        members[b as usize].push(k);
    }
    struct Part {
        index: usize,
        bucket: Option<Bucket>,
        members: Vec<usize>,
        results: Vec<Option<FileResult>>,
        dirty: bool,
    }
    let mut parts: Vec<Part> =
        cached.into_iter().zip(members).enumerate().map(|(index, (bucket, members))| Part { index, bucket, members, results: Vec::new(), dirty: false }).collect();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    std::thread::scope(|s| {
        for chunk in parts.chunks_mut(BUCKETS.div_ceil(workers)) {
            let files = &files;
            s.spawn(move || {
                for part in chunk {
                    part.results = part.members.iter().map(|&k| part.bucket.as_mut().and_then(|b| b.take(&files[k].0, &files[k].1))).collect();
                    // Entries of files that are gone, and buckets that could not be used, are rewritten too.
                    part.dirty = part.results.iter().any(Option::is_none) || part.bucket.as_ref().is_none_or(Bucket::needs_rewrite);
                    part.bucket = None;
                }
            });
        }
    });

    // The files not found in the cache are read and parsed.
    let misses: Vec<(usize, usize)> =
        parts.iter().enumerate().flat_map(|(b, part)| part.results.iter().enumerate().filter(|(_, r)| r.is_none()).map(move |(j, _)| (b, j))).collect();
    let paths: Vec<PathBuf> = misses.iter().map(|&(b, j)| dir.join(&files[parts[b].members[j]].0)).collect();
    for ((b, j), r) in misses.into_iter().zip(digest::read_files(&paths)) {
        parts[b].results[j] = Some(r);
    }

    // Buckets are encoded and written on all cores: a first build writes all of them.
    if cache_use == CacheUse::Update {
        let rewrite: Vec<&Part> = parts.iter().filter(|p| p.dirty).collect();
        crate::render::par_map(&rewrite, |part| {
            let mut w = Writer::header(&key);
            for (&k, result) in part.members.iter().zip(&part.results) {
                w.entry(&files[k].0, &files[k].1, result.as_ref().expect("every file is read or cached"));
            }
            let path = bucket_path(&folder, part.index);
            if let Err(e) = write_atomically(&path, &w.finish()) {
                tracing::debug!("cannot write the digest cache {}: {e}", path.display());
            }
        });
    }
    // Back into file-name order: digests are grouped by date and then name, which is then a
    // sorted list to check rather than to sort.
    let mut next: Vec<std::vec::IntoIter<Option<FileResult>>> = parts.into_iter().map(|p| p.results.into_iter()).collect();
    let ordered = bucket_of_file.iter().map(|&b| next[b as usize].next().flatten().expect("every file is read or cached"));
    let mut corpus = Corpus::from_results(files.len(), ordered);
    corpus.parsed = paths.len();
    Ok((corpus, Stamps(files)))
}

/// The stamp of every digest file as it was listed, by name.
#[derive(Debug, Default)]
pub struct Stamps(Vec<(String, Stamp)>);

impl Stamps {
    pub fn get(&self, name: &str) -> Option<&Stamp> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|k| &self.0[k].1)
    }
}

/// The `*.txt` files of `dir` (as `digest::files_with_extension` lists them), by name, each with its stamp.
fn list_stamped(dir: &Path) -> std::io::Result<Vec<(String, Stamp)>> {
    // The folder is listed on this thread while another stats what is listed so far; once the
    // listing is done this thread stats too. Most of the time is the kernel's, one call a file.
    const CHUNK: usize = 2048;
    fn stamp(chunk: Vec<(String, std::fs::DirEntry)>, out: &mut Vec<(String, Stamp)>) {
        for (name, e) in chunk {
            // A symbolic link is read through, as `Path::is_file` does.
            let meta = e.metadata().ok().and_then(|m| if m.file_type().is_symlink() { std::fs::metadata(e.path()).ok() } else { Some(m) });
            if let Some(meta) = meta.filter(|m| m.is_file()) {
                out.push((name, Stamp::of(&meta)));
            }
        }
    }
    let entries = std::fs::read_dir(dir)?;
    let (sender, receiver) = std::sync::mpsc::channel::<Vec<(String, std::fs::DirEntry)>>();
    let receiver = std::sync::Mutex::new(receiver);
    let next = || receiver.lock().expect("not poisoned").recv().ok();
    let mut files = std::thread::scope(|s| {
        let helper = s.spawn(|| {
            let mut out = Vec::new();
            while let Some(chunk) = next() {
                stamp(chunk, &mut out);
            }
            out
        });
        let mut chunk = Vec::with_capacity(CHUNK);
        for e in entries.filter_map(|e| e.ok()) {
            let Ok(name) = e.file_name().into_string() else { continue };
            if !name.starts_with('.') && name.ends_with(".txt") && name.len() > 4 {
                chunk.push((name, e));
                if chunk.len() == CHUNK {
                    let _ = sender.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            }
        }
        let _ = sender.send(chunk);
        drop(sender);
        let mut out = Vec::new();
        while let Some(chunk) = next() {
            stamp(chunk, &mut out);
        }
        out.extend(helper.join().expect("the stat helper panicked"));
        out
    });
    // Names are unique: an unstable sort gives the one order.
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn bucket_of(name: &str) -> usize {
    // FNV-1a: stable across Rust versions, unlike the standard library's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    (hash % BUCKETS as u64) as usize
}

fn bucket_path(folder: &Path, b: usize) -> PathBuf {
    folder.join(format!("{b:02x}.bin"))
}

/// One cache file of parsed digests, sorted by file name: the files are asked for in that order,
/// so each is found by walking forward instead of hashing 100,000 names.
struct Bucket {
    entries: VecDeque<(String, Stamp, FileResult)>,
    /// Some entry was too recent to trust by its stamp: the bucket is rewritten once it is re-read.
    untrusted: bool,
    /// Some entry's file was not asked for (it is gone): the bucket is rewritten without it.
    passed_over: bool,
}

impl Bucket {
    /// The bucket at `path`, for the digests in `dir`: `None` when it is missing, corrupt, or made
    /// for another key.
    fn load(path: &Path, key: &str, dir: &Path) -> Option<Bucket> {
        use std::io::Read as _;
        thread_local! {
            /// One buffer a thread for the bucket files it reads: fresh memory for each costs a
            /// page fault every 4 KiB.
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let written = written_at(&std::fs::metadata(path).ok()?);
        let decoded = BYTES.with_borrow_mut(|bytes| {
            bytes.clear();
            std::fs::File::open(path).and_then(|mut f| f.read_to_end(bytes)).ok()?;
            Reader::new(bytes).bucket(key, dir)
        });
        if decoded.is_none() {
            tracing::debug!("the digest cache {} is not usable: ignored", path.display());
        }
        let mut entries = decoded?;
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let count = entries.len();
        entries.retain(|(_, stamp, _)| stamp.settled_before(written));
        Some(Bucket { untrusted: entries.len() < count, entries: entries.into(), passed_over: false })
    }

    /// The result recorded for `name`, if it was made from the file as `stamp` describes it.
    /// Names are asked for in sorted order: the entries before `name` are of files that are gone.
    fn take(&mut self, name: &str, stamp: &Stamp) -> Option<FileResult> {
        while let Some((first, _, _)) = self.entries.front() {
            match first.as_str().cmp(name) {
                std::cmp::Ordering::Less => {
                    self.entries.pop_front();
                    self.passed_over = true;
                }
                std::cmp::Ordering::Equal => {
                    let (_, recorded, result) = self.entries.pop_front().expect("just seen");
                    return (recorded == *stamp).then_some(result);
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Whether the bucket holds anything but the files just read, each as recorded.
    fn needs_rewrite(&self) -> bool {
        self.untrusted || self.passed_over || !self.entries.is_empty()
    }
}

/// The digest cache's encoding: integers as LEB128 varints, strings as a length and UTF-8 bytes.
/// Hand-written because it is read on every build and must be much cheaper than parsing the
/// digests again, without a dependency.
struct Writer(Vec<u8>);

const MAGIC: &[u8; 8] = b"GZDIGEST";

impl Writer {
    fn header(key: &str) -> Writer {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(MAGIC);
        w.u64(FORMAT as u64);
        w.str(key);
        w
    }

    /// LEB128: seven bits a byte, low first. Most numbers here are lengths under 128: one byte.
    fn u64(&mut self, n: u64) {
        self.u128(n.into());
    }

    fn u128(&mut self, mut n: u128) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    /// Zigzag, so that a time before 1970 stays short too.
    fn i128(&mut self, n: i128) {
        self.u128(((n << 1) ^ (n >> 127)) as u128);
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn strings(&mut self, list: &[String]) {
        self.u64(list.len() as u64);
        list.iter().for_each(|s| self.str(s));
    }

    fn date(&mut self, d: Option<NaiveDate>) {
        // Days from the common era; 0 (no such date here) for none.
        self.u64(d.map_or(0, |d| d.num_days_from_ce() as i64 as u64));
    }

    fn entry(&mut self, name: &str, stamp: &Stamp, result: &FileResult) {
        self.str(name);
        self.u64(stamp.len);
        self.i128(stamp.mtime);
        self.i128(stamp.ctime);
        self.u64(stamp.inode);
        match result {
            Ok(d) => {
                // Only the light form (`Digest::light`): what every build needs of every digest.
                self.u64(0);
                self.str(&d.id);
                self.str(&d.title);
                self.date(Some(d.date));
                self.strings(&d.themes);
                self.u64(d.closest.len() as u64);
                d.closest.iter().for_each(|c| self.str(&c.reference));
            }
            Err(problems) => {
                self.u64(1);
                self.u64(problems.len() as u64);
                for p in problems {
                    self.u64(p.line as u64);
                    self.str(&p.message);
                    self.date(p.date);
                }
            }
        }
    }

    /// The bytes, ending with the end marker a reader checks for.
    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(MAGIC);
        self.0
    }
}


/// Reads what `Writer` wrote; `None` at the first thing out of place.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let part = &self.bytes[self.at..end];
        self.at = end;
        Some(part)
    }

    fn u64(&mut self) -> Option<u64> {
        u64::try_from(self.u128()?).ok()
    }

    fn u128(&mut self) -> Option<u128> {
        let mut n: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            n |= u128::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn i128(&mut self) -> Option<i128> {
        let n = self.u128()?;
        Some(((n >> 1) as i128) ^ -((n & 1) as i128))
    }

    /// A count of items each at least a byte long: bounded by what is left, so that a corrupt
    /// count cannot ask for a huge allocation.
    fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n <= self.bytes.len() - self.at).then_some(n)
    }

    fn str(&mut self) -> Option<String> {
        let n = usize::try_from(self.u64()?).ok()?;
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }

    fn strings(&mut self) -> Option<Vec<String>> {
        let n = self.count()?;
        (0..n).map(|_| self.str()).collect()
    }

    fn date(&mut self) -> Option<Option<NaiveDate>> {
        match self.u64()? {
            0 => Some(None),
            days => NaiveDate::from_num_days_from_ce_opt(i32::try_from(days as i64).ok()?).map(Some),
        }
    }

    /// A whole bucket made for `key`, its paths under `dir`: every entry, or `None`.
    fn bucket(mut self, key: &str, dir: &Path) -> Option<Vec<(String, Stamp, FileResult)>> {
        if self.take(MAGIC.len())? != MAGIC || self.u64()? != FORMAT as u64 || self.str()? != key {
            return None;
        }
        let mut entries = Vec::new();
        while self.bytes.len() - self.at > MAGIC.len() {
            entries.push(self.entry(dir)?);
        }
        (self.take(MAGIC.len())? == MAGIC).then_some(entries)
    }

    fn entry(&mut self, dir: &Path) -> Option<(String, Stamp, FileResult)> {
        let name = self.str()?;
        let stamp = Stamp { len: self.u64()?, mtime: self.i128()?, ctime: self.i128()?, inode: self.u64()? };
        let path = dir.join(&name);
        let result = match self.u64()? {
            0 => {
                let (id, title, date, themes) = (self.str()?, self.str()?, self.date()??, self.strings()?);
                let closest =
                    (0..self.count()?).map(|_| Some(Closest { title: String::new(), reference: self.str()?, target: None })).collect::<Option<Vec<_>>>()?;
                Ok(Digest {
                    id,
                    file_name: name.clone(),
                    path,
                    title,
                    date,
                    source_url: String::new(),
                    link: String::new(),
                    summary: String::new(),
                    keywords: Vec::new(),
                    themes,
                    signals: Signals::default(),
                    closest,
                    light: true,
                })
            }
            1 => {
                let problems = (0..self.count()?)
                    .map(|_| Some(ParseError { path: path.clone(), line: usize::try_from(self.u64()?).ok()?, message: self.str()?, date: self.date()? }))
                    .collect::<Option<Vec<_>>>()?;
                Err(problems)
            }
            _ => return None,
        };
        Some((name, stamp, result))
    }
}

// ---------------------------------------------------------------------------------------------
// Weeks

#[derive(Debug, Default, Serialize, Deserialize)]
struct WeeksFile {
    format: u32,
    key: String,
    /// By issue id: the fingerprint of the files and note the hash was computed from, and the hash.
    weeks: BTreeMap<String, (String, String)>,
}

/// Each issue's content hash (`Issue::content_hash`), recorded with the stamps of the digest files
/// and the note it was computed from: an issue whose digests are light (read from the digest
/// cache) has its hash from here while its files are as they were, so that no build reads every
/// digest again to compare what is published with the publication record.
pub struct WeekHashes {
    path: PathBuf,
    key: String,
    stamps: Stamps,
    old: BTreeMap<String, (String, String)>,
    written: i128,
    new: std::sync::Mutex<BTreeMap<String, (String, String)>>,
}

impl WeekHashes {
    /// The record in `cache_dir` for the digests of `dir`, as `stamps` lists them now.
    pub fn open(cache_dir: &Path, dir: &Path, stamps: Stamps) -> WeekHashes {
        let path = cache_dir.join("weeks.json");
        let key = digests_key(dir);
        let read = std::fs::metadata(&path).ok().and_then(|m| {
            let file: WeeksFile = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            (file.format == FORMAT && file.key == key).then(|| (file.weeks, written_at(&m)))
        });
        let (old, written) = read.unwrap_or_default();
        WeekHashes { path, key, stamps, old, written, new: Default::default() }
    }

    /// What `issue`'s hash is computed from: each file's name and stamp, and the note; and
    /// whether every file had settled before the record was written. `None` when a file was not
    /// listed.
    fn fingerprint(&self, issue: &crate::issue::Issue) -> Option<(String, bool)> {
        let mut f = Fingerprint::default();
        let mut settled = true;
        for d in issue.digests() {
            let s = self.stamps.get(&d.file_name)?;
            settled &= s.settled_before(self.written);
            f.text(&d.file_name);
            f.bytes(&s.len.to_le_bytes()).bytes(&s.mtime.to_le_bytes()).bytes(&s.ctime.to_le_bytes()).bytes(&s.inode.to_le_bytes());
        }
        match &issue.note {
            Some(note) => f.text("note").text(note),
            None => f.text("no note"),
        };
        Some((f.finish(), settled))
    }

    /// `issue`'s content hash as recorded, when its files (each settled before the record was
    /// written) and its note are as they were.
    pub fn get(&self, issue: &crate::issue::Issue) -> Option<String> {
        let (fingerprint, hash) = self.old.get(&issue.id)?;
        let (now, settled) = self.fingerprint(issue)?;
        (settled && now == *fingerprint).then(|| hash.clone())
    }

    /// Records `hash` as `issue`'s content hash, read from its files as they are listed.
    pub fn record(&self, issue: &crate::issue::Issue, hash: &str) {
        if let Some((fingerprint, _)) = self.fingerprint(issue) {
            self.new.lock().expect("not poisoned").insert(issue.id.clone(), (fingerprint, hash.to_string()));
        }
    }

    /// Writes the record: the hashes recorded, and those of `ids` as they were (issues whose hash
    /// was still current). Failing to is only logged.
    pub fn save<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let new = self.new.lock().expect("not poisoned");
        let recorded = !new.is_empty();
        let mut weeks = new.clone();
        drop(new);
        for id in ids {
            if let Some(old) = self.old.get(id) {
                weeks.entry(id.to_string()).or_insert_with(|| old.clone());
            }
        }
        // Rewritten whenever a hash was recorded, even one as it was: the file's time is what says
        // that the stamps in it had settled.
        if !recorded && weeks == self.old {
            return;
        }
        let file = WeeksFile { format: FORMAT, key: self.key.clone(), weeks };
        let bytes = serde_json::to_vec(&file).expect("the record serializes");
        if let Err(e) = write_atomically(&self.path, &bytes) {
            tracing::debug!("cannot write the week record {}: {e}", self.path.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

/// What was recorded of one issue's page: the fingerprint of everything it was rendered from, and
/// the file as it was written (its stamp and the hash of its bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageEntry {
    fingerprint: String,
    stamp: Stamp,
    hash: String,
    /// The size of the issue's email HTML (or why it failed), when it was checked.
    email: Option<Result<usize, String>>,
    /// The hash of the issue's feed content kept in `feeds/<id>.html`, when it was kept.
    content: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SiteFile {
    format: u32,
    key: String,
    pages: BTreeMap<String, PageEntry>,
}

/// The record of one site (the published archive or the drafts): for each issue page, what it was
/// rendered from and what was written, so that a page whose inputs and file are unchanged is not
/// rendered again; and the email checks and feed contents that go with it.
pub struct SiteCache {
    dir: PathBuf,
    key: String,
    old: BTreeMap<String, PageEntry>,
    /// The record file's modification time: pages changed after it are checked by their bytes.
    written: i128,
    new: BTreeMap<String, PageEntry>,
}

impl SiteCache {
    /// The record kept in `cache_dir` for the site named `site`. `inputs` fingerprints everything
    /// every page depends on (configuration, templates); a record made for other inputs is empty.
    pub fn open(cache_dir: &Path, site: &str, inputs: &str) -> SiteCache {
        let dir = cache_dir.join(site);
        let key = Fingerprint::of(&[&binary_identity(), inputs]);
        let path = dir.join("pages.json");
        let read = std::fs::metadata(&path).ok().and_then(|m| {
            let file: SiteFile = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            Some((file, written_at(&m)))
        });
        let (old, written) = match read {
            Some((file, written)) if file.format == FORMAT && file.key == key => (file.pages, written),
            Some(_) => {
                tracing::debug!("the page record {} is for other templates, configuration or Gazette: every page is rendered", path.display());
                Default::default()
            }
            None => Default::default(),
        };
        SiteCache { dir, key, old, written, new: BTreeMap::new() }
    }

    /// Whether the page of issue `id` at `file` is the one `fingerprint` renders: recorded so, and
    /// the file unchanged since (by its stamp, or else by its bytes). Keeps the entry if so.
    pub fn page_is_current(&mut self, id: &str, fingerprint: &str, file: &Path) -> bool {
        let Some(entry) = self.old.get(id).filter(|e| e.fingerprint == fingerprint) else { return false };
        let Some(stamp) = Stamp::of_path(file) else { return false };
        let current = (stamp == entry.stamp && stamp.settled_before(self.written))
            || std::fs::read(file).is_ok_and(|bytes| fingerprint::of_bytes(&bytes) == entry.hash);
        if current {
            let mut entry = entry.clone();
            entry.stamp = stamp;
            self.new.insert(id.to_string(), entry);
        }
        current
    }

    /// Records the page of issue `id`, rendered from `fingerprint`, as `file` now holds `contents`.
    pub fn page_written(&mut self, id: &str, fingerprint: &str, file: &Path, contents: &str) {
        let Some(stamp) = Stamp::of_path(file) else { return };
        let email = self.old.get(id).filter(|e| e.fingerprint == fingerprint).and_then(|e| e.email.clone());
        let content = self.old.get(id).filter(|e| e.fingerprint == fingerprint).and_then(|e| e.content.clone());
        let entry = PageEntry { fingerprint: fingerprint.to_string(), stamp, hash: fingerprint::of_bytes(contents.as_bytes()), email, content };
        self.new.insert(id.to_string(), entry);
    }

    /// Keeps the record of the pages this build did not look at (it wrote one week's).
    pub fn keep_unvisited(&mut self) {
        for (id, entry) in &self.old {
            self.new.entry(id.clone()).or_insert_with(|| entry.clone());
        }
    }

    /// The email check recorded for issue `id` when it was rendered from `fingerprint`.
    pub fn email_check(&self, id: &str, fingerprint: &str) -> Option<Result<usize, String>> {
        self.old.get(id).filter(|e| e.fingerprint == fingerprint).and_then(|e| e.email.clone())
    }

    /// Records the email check of issue `id` (its page recorded already).
    pub fn set_email_check(&mut self, id: &str, check: Result<usize, String>) {
        if let Some(entry) = self.new.get_mut(id) {
            entry.email = Some(check);
        }
    }

    fn content_path(&self, id: &str) -> PathBuf {
        self.dir.join("feeds").join(format!("{id}.html"))
    }

    /// The feed content kept for issue `id` when it was rendered from `fingerprint`, if its file
    /// still holds what was kept.
    pub fn feed_content(&self, id: &str, fingerprint: &str) -> Option<String> {
        let hash = self.old.get(id).filter(|e| e.fingerprint == fingerprint)?.content.as_ref()?;
        let text = std::fs::read_to_string(self.content_path(id)).ok()?;
        (fingerprint::of_bytes(text.as_bytes()) == *hash).then_some(text)
    }

    /// Keeps `content` as issue `id`'s feed content (its page recorded already).
    pub fn set_feed_content(&mut self, id: &str, content: &str) {
        let path = self.content_path(id);
        let Some(entry) = self.new.get_mut(id) else { return };
        match write_atomically(&path, content.as_bytes()) {
            Ok(()) => entry.content = Some(fingerprint::of_bytes(content.as_bytes())),
            Err(e) => tracing::debug!("cannot keep the feed content {}: {e}", path.display()),
        }
    }

    /// Writes the record of this build (what was not recorded again is forgotten), and removes the
    /// feed contents no page refers to any more. Failing to is only logged: the next build renders more.
    pub fn save(self) {
        let feeds = self.dir.join("feeds");
        if let Ok(entries) = std::fs::read_dir(&feeds) {
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".html").unwrap_or(&name);
                if self.new.get(id).is_none_or(|p| p.content.is_none()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let file = SiteFile { format: FORMAT, key: self.key, pages: self.new };
        let path = self.dir.join("pages.json");
        let bytes = serde_json::to_vec(&file).expect("the record serializes");
        if let Err(e) = write_atomically(&path, &bytes) {
            tracing::debug!("cannot write the page record {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_text(title: &str) -> String {
        format!(
            "# __{title}__, from ([20230718](https://example.org/c).)\n\n__[External link](https://example.org/a)__\n\n## Summary\n\nSome *news*.\n\n## Keywords\n\n* one\n* two\n\n## Themes\n\n* a theme\n\n## Signals\n\n| Signal | Change |\n|:--|:--|\n| x \\| y | z |\n\n## Closest\n\n* [Other](00ff)\n"
        )
    }

    /// Sets a file's modification time into the past, as if it had been written long before the cache.
    fn age(path: &Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(60)).unwrap();
    }

    /// `count` digest files in `dir` (created), modified long ago, in name order.
    fn old_digests(dir: &Path, count: usize) -> Vec<PathBuf> {
        std::fs::create_dir_all(dir).unwrap();
        let files: Vec<PathBuf> = (0..count).map(|k| dir.join(format!("{k:03}_{k:02x}aa.txt"))).collect();
        for (k, f) in files.iter().enumerate() {
            std::fs::write(f, digest_text(&format!("T{k}"))).unwrap();
            age(f);
        }
        files
    }

    #[test]
    fn the_encoding_gives_back_what_the_parser_gave() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("001_aa.txt");
        std::fs::write(&good, digest_text("Good")).unwrap();
        let bad = dir.path().join("002_bb.txt");
        std::fs::write(&bad, "# __Bad__, from ([20231399](https://example.org/c).)\n").unwrap();
        let parsed = digest::read_files(&[good.clone(), bad.clone()]);
        assert!(parsed[0].is_ok() && parsed[1].is_err());
        let stamp = Stamp::of(&std::fs::metadata(&good).unwrap());
        let mut w = Writer::header("k");
        w.entry("001_aa.txt", &stamp, &parsed[0]);
        w.entry("002_bb.txt", &stamp, &parsed[1]);
        let bytes = w.finish();
        let back = Reader::new(&bytes).bucket("k", dir.path()).unwrap();
        // The digest in its light form (`Digest::lightened`); problems whole.
        let light = parsed[0].as_ref().unwrap().lightened();
        assert!(light.summary.is_empty() && light.closest.iter().all(|c| c.title.is_empty() && !c.reference.is_empty()));
        assert_eq!(back.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), vec![Ok(light), parsed[1].clone()]);
        assert_eq!(back[0].1, stamp);
        // Another key, a cut-off file, or a byte changed in a length: not used at all.
        assert!(Reader::new(&bytes).bucket("other", dir.path()).is_none());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Reader::new(&bytes[..cut]).bucket("k", dir.path()).is_none(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[MAGIC.len() + 1 + 2] ^= 0x40; // the first entry's name length (after the format and the key "k")
        assert!(Reader::new(&flipped).bucket("k", dir.path()).is_none());
    }

    #[test]
    fn numbers_round_trip_and_a_cut_number_is_refused() {
        let values: [i128; 5] = [0, -1, 1_700_000_000_123_456_789, -86_400_000_000_000, i128::MAX];
        let mut w = Writer(Vec::new());
        values.iter().for_each(|&v| w.i128(v));
        w.u64(u64::MAX);
        w.u64(5);
        let mut r = Reader::new(&w.0);
        for v in values {
            assert_eq!(r.i128(), Some(v));
        }
        assert_eq!((r.u64(), r.u64()), (Some(u64::MAX), Some(5)));
        assert_eq!(r.at, w.0.len());
        assert_eq!(Reader::new(&[0x80]).u64(), None);
    }

    #[test]
    fn an_edit_of_the_same_size_is_read_again_and_a_fresh_cache_entry_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        std::fs::create_dir(&digests).unwrap();
        let file = digests.join("001_aa.txt");
        std::fs::write(&file, digest_text("Before")).unwrap();
        age(&file);
        let title = |c: &Corpus| c.digests[0].title.clone();
        assert_eq!(title(&read_digests(&digests, &cache, CacheUse::Update).unwrap().0), "Before");
        assert_eq!(title(&read_digests(&digests, &cache, CacheUse::Update).unwrap().0), "Before", "from the cache");

        // Same size, and the same (old) modification time: the change time still moves.
        std::fs::write(&file, digest_text("Change")).unwrap();
        age(&file);
        assert_eq!(title(&read_digests(&digests, &cache, CacheUse::Update).unwrap().0), "Change");

        // A file changed just now, as the cache was written: read again, even with its stamp unchanged.
        std::fs::write(&file, digest_text("Recent")).unwrap();
        assert_eq!(title(&read_digests(&digests, &cache, CacheUse::Update).unwrap().0), "Recent");
        let key = digests_key(&digests);
        let bucket = Bucket::load(&bucket_path(&cache.join("digests"), bucket_of("001_aa.txt")), &key, &digests).unwrap();
        assert!(bucket.entries.is_empty() && bucket.untrusted, "a fresh entry is kept but not trusted");
    }

    #[test]
    fn files_gone_are_dropped_from_their_bucket_and_the_others_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        // Enough files that several share a bucket.
        let files = old_digests(&digests, 200);
        // The change times are now: only files older than the settling margin are trusted.
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let fresh = read_digests(&digests, &cache, CacheUse::Update).unwrap().0;
        files.iter().step_by(3).for_each(|f| std::fs::remove_file(f).unwrap());
        let after = read_digests(&digests, &cache, CacheUse::Update).unwrap().0;
        assert_eq!(after.parsed, 0, "every file left is found in the cache");
        let kept: Vec<Digest> = fresh.digests.into_iter().enumerate().filter(|(k, _)| k % 3 != 0).map(|(_, d)| d.lightened()).collect();
        assert_eq!(after.digests, kept);
        let key = digests_key(&digests);
        let entries: usize = (0..BUCKETS).filter_map(|b| Bucket::load(&bucket_path(&cache.join("digests"), b), &key, &digests)).map(|b| b.entries.len()).sum();
        assert_eq!(entries, kept.len(), "the buckets were rewritten without the files that are gone");
    }

    /// The week of the digests in `dir` (all of one week), as a project loads it, with the stamps.
    fn week(dir: &Path, cache: &Path, note: Option<&str>) -> (crate::issue::Issue, Stamps) {
        let (corpus, stamps) = read_digests(dir, cache, CacheUse::Update).unwrap();
        let rule = crate::issue::WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC };
        let mut weeks = crate::issue::group_by_week(corpus.digests, &rule);
        assert_eq!(weeks.len(), 1);
        weeks[0].note = note.map(str::to_string);
        (weeks.pop().unwrap(), stamps)
    }

    #[test]
    fn a_week_hash_is_used_only_while_its_files_and_note_are_as_recorded_and_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        let files = old_digests(&digests, 3);
        // Their change times are now: only files older than the settling margin are trusted.
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let (whole, stamps) = week(&digests, &cache, None);
        assert!(!whole.is_light(), "read from the files the first time");
        let hash = whole.content_hash();
        let weeks = WeekHashes::open(&cache, &digests, stamps);
        assert_eq!(weeks.get(&whole), None, "nothing recorded yet");
        weeks.record(&whole, &hash);
        weeks.save(std::iter::empty());
        // The record was written after the files settled: trusted.
        let (light, stamps) = week(&digests, &cache, None);
        assert!(light.is_light(), "read from the digest cache");
        let weeks = WeekHashes::open(&cache, &digests, stamps);
        assert_eq!(weeks.get(&light), Some(hash.clone()));
        // The same files with a note: another hash.
        let (noted, stamps) = week(&digests, &cache, Some("A word first."));
        assert_eq!(WeekHashes::open(&cache, &digests, stamps).get(&noted), None);

        // One file rewritten with the same bytes: its stamp moved, so the hash is not trusted.
        std::fs::write(&files[1], std::fs::read(&files[1]).unwrap()).unwrap();
        age(&files[1]);
        let (after, stamps) = week(&digests, &cache, None);
        let weeks = WeekHashes::open(&cache, &digests, stamps);
        assert_eq!(weeks.get(&after), None);
        // Recorded again now, while the rewritten file is recent (its change time is now): not
        // trusted by the next run until the file has settled before a later record.
        weeks.record(&after, &hash);
        weeks.save(std::iter::empty());
        let (next, stamps) = week(&digests, &cache, None);
        assert_eq!(WeekHashes::open(&cache, &digests, stamps).get(&next), None, "the file changed too recently to be trusted by its stamp");
    }

    #[test]
    fn a_corrupt_or_missing_cache_reads_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        old_digests(&digests, 20);
        std::fs::write(digests.join("020_bad.txt"), "nothing").unwrap();
        let fresh = read_digests(&digests, &cache, CacheUse::Update).unwrap().0;
        for e in std::fs::read_dir(cache.join("digests")).unwrap() {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
        let again = read_digests(&digests, &cache, CacheUse::Update).unwrap().0;
        assert_eq!((again.digests, again.problems), (fresh.digests.clone(), fresh.problems.clone()));
        std::fs::remove_dir_all(&cache).unwrap();
        let third = read_digests(&digests, &cache, CacheUse::Update).unwrap().0;
        assert_eq!((third.digests, third.problems), (fresh.digests, fresh.problems));
    }
}
