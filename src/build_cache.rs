//! The build cache in `[paths] cache`: what the last run read and wrote, so that the next one reads
//! only the digest files that changed (`read_digests`) and renders only the issue pages whose inputs
//! changed (`SiteCache`). It never decides what the output says: an entry is used only when what it
//! was made from is unchanged, and a cache that is missing, unreadable, corrupt or written by another
//! Gazette binary is ignored and rewritten. Deleting the folder is always safe.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Datelike as _, NaiveDate};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::{self, CatalogEntry, Digest, FileResult, Listed, ParseError};
use crate::fingerprint::{self, Fingerprint};
use crate::issue::WeekRule;
use crate::issue_id::IssueId;

/// Bumped whenever what is stored changes shape or meaning.
const FORMAT: u32 = 4;

/// A file whose times are this close to (or after) the moment its cache entry was written may have
/// changed again within the same tick of the file system's clock (FAT keeps 2 s): it is not trusted
/// by its times alone. Git's "racily clean" entries, with a margin for coarse clocks.
const SETTLE: Duration = if cfg!(test) { Duration::from_millis(300) } else { Duration::from_secs(2) };

/// The digest cache is split into this many files, each holding whole weeks (`bucket_of_week`),
/// so that one edited digest rewrites a small part of it.
const BUCKETS: usize = 64;

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

/// The digests of one week, as `read_digests` gives them: its days that have digests, oldest
/// first, each with its digests in file-name order.
#[derive(Debug)]
pub struct WeekDigests {
    pub start: NaiveDate,
    pub days: Vec<(NaiveDate, Vec<CatalogEntry>)>,
}

/// What `read_digests` gives: every digest's catalog entry, grouped by week (oldest first), every
/// problem, and the digests parsed whole by this read.
#[derive(Debug, Default)]
pub struct Digests {
    pub weeks: Vec<WeekDigests>,
    /// The digests of the files read and parsed (the others' entries came from the cache), whole,
    /// in no particular order; a duplicate id left out of `weeks` may be among them.
    pub parsed_whole: Vec<Digest>,
    pub problems: Vec<ParseError>,
    /// How many digests there are in `weeks`.
    pub count: usize,
    /// How many files were read and parsed; the others' results came from the cache.
    pub parsed: usize,
}

impl Digests {
    /// Every digest's entry, week by week, day by day, file by file.
    pub fn iter(&self) -> impl Iterator<Item = &CatalogEntry> + Clone {
        self.weeks.iter().flat_map(|w| w.days.iter().flat_map(|(_, day)| day.iter()))
    }
}

/// Reads `[paths] digests` as `digest::read_folder` does, grouped into the weeks of `rule`,
/// parsing only the files whose stamp is not the one recorded in `cache_dir` with their catalog
/// entry (or problems), and records those there. Every digest has its entry; a parsed one is also
/// given whole (`Digests::parsed_whole`). The cache is best effort: when it cannot be read or
/// written, every file is simply parsed. With `CacheUse::Read` nothing is written. Also gives
/// every file's stamp, for `WeekHashes`.
///
/// The cache keeps each week's files together, in the order the week shows them, so that a
/// build decodes them straight into their days: with 100,000 digests, sorting and grouping them
/// again cost as much as decoding them.
pub fn read_digests(
    dir: &Path,
    cache_dir: &Path,
    rule: &WeekRule,
    cache_use: CacheUse,
) -> std::io::Result<(Digests, Stamps)> {
    let key = cache_key(dir, rule);
    let folder = cache_dir.join("digests");
    let files = Stamps::of(list_stamped(dir)?);
    let buckets: Vec<usize> = (0..BUCKETS).collect();
    let mut loaded: Vec<Loaded> =
        buckets.par_iter().map(|&b| Loaded::read(&bucket_path(&folder, b), &key, dir, &files)).collect();

    // Which listed files the cache has as they are now. A file found twice means a cache that
    // contradicts itself: none of it is used.
    let mut found = vec![false; files.len()];
    let mut consistent = true;
    for &k in loaded.iter().flat_map(|l| l.found.iter()) {
        consistent &= !std::mem::replace(&mut found[k], true);
    }
    if !consistent {
        tracing::debug!("the digest cache in {} lists a file twice: ignored", folder.display());
        found.fill(false);
        loaded.iter_mut().for_each(|l| *l = Loaded::unusable());
    }

    // The other files are read and parsed, each into its week's bucket and group.
    let misses: Vec<&str> = (0..files.len()).filter(|&k| !found[k]).map(|k| files.names[k].as_str()).collect();
    let paths: Vec<PathBuf> = misses.iter().map(|name| dir.join(name)).collect();
    let mut ids: Vec<u64> = Vec::new();
    let mut parsed_whole = Vec::new();
    for (&name, result) in misses.iter().zip(digest::read_files(&paths)) {
        if let Ok(d) = &result {
            ids.push(name_hash(&d.id));
        }
        let week = week_of(&result, rule);
        let result = result.map(|d| {
            let entry = CatalogEntry::of(&d);
            parsed_whole.push(d);
            entry
        });
        let bucket = &mut loaded[bucket_of_week(week)];
        bucket.dirty = true;
        let at = match bucket.groups.binary_search_by(|g| g.week.cmp(&week)) {
            Ok(at) => at,
            Err(at) => {
                bucket.groups.insert(at, Group { week, ..Group::default() });
                at
            }
        };
        bucket.groups[at].add(result.map_err(|problems| (name.to_string(), problems)));
    }
    // Parsed digests went to the end of their day (and a cache could be out of order).
    loaded.iter_mut().flat_map(|l| l.groups.iter_mut()).for_each(Group::sort_days);

    // Buckets are encoded and written on all cores: a first build writes all of them.
    if cache_use == CacheUse::Update {
        let rewrite: Vec<(usize, &Loaded)> = loaded.iter().enumerate().filter(|(_, l)| l.dirty).collect();
        rewrite.par_iter().for_each(|&(b, bucket)| {
            let path = bucket_path(&folder, b);
            if let Err(e) = write_atomically(&path, &bucket.encode(&key, &files)) {
                tracing::debug!("cannot write the digest cache {}: {e}", path.display());
            }
        });
    }

    // Ids used twice are looked for by their hashes first, taken as each digest was decoded: a
    // map of 100,000 ids all over the heap took 30 ms and more of every build.
    ids.extend(loaded.iter().flat_map(|l| l.ids.iter().copied()));
    ids.sort_unstable();
    let same_hash = ids.windows(2).any(|pair| pair[0] == pair[1]);
    let mut groups: Vec<Group> = loaded.into_iter().flat_map(|l| l.groups).collect();
    groups.sort_by_key(|g| g.week);
    let mut digests = Digests { parsed: paths.len(), parsed_whole, ..Digests::default() };
    for g in groups {
        digests.problems.extend(g.broken.into_iter().flat_map(|(_, problems)| problems));
        match g.week {
            Some(start) if !g.days.is_empty() => digests.weeks.push(WeekDigests { start, days: g.days }),
            _ => {}
        }
    }
    digests.count = ids.len();
    if same_hash {
        digests.remove_duplicate_ids();
    }
    Ok((digests, files))
}

impl Digests {
    /// Two files with the same id would make closest links ambiguous: the first by file name is
    /// kept, each other one is reported and left out.
    fn remove_duplicate_ids(&mut self) {
        let Some((keep, mut problems)) = digest::duplicate_ids(self.iter(), self.count) else { return };
        let mut keep = keep.into_iter();
        for week in &mut self.weeks {
            for (_, day) in &mut week.days {
                day.retain(|_| keep.next().expect("one flag a digest"));
            }
            week.days.retain(|(_, day)| !day.is_empty());
        }
        self.weeks.retain(|w| !w.days.is_empty());
        self.count -= problems.len();
        self.problems.append(&mut problems);
    }
}

/// What the digest cache of `dir` is made for: this binary, that folder, and weeks by `rule`.
fn cache_key(dir: &Path, rule: &WeekRule) -> String {
    Fingerprint::of(&[&digests_key(dir), &format!("weeks from {}", rule.starts)])
}

/// The week a file's result belongs to: its digest's, or its problems' (`None` when its date
/// could not be read).
fn week_of(result: &FileResult, rule: &WeekRule) -> Option<NaiveDate> {
    match result {
        Ok(d) => Some(rule.week_start(d.date)),
        Err(problems) => problems.iter().find_map(|p| p.date).map(|d| rule.week_start(d)),
    }
}

/// Consecutive weeks go to consecutive buckets, and one edit rewrites one bucket.
fn bucket_of_week(week: Option<NaiveDate>) -> usize {
    week.map_or(0, |w| (w.num_days_from_ce().max(0) as usize / 7) % BUCKETS)
}

/// What one file gives, as the cache keeps it: its catalog entry, or its name and problems.
type Cached = Result<CatalogEntry, (String, Vec<ParseError>)>;

/// The cached files of one week, or of no week (files whose date could not be read).
#[derive(Debug, Default)]
struct Group {
    week: Option<NaiveDate>,
    /// Days with digests, by date; each day's digests by file name.
    days: Vec<(NaiveDate, Vec<CatalogEntry>)>,
    /// The files that could not be read, each with its problems.
    broken: Vec<(String, Vec<ParseError>)>,
}

impl Group {
    /// Adds a file's digest to the end of its day (`sort_days` puts it in place), or its name and
    /// problems.
    fn add(&mut self, result: Cached) {
        match result {
            Ok(d) => match self.days.last_mut() {
                Some((date, day)) if *date == d.date => day.push(d),
                Some((date, _)) if *date > d.date => match self.days.binary_search_by(|(date, _)| date.cmp(&d.date)) {
                    Ok(at) => self.days[at].1.push(d),
                    Err(at) => self.days.insert(at, (d.date, vec![d])),
                },
                _ => self.days.push((d.date, vec![d])),
            },
            Err(broken) => self.broken.push(broken),
        }
    }

    /// Each day's digests by file name.
    fn sort_days(&mut self) {
        for (_, day) in &mut self.days {
            if !day.is_sorted_by(|a, b| a.file_name <= b.file_name) {
                day.sort_by(|a, b| a.file_name.cmp(&b.file_name));
            }
        }
    }
}

/// One bucket of the digest cache as read: the groups of its weeks, holding only the files that
/// are listed with the stamp recorded, and which of the listed files those are.
struct Loaded {
    groups: Vec<Group>,
    /// Indices into the listing.
    found: Vec<usize>,
    /// `name_hash` of each digest's id.
    ids: Vec<u64>,
    /// The bucket is not as it should be written now: an entry was left out (its file changed, or
    /// is gone, or was too recent to trust), or a file was added, or it could not be read.
    dirty: bool,
}

impl Loaded {
    fn unusable() -> Loaded {
        Loaded { groups: Vec::new(), found: Vec::new(), ids: Vec::new(), dirty: true }
    }

    /// The bucket at `path`, for the digests in `dir` listed as `files`: unusable when it is
    /// missing, corrupt, or made for another key.
    fn read(path: &Path, key: &str, dir: &Path, files: &Stamps) -> Loaded {
        use std::io::Read as _;
        thread_local! {
            /// One buffer a thread for the bucket files it reads: fresh memory for each costs a
            /// page fault every 4 KiB.
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let Some(written) = std::fs::metadata(path).ok().map(|m| written_at(&m)) else { return Loaded::unusable() };
        let decoded = BYTES.with_borrow_mut(|bytes| {
            bytes.clear();
            std::fs::File::open(path).and_then(|mut f| f.read_to_end(bytes)).ok()?;
            Reader::new(bytes).bucket(key, dir, files, written)
        });
        decoded.unwrap_or_else(|| {
            tracing::debug!("the digest cache {} is not usable: ignored", path.display());
            Loaded::unusable()
        })
    }

    /// The bytes of this bucket's cache file. Each file's stamp is the one it was listed with.
    fn encode(&self, key: &str, files: &Stamps) -> Vec<u8> {
        let stamp = |name: &str| files.get(name);
        let mut w = Writer::header(key);
        // A group: its week, its days (each a date, a count and its digests), then its broken files.
        for g in &self.groups {
            w.date(g.week);
            w.u64(g.days.len() as u64);
            for (date, day) in &g.days {
                let entries: Vec<(&CatalogEntry, Stamp)> =
                    day.iter().filter_map(|d| Some((d, stamp(&d.file_name)?))).collect();
                w.date(Some(*date));
                w.u64(entries.len() as u64);
                for (d, stamp) in entries {
                    w.entry(&d.file_name, &stamp, Ok(d));
                }
            }
            let broken: Vec<(&str, Stamp, &Vec<ParseError>)> =
                g.broken.iter().filter_map(|(name, problems)| Some((name.as_str(), stamp(name)?, problems))).collect();
            w.u64(broken.len() as u64);
            for (name, stamp, problems) in broken {
                w.entry(name, &stamp, Err(problems));
            }
        }
        w.finish()
    }
}

/// The stamp of every digest file as it was listed, by name.
#[derive(Debug, Default)]
pub struct Stamps {
    /// Each file's place in `names` and its stamp, by `name_hash` of its name (`None` for a hash
    /// two names share: those files are never found). The cache's entries come in week order, and
    /// looking each up by its name, all over the heap, took several cache misses an entry.
    ///
    /// Names are not compared: a cache entry is used when its name's 64-bit hash and its stamp
    /// (which holds the inode and the change time, moved by every rename and link) are those of a
    /// listed file, which two different files do not share.
    index: foldhash::HashMap<u64, Option<(usize, Stamp)>>,
    names: Vec<String>,
}

impl Stamps {
    fn of(files: Vec<(String, Stamp, u64)>) -> Stamps {
        let mut index = foldhash::HashMap::with_capacity_and_hasher(files.len(), Default::default());
        let mut names = Vec::with_capacity(files.len());
        for (name, stamp, hash) in files {
            index.entry(hash).and_modify(|at| *at = None).or_insert(Some((names.len(), stamp)));
            names.push(name);
        }
        Stamps { index, names }
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// The place and stamp of the file `name`.
    fn find(&self, name: &str) -> Option<(usize, Stamp)> {
        *self.index.get(&name_hash(name))?
    }

    pub fn get(&self, name: &str) -> Option<Stamp> {
        self.find(name).map(|(_, stamp)| stamp)
    }
}

/// FNV-1a, the same in every build.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The digest files of `dir` (as `digest::read_folder` reads them), each with its
/// stamp, in the folder's order.
fn list_stamped(dir: &Path) -> std::io::Result<Vec<(String, Stamp, u64)>> {
    // Most of the time is the kernel's, one call a file: the listed files are stat'ed on all cores.
    let listed: Vec<(String, std::fs::DirEntry)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (!name.starts_with('.') && digest::is_digest_name(&name)).then_some((name, e))
        })
        .collect();
    Ok(listed
        .into_par_iter()
        .filter_map(|(name, e)| {
            // A symbolic link is read through, as `Path::is_file` does.
            let meta = e
                .metadata()
                .ok()
                .and_then(|m| if m.file_type().is_symlink() { std::fs::metadata(e.path()).ok() } else { Some(m) })
                .filter(|m| m.is_file())?;
            let hash = name_hash(&name);
            Some((name, Stamp::of(&meta), hash))
        })
        .collect())
}

fn bucket_path(folder: &Path, b: usize) -> PathBuf {
    folder.join(format!("{b:02x}.bin"))
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

    fn entry(&mut self, name: &str, stamp: &Stamp, result: Result<&CatalogEntry, &Vec<ParseError>>) {
        self.str(name);
        self.u64(stamp.len);
        self.i128(stamp.mtime);
        self.i128(stamp.ctime);
        self.u64(stamp.inode);
        match result {
            Ok(d) => {
                // The catalog entry: what every build needs of every digest.
                self.u64(0);
                self.str(&d.id);
                self.str(&d.title);
                self.date(Some(d.date));
                self.strings(&d.themes);
                self.strings(&d.references);
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

    /// `count` items read by `item`, into a vector of that size (collecting `Option`s gives no
    /// size, and each growth is one more allocation and copy, for each of 100,000 digests).
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = self.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(item(self)?);
        }
        Some(list)
    }

    fn strings(&mut self) -> Option<Vec<String>> {
        self.list(Self::str)
    }

    fn date(&mut self) -> Option<Option<NaiveDate>> {
        match self.u64()? {
            0 => Some(None),
            days => NaiveDate::from_num_days_from_ce_opt(i32::try_from(days as i64).ok()?).map(Some),
        }
    }

    /// A whole bucket made for `key`, its paths under `dir`, written at `written`, keeping only
    /// the entries of files listed in `files` with the stamp recorded; `None` at the first thing
    /// out of place.
    fn bucket(mut self, key: &str, dir: &Path, files: &Stamps, written: i128) -> Option<Loaded> {
        if self.take(MAGIC.len())? != MAGIC || self.u64()? != FORMAT as u64 || self.str()? != key {
            return None;
        }
        let mut loaded = Loaded { groups: Vec::new(), found: Vec::new(), ids: Vec::new(), dirty: false };
        // Only a file listed with the stamp recorded, which had settled before the cache was
        // written, is trusted by its stamp; the others are left out, to be read again.
        let trusted = |name: &str, stamp: Stamp| -> Option<usize> {
            files.find(name).filter(|&(_, listed)| listed == stamp && stamp.settled_before(written)).map(|(k, _)| k)
        };
        while self.bytes.len() - self.at > MAGIC.len() {
            let mut group = Group { week: self.date()?, ..Group::default() };
            let days = self.count()?;
            group.days.reserve_exact(days);
            for _ in 0..days {
                let date = self.date()??;
                // Days come in date order, as `Group::add` keeps them.
                if group.days.last().is_some_and(|(last, _)| *last >= date) {
                    return None;
                }
                let count = self.count()?;
                let mut day = Vec::with_capacity(count);
                for _ in 0..count {
                    let (stamp, Ok(d)) = self.entry(dir)? else { return None };
                    if d.date != date {
                        return None;
                    }
                    match trusted(&d.file_name, stamp) {
                        Some(k) => {
                            loaded.found.push(k);
                            loaded.ids.push(name_hash(&d.id));
                            day.push(d);
                        }
                        None => loaded.dirty = true,
                    }
                }
                if !day.is_empty() {
                    group.days.push((date, day));
                }
            }
            for _ in 0..self.count()? {
                let (stamp, Err(broken)) = self.entry(dir)? else { return None };
                match trusted(&broken.0, stamp) {
                    Some(k) => {
                        loaded.found.push(k);
                        group.broken.push(broken);
                    }
                    None => loaded.dirty = true,
                }
            }
            loaded.groups.push(group);
        }
        (self.take(MAGIC.len())? == MAGIC).then_some(loaded)
    }

    /// One file's stamp and catalog entry, or its name and problems.
    fn entry(&mut self, dir: &Path) -> Option<(Stamp, Cached)> {
        let name = self.str()?;
        let stamp = Stamp { len: self.u64()?, mtime: self.i128()?, ctime: self.i128()?, inode: self.u64()? };
        let path = dir.join(&name);
        let result = match self.u64()? {
            0 => {
                let (id, title, date, themes) = (self.str()?, self.str()?, self.date()??, self.strings()?);
                let references = self.strings()?;
                Ok(CatalogEntry { id, file_name: name, path, title, date, themes, references })
            }
            1 => {
                let problems = (0..self.count()?)
                    .map(|_| {
                        Some(ParseError {
                            path: path.clone(),
                            line: usize::try_from(self.u64()?).ok()?,
                            message: self.str()?,
                            date: self.date()?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Err((name, problems))
            }
            _ => return None,
        };
        Some((stamp, result))
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
/// and the note it was computed from: an issue whose digests come from the digest cache (as
/// catalog entries) has its hash from here while its files are as they were, so that no build reads every
/// digest again to compare what is published with the publication record.
pub struct WeekHashes {
    path: PathBuf,
    key: String,
    stamps: Stamps,
    old: BTreeMap<String, (String, String)>,
    written: i128,
    new: BTreeMap<String, (String, String)>,
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
        WeekHashes { path, key, stamps, old, written, new: BTreeMap::new() }
    }

    /// What `issue`'s hash is computed from: each file's name and stamp, and the note; and
    /// whether every file had settled before the record was written. `None` when a file was not
    /// listed.
    fn fingerprint<D: Listed>(&self, issue: &crate::issue::Issue<D>) -> Option<(String, bool)> {
        let mut f = Fingerprint::default();
        let mut settled = true;
        for d in issue.digests() {
            let s = self.stamps.get(d.file_name())?;
            settled &= s.settled_before(self.written);
            f.text(d.file_name());
            f.bytes(&s.len.to_le_bytes())
                .bytes(&s.mtime.to_le_bytes())
                .bytes(&s.ctime.to_le_bytes())
                .bytes(&s.inode.to_le_bytes());
        }
        match &issue.note {
            Some(note) => f.text("note").text(note),
            None => f.text("no note"),
        };
        Some((f.finish(), settled))
    }

    /// `issue`'s content hash as recorded, when its files (each settled before the record was
    /// written) and its note are as they were.
    pub fn get<D: Listed>(&self, issue: &crate::issue::Issue<D>) -> Option<String> {
        let (fingerprint, hash) = self.old.get(issue.id.as_str())?;
        let (now, settled) = self.fingerprint(issue)?;
        (settled && now == *fingerprint).then(|| hash.clone())
    }

    /// Records `hash` as `issue`'s content hash, read from its files as they are listed.
    pub fn record<D: Listed>(&mut self, issue: &crate::issue::Issue<D>, hash: &str) {
        if let Some((fingerprint, _)) = self.fingerprint(issue) {
            self.new.insert(issue.id.to_string(), (fingerprint, hash.to_string()));
        }
    }

    /// Writes the record: the hashes recorded, and those of `ids` as they were (issues whose hash
    /// was still current). Failing to is only logged.
    pub fn save<'a>(&self, ids: impl Iterator<Item = &'a IssueId>) {
        let recorded = !self.new.is_empty();
        let mut weeks = self.new.clone();
        for id in ids {
            if let Some(old) = self.old.get(id.as_str()) {
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
                tracing::debug!(
                    "the page record {} is for other templates, configuration or Gazette: every page is rendered",
                    path.display()
                );
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
        let entry = PageEntry {
            fingerprint: fingerprint.to_string(),
            stamp,
            hash: fingerprint::of_bytes(contents.as_bytes()),
            email,
            content,
        };
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

    fn rule() -> WeekRule {
        WeekRule { starts: chrono::Weekday::Mon, timezone: chrono_tz::UTC }
    }

    fn read(digests: &Path, cache: &Path) -> Digests {
        read_digests(digests, cache, &rule(), CacheUse::Update).unwrap().0
    }

    fn all(d: &Digests) -> Vec<CatalogEntry> {
        d.iter().cloned().collect()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// Whether every bucket of the cache holds exactly the files listed now, each as it is.
    fn buckets_as_listed(digests: &Path, cache: &Path) -> bool {
        let (key, files) = (cache_key(digests, &rule()), Stamps::of(list_stamped(digests).unwrap()));
        let loaded: Vec<Loaded> = (0..BUCKETS)
            .map(|b| Loaded::read(&bucket_path(&cache.join("digests"), b), &key, digests, &files))
            .collect();
        let found: usize = loaded.iter().map(|l| l.found.len()).sum();
        found == files.len() && loaded.iter().all(|l| !l.dirty || l.groups.is_empty() && l.found.is_empty())
    }

    #[test]
    fn the_encoding_gives_back_what_the_parser_gave() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("001_aa.txt");
        std::fs::write(&good, digest_text("Good")).unwrap();
        let bad = dir.path().join("002_bb.txt");
        std::fs::write(&bad, "# __Bad__, from ([20231399](https://example.org/c).)\n").unwrap();
        let mut parsed = digest::read_files(&[good.clone(), bad.clone()]);
        let problems = parsed.pop().unwrap().unwrap_err();
        let digest = parsed.pop().unwrap().unwrap();
        let files = Stamps::of(list_stamped(dir.path()).unwrap());
        let groups = vec![
            Group { week: None, days: Vec::new(), broken: vec![("002_bb.txt".to_string(), problems.clone())] },
            Group {
                week: Some(date("2023-07-17")),
                days: vec![(date("2023-07-18"), vec![CatalogEntry::of(&digest)])],
                broken: Vec::new(),
            },
        ];
        let bytes = Loaded { groups, found: Vec::new(), ids: Vec::new(), dirty: true }.encode("k", &files);
        let later = system_nanos(SystemTime::now() + Duration::from_secs(10));
        let back = Reader::new(&bytes).bucket("k", dir.path(), &files, later).unwrap();
        assert!(!back.dirty);
        assert_eq!(back.found.len(), 2);
        // The digest's catalog entry; problems whole.
        let entry = CatalogEntry::of(&digest);
        assert_eq!(entry.references, ["00ff"]);
        assert_eq!(back.groups[0].broken, vec![("002_bb.txt".to_string(), problems)]);
        assert_eq!(
            (back.groups[1].week, &back.groups[1].days),
            (Some(date("2023-07-17")), &vec![(date("2023-07-18"), vec![entry])])
        );
        // Written as the files were: they may have changed again within the clock's tick, so
        // neither is trusted, and the bucket is to be written again.
        let same_tick = Stamp::of(&std::fs::metadata(&good).unwrap()).mtime;
        let back = Reader::new(&bytes).bucket("k", dir.path(), &files, same_tick).unwrap();
        assert!(
            back.dirty && back.found.is_empty() && back.groups.iter().all(|g| g.days.is_empty() && g.broken.is_empty())
        );
        // Another key, a cut-off file, or another end: not used at all.
        assert!(Reader::new(&bytes).bucket("other", dir.path(), &files, later).is_none());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Reader::new(&bytes[..cut]).bucket("k", dir.path(), &files, later).is_none(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        assert!(Reader::new(&flipped).bucket("k", dir.path(), &files, later).is_none());
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
        // Its change time is now: only a file older than the settling margin is trusted.
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let title = |d: &Digests| d.iter().next().unwrap().title.clone();
        assert_eq!(title(&read(&digests, &cache)), "Before");
        let cached = read(&digests, &cache);
        assert_eq!((title(&cached), cached.parsed), ("Before".to_string(), 0), "from the cache");

        // Same size, and the same (old) modification time: the change time still moves.
        std::fs::write(&file, digest_text("Change")).unwrap();
        age(&file);
        assert_eq!(title(&read(&digests, &cache)), "Change");

        // A file changed just now, as the cache was written: read again, even with its stamp unchanged.
        std::fs::write(&file, digest_text("Recent")).unwrap();
        assert_eq!(title(&read(&digests, &cache)), "Recent");
        let again = read(&digests, &cache);
        assert_eq!((title(&again), again.parsed), ("Recent".to_string(), 1), "a fresh entry is kept but not trusted");
    }

    #[test]
    fn files_gone_are_dropped_from_their_bucket_and_the_others_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        // Enough files that several share a bucket.
        let files = old_digests(&digests, 200);
        // The change times are now: only files older than the settling margin are trusted.
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let fresh = all(&read(&digests, &cache));
        files.iter().step_by(3).for_each(|f| std::fs::remove_file(f).unwrap());
        let after = read(&digests, &cache);
        assert_eq!(after.parsed, 0, "every file left is found in the cache");
        let kept: Vec<CatalogEntry> =
            fresh.into_iter().enumerate().filter(|(k, _)| k % 3 != 0).map(|(_, d)| d).collect();
        assert_eq!((all(&after), after.count), (kept.clone(), kept.len()));
        assert!(buckets_as_listed(&digests, &cache), "the buckets were rewritten without the files that are gone");
    }

    #[test]
    fn a_digest_moved_to_another_week_leaves_its_old_week_and_days_stay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        // The week of 17 July 2023: Tuesday 18 and Thursday 20; each day's files out of name order on disk.
        let on = |day: &str, title: &str| digest_text(title).replace("20230718", day);
        let files = [
            ("004_dd.txt", "20230720"),
            ("001_aa.txt", "20230718"),
            ("003_cc.txt", "20230718"),
            ("002_bb.txt", "20230720"),
        ];
        std::fs::create_dir_all(&digests).unwrap();
        for (name, day) in files {
            std::fs::write(digests.join(name), on(day, name)).unwrap();
            age(&digests.join(name));
        }
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        type Shape = Vec<(NaiveDate, Vec<(NaiveDate, Vec<String>)>)>;
        let shape = |d: &Digests| -> Shape {
            d.weeks
                .iter()
                .map(|w| {
                    (
                        w.start,
                        w.days
                            .iter()
                            .map(|(day, ds)| (*day, ds.iter().map(|d| d.file_name.clone()).collect()))
                            .collect(),
                    )
                })
                .collect()
        };
        let first = read(&digests, &cache);
        let cached = read(&digests, &cache);
        assert_eq!(cached.parsed, 0);
        let expected = vec![(
            date("2023-07-17"),
            vec![
                (date("2023-07-18"), vec!["001_aa.txt".to_string(), "003_cc.txt".into()]),
                (date("2023-07-20"), vec!["002_bb.txt".to_string(), "004_dd.txt".into()]),
            ],
        )];
        assert_eq!((shape(&first), shape(&cached)), (expected.clone(), expected));

        // 003 moves to Monday 24 July (the next week), keeping its size; 005 arrives on Wednesday 19.
        std::fs::write(digests.join("003_cc.txt"), on("20230724", "003_cc.txt")).unwrap();
        age(&digests.join("003_cc.txt"));
        std::fs::write(digests.join("005_ee.txt"), on("20230719", "005_ee.txt")).unwrap();
        age(&digests.join("005_ee.txt"));
        let moved = read(&digests, &cache);
        assert_eq!(moved.parsed, 2);
        let expected = vec![
            (
                date("2023-07-17"),
                vec![
                    (date("2023-07-18"), vec!["001_aa.txt".to_string()]),
                    (date("2023-07-19"), vec!["005_ee.txt".to_string()]),
                    (date("2023-07-20"), vec!["002_bb.txt".to_string(), "004_dd.txt".into()]),
                ],
            ),
            (date("2023-07-24"), vec![(date("2023-07-24"), vec!["003_cc.txt".to_string()])]),
        ];
        assert_eq!(shape(&moved), expected);
        // As a build without a cache reads them, and so again from the cache once the files settle.
        assert_eq!(shape(&read(&digests, &dir.path().join("no cache"))), expected);
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let _ = read(&digests, &cache);
        let settled = read(&digests, &cache);
        assert_eq!((shape(&settled), settled.parsed), (expected, 0));
        assert!(buckets_as_listed(&digests, &cache), "each file in one bucket, as it is now");
    }

    #[test]
    fn an_id_used_twice_is_a_problem_whether_the_files_are_parsed_or_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        std::fs::create_dir_all(&digests).unwrap();
        // The same id in two weeks (so two buckets): the first by file name is kept.
        for (name, day) in [("001_00ff.txt", "20230725"), ("002_00ff.txt", "20230718"), ("003_0abc.txt", "20230718")] {
            std::fs::write(digests.join(name), digest_text(name).replace("20230718", day)).unwrap();
            age(&digests.join(name));
        }
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        for pass in ["parsed", "cached"] {
            let d = read(&digests, &cache);
            assert_eq!(d.parsed, if pass == "parsed" { 3 } else { 0 });
            let names: Vec<&str> = d.iter().map(|d| d.file_name.as_str()).collect();
            assert_eq!((names, d.count), (vec!["003_0abc.txt", "001_00ff.txt"], 2), "{pass}");
            assert_eq!(d.problems.len(), 1, "{pass}");
            let problem = d.problems[0].to_string();
            assert!(
                problem.contains("002_00ff.txt: id `00ff` is already used by") && problem.contains("001_00ff.txt"),
                "{pass}: {problem}"
            );
        }
    }

    /// The week of the digests in `dir` (all of one week), as a project loads it, with the stamps
    /// and how many files were parsed.
    fn week(dir: &Path, cache: &Path, note: Option<&str>) -> (crate::issue::CatalogIssue, Stamps, usize) {
        let (digests, stamps) = read_digests(dir, cache, &rule(), CacheUse::Update).unwrap();
        let mut weeks: Vec<crate::issue::CatalogIssue> =
            digests.weeks.into_iter().map(|w| crate::issue::Issue::of_week(w.start, w.days)).collect();
        assert_eq!(weeks.len(), 1);
        weeks[0].note = note.map(str::to_string);
        (weeks.pop().unwrap(), stamps, digests.parsed)
    }

    #[test]
    fn a_week_hash_is_used_only_while_its_files_and_note_are_as_recorded_and_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        let files = old_digests(&digests, 3);
        // Their change times are now: only files older than the settling margin are trusted.
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let (whole, stamps, parsed) = week(&digests, &cache, None);
        assert_eq!(parsed, 3, "read from the files the first time");
        let hash = "the week's hash".to_string();
        let mut weeks = WeekHashes::open(&cache, &digests, stamps);
        assert_eq!(weeks.get(&whole), None, "nothing recorded yet");
        weeks.record(&whole, &hash);
        weeks.save(std::iter::empty());
        // The record was written after the files settled: trusted.
        let (cached, stamps, parsed) = week(&digests, &cache, None);
        assert_eq!(parsed, 0, "read from the digest cache");
        let weeks = WeekHashes::open(&cache, &digests, stamps);
        assert_eq!(weeks.get(&cached), Some(hash.clone()));
        // The same files with a note: another hash.
        let (noted, stamps, _) = week(&digests, &cache, Some("A word first."));
        assert_eq!(WeekHashes::open(&cache, &digests, stamps).get(&noted), None);

        // One file rewritten with the same bytes: its stamp moved, so the hash is not trusted.
        std::fs::write(&files[1], std::fs::read(&files[1]).unwrap()).unwrap();
        age(&files[1]);
        let (after, stamps, _) = week(&digests, &cache, None);
        let mut weeks = WeekHashes::open(&cache, &digests, stamps);
        assert_eq!(weeks.get(&after), None);
        // Recorded again now, while the rewritten file is recent (its change time is now): not
        // trusted by the next run until the file has settled before a later record.
        weeks.record(&after, &hash);
        weeks.save(std::iter::empty());
        let (next, stamps, _) = week(&digests, &cache, None);
        assert_eq!(
            WeekHashes::open(&cache, &digests, stamps).get(&next),
            None,
            "the file changed too recently to be trusted by its stamp"
        );
    }

    #[test]
    fn a_corrupt_or_missing_cache_reads_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (digests, cache) = (dir.path().join("digests"), dir.path().join("cache"));
        old_digests(&digests, 20);
        std::fs::write(digests.join("020_bad.txt"), "nothing").unwrap();
        let fresh = read(&digests, &cache);
        for e in std::fs::read_dir(cache.join("digests")).unwrap() {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
        let again = read(&digests, &cache);
        assert_eq!((all(&again), &again.problems, again.parsed), (all(&fresh), &fresh.problems, 21));
        std::fs::remove_dir_all(&cache).unwrap();
        let third = read(&digests, &cache);
        assert_eq!((all(&third), &third.problems), (all(&fresh), &fresh.problems));
    }
}
