//! Gazette turns a folder of article digests into a weekly newsletter: an MJML email sent over SMTP
//! to the subscribers kept in SQLite, a web archive, and RSS, Atom and JSON feeds.
//!
//! The data flows one way: `digest` -> `issue` -> `render` -> `deliver`. A `project::Project` loads
//! a project once (configuration, templates, digests, the publication record) and decides what is
//! published; the store, the scheduler, the HTTP server and the command line sit at the edges and
//! go through it.

pub mod audience;
pub mod bounces;
pub mod build_cache;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod deliver;
pub mod digest;
pub mod dmarc;
pub mod dns;
pub mod error;
pub mod fingerprint;
pub mod issue;
pub mod issue_id;
pub mod issue_state;
pub mod notes;
pub mod project;
pub mod readiness;
pub mod render;
pub mod reputation;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod themes;
pub mod token;
pub mod urls;

pub use config::Config;
