//! The archive and feeds, read from `[paths] out`: the right Content-Type, validators (a strong
//! ETag from the contents, Last-Modified from the file) so polling feed readers get 304s, and
//! nothing outside that folder: no `..`, no dotfiles, no symlink leading out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::App;
use crate::urls;

/// What a path segment keeps unencoded in a redirect (RFC 3986 unreserved characters).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Feed readers poll; five minutes of freshness, then a cheap revalidation.
const CACHE_CONTROL: &str = "public, max-age=300";

pub async fn serve_file(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(rel) = safe_relative_path(uri.path()) else { return app.not_found() };
    let mut path = app.root.join(&rel);
    // Plain std::fs: these are cached metadata look-ups of microseconds, cheaper than a hop to
    // tokio's blocking pool for each (a feed poll answered 304 is nothing but these).
    if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
        if !uri.path().ends_with('/') {
            // Relative, so it also works behind a proxy that serves us under a prefix.
            let last = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let location = format!("{}/", percent_encoding::utf8_percent_encode(last, SEGMENT));
            return (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response();
        }
        path.push(urls::INDEX);
    }
    let Some((path, meta)) = inside(&app.root, &path) else { return app.not_found() };
    let file = match app.files.get(&path, &meta).await {
        Ok(file) => file,
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file; see the server log").into_response();
        }
    };
    let etag = &file.etag;
    // Last-Modified is never later than now (RFC 9110 §8.8.2.1), and HTTP dates have whole seconds.
    let modified = file.modified.min(SystemTime::now());
    let validators = [
        (header::ETAG, HeaderValue::from_str(etag).expect("hex is a valid header")),
        (
            header::LAST_MODIFIED,
            HeaderValue::from_str(&httpdate::fmt_http_date(modified)).expect("a date is a valid header"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL)),
    ];
    let content_type = content_type(&path);
    // On a 304 too: a browser updates the cached response's headers from it.
    let security = security_headers(content_type);
    if not_modified(&headers, etag, modified) {
        return (StatusCode::NOT_MODIFIED, validators, security, ()).into_response();
    }
    let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))];
    (validators, security, content_type, Body::from(file.contents.clone())).into_response()
}

/// The archive's pages keep their inline styles and show images from anywhere on the web (an issue
/// can picture what it links to; an image runs nothing) and the archive's own files; nothing runs
/// scripts, and no other site frames them. Linked sites learn the archive's origin, not the page.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// Feeds and other files a browser could show as a document (XML, JSON, SVG) load and run nothing.
const DOCUMENT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Never sniffed into another type; a Content-Security-Policy for what a browser could render as a
/// document (not for images, fonts or PDFs, which run nothing and whose viewers a policy can break).
fn security_headers(content_type: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    let policy = if content_type.starts_with("text/html") {
        Some(PAGE_POLICY)
    } else if is_text(content_type) || content_type.starts_with("image/svg") {
        Some(DOCUMENT_POLICY)
    } else {
        None
    };
    if let Some(policy) = policy {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    }
    headers
}

/// The request path as a relative path under `out`, or `None` when a segment (after percent
/// decoding) is `.`, `..` or another dotfile, or holds a backslash or NUL.
fn safe_relative_path(raw: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    let mut rel = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains(['\\', '\0']) {
            return None;
        }
        rel.push(segment);
    }
    Some(rel)
}

/// `path` with every symlink resolved and its metadata, if it is a file that is still inside `root`
/// (canonical) and not inside a dot-folder there.
fn inside(root: &Path, path: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
    let real = std::fs::canonicalize(path).ok()?;
    let rel = real.strip_prefix(root).ok()?;
    let hidden = rel.components().any(|c| c.as_os_str().to_str().is_none_or(|s| s.starts_with('.')));
    let meta = std::fs::metadata(&real).ok()?;
    (!hidden && meta.is_file()).then_some((real, meta))
}

/// A file as served: its contents and its validators.
pub struct CachedFile {
    contents: Bytes,
    etag: String,
    modified: SystemTime,
    len: u64,
}

/// Files read so far, by canonical path, reused while their size and modification time stay the
/// same (`gazette build` replaces files by renaming, which changes both). Bounded: past
/// `FileCache::LIMIT` bytes, files are read for each request and not kept.
#[derive(Default)]
pub struct FileCache {
    files: std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<CachedFile>>>,
    rewrite: Option<Rewrite>,
}

/// Links to `from` (`[site] base_url`) served as links to `to` (where `serve` listens), in the
/// pages and feeds, for looking at the archive locally as readers will see it.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

impl FileCache {
    const LIMIT: u64 = 128 * 1024 * 1024;

    pub fn new(rewrite: Option<Rewrite>) -> FileCache {
        FileCache { rewrite, ..FileCache::default() }
    }

    async fn get(&self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<Arc<CachedFile>> {
        let modified = meta.modified()?;
        let fresh = |f: &CachedFile| f.len == meta.len() && f.modified == modified;
        if let Some(f) = self.files.lock().expect("file cache lock").get(path).filter(|f| fresh(f)) {
            return Ok(f.clone());
        }
        let mut contents = Bytes::from(tokio::fs::read(path).await?);
        if let Some(Rewrite { from, to }) = &self.rewrite
            && is_text(content_type(path))
            && let Ok(text) = std::str::from_utf8(&contents)
        {
            contents = Bytes::from(text.replace(from.as_str(), to));
        }
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&contents)[..16]));
        let file = Arc::new(CachedFile { len: contents.len() as u64, contents, etag, modified });
        let mut files = self.files.lock().expect("file cache lock");
        files.remove(path);
        if files.values().map(|f| f.len).sum::<u64>() + file.len <= Self::LIMIT {
            files.insert(path.to_path_buf(), file.clone());
        }
        Ok(file)
    }
}

/// RFC 9110 §13.1.2 and §13.1.3: If-None-Match (a list, or `*`; weak comparison) decides when
/// present; otherwise If-Modified-Since, at the one-second precision of HTTP dates.
fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    let mut tags = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if tags.peek().is_some() {
        return tags
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag);
    }
    let since = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    let whole_seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    since.is_some_and(|since| whole_seconds(modified) <= whole_seconds(since))
}

fn is_text(content_type: &str) -> bool {
    content_type.starts_with("text/") || content_type.contains("xml") || content_type.contains("json")
}

fn content_type(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name {
        urls::RSS => return "application/rss+xml; charset=utf-8",
        urls::ATOM => return "application/atom+xml; charset=utf-8",
        urls::JSON_FEED => return "application/feed+json; charset=utf-8",
        _ => {}
    }
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml; charset=utf-8",
        Some("json") => "application/json; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_out_or_show_dotfiles_are_refused() {
        assert_eq!(safe_relative_path("/issues/2023-07-17/"), Some(PathBuf::from("issues/2023-07-17")));
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        for bad in [
            "/../publish.toml",
            "/%2e%2e/publish.toml",
            "/a/%2E%2E%2fpublish.toml",
            "/.hidden",
            "/a/.git/config",
            "/a%5c..%5cb",
            "/%00",
            "/%ff",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn validators_match_by_tag_list_star_or_date() {
        let etag = "\"abc\"";
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_690_000_000_700);
        let h = |pairs: &[(header::HeaderName, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(k.clone(), HeaderValue::from_str(v).unwrap());
            }
            m
        };
        assert!(not_modified(&h(&[(header::IF_NONE_MATCH, "\"x\", W/\"abc\"")]), etag, t));
        assert!(not_modified(&h(&[(header::IF_NONE_MATCH, "*")]), etag, t));
        assert!(!not_modified(&h(&[(header::IF_NONE_MATCH, "\"x\"")]), etag, t));
        let date = httpdate::fmt_http_date(t);
        assert!(
            not_modified(&h(&[(header::IF_MODIFIED_SINCE, &date)]), etag, t),
            "the same second, milliseconds aside"
        );
        let earlier = httpdate::fmt_http_date(t - std::time::Duration::from_secs(1));
        assert!(!not_modified(&h(&[(header::IF_MODIFIED_SINCE, &earlier)]), etag, t));
        // A non-matching tag wins over a matching date.
        assert!(!not_modified(&h(&[(header::IF_NONE_MATCH, "\"x\""), (header::IF_MODIFIED_SINCE, &date)]), etag, t));
        assert!(!not_modified(&h(&[(header::IF_MODIFIED_SINCE, "yesterday")]), etag, t));
    }
}
