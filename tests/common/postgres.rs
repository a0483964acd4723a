//! A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary folder and `pg_ctl` on
//! a free loopback port, as a user that is not root (PostgreSQL refuses to run as root: when the
//! tests are root, the cluster runs as the `postgres` user Debian's package creates). Password
//! authentication over TCP, so that Gazette's `GAZETTE_DATABASE_PASSWORD` is what lets it in.
//! Stopped (and its folder removed) when dropped; `shared()` is one cluster for a whole test
//! process, stopped by a watchdog when the process ends. The store's unit tests use this file too
//! (`src/store/mod.rs` includes it), so that both kinds of test start the server one way.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const PASSWORD: &str = "gazette-test-password";
const USER: &str = "gazette";

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The user the server runs as, when the tests run as root.
    run_as: Option<&'static str>,
}

/// The folder holding initdb and pg_ctl: Debian keeps them out of PATH.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect();
    versions.sort();
    versions.into_iter().rev().find(|d| d.join("initdb").exists())
}

/// Why the cluster cannot start here, if it cannot: the test then skips, or fails under CI.
pub fn missing() -> Option<String> {
    bin_dir().is_none().then(|| "PostgreSQL's initdb (Debian package postgresql)".to_string())
}

/// True when PostgreSQL is there; otherwise says what is missing, and panics when `CI` is set.
pub fn available() -> bool {
    match missing() {
        None => true,
        Some(what) if std::env::var_os("CI").is_some() => panic!("{what} is missing; .ci/run installs it"),
        Some(what) => {
            eprintln!("skipped: {what} is missing");
            false
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Cluster {
    pub fn start() -> Cluster {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir().expect("PostgreSQL is installed");
        let run_as = is_root().then_some("postgres");
        let dir = std::env::temp_dir().join(format!(
            "gazette-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if let Some(user) = run_as {
            assert!(
                Command::new("chown").arg("-R").arg(user).arg(&dir).status().unwrap().success(),
                "chown {}",
                dir.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster { dir, bin, port, run_as };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options =
            format!("-h 127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=100", cluster.dir.display());
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                cluster.dir.join("log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        cluster
    }

    /// One cluster for the whole test process (each test takes a database of its own): a shell
    /// watchdog stops it and removes its folder once this process has exited, since a static is
    /// never dropped.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let cluster = Cluster::start();
            let stop = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas} {pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
                pid = std::process::id(),
                runas = cluster.run_as.map(|u| format!("runuser -u {u} --")).unwrap_or_default(),
                pg_ctl = cluster.bin.join("pg_ctl").display(),
                data = cluster.dir.join("data").display(),
                dir = cluster.dir.display(),
            );
            // Not waited for: it is meant to outlive this process.
            #[allow(clippy::zombie_processes)]
            Command::new("sh")
                .arg("-c")
                .arg(stop)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("sh starts");
            cluster
        })
    }

    /// A new database with a name of its own.
    pub fn fresh_database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        self.database(&format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)))
    }

    /// One of PostgreSQL's programs, to be run as the cluster's user.
    fn program(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&path);
                c
            }
            None => Command::new(&path),
        }
    }

    /// Runs one of PostgreSQL's programs, as the cluster's user.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .program(program)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// A new, empty database of this cluster; its URL carries no password.
    pub fn database(&self, name: &str) -> String {
        let host = self.dir.to_str().unwrap();
        let out = self
            .program("createdb")
            .args(["-h", host, "-p", &self.port.to_string(), "-U", USER, name])
            .output()
            .unwrap();
        assert!(out.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.program("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
