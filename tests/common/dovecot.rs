//! A Dovecot IMAP server for the tests of the bounce and DMARC mailboxes (`[bounces] mailbox`,
//! `[dmarc] mailbox`): TLS from the first byte, one account, messages put in with Python's imaplib
//! or as a delivery agent does.

/// A Dovecot IMAP server on a free loopback port, TLS from the first byte with a certificate of
/// its own, one account (`bounces`) whose mail is a maildir under `home`; stopped when dropped.
pub struct Dovecot {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Its certificate's issuer: what `[bounces] ca_file` names.
    ca: super::relay::TestCa,
}

const DOVECOT: &str = "/usr/sbin/dovecot";
pub const IMAP_PASSWORD: &str = "correct-horse-battery-staple";

impl Dovecot {
    /// `None` (having said SKIPPED) when Dovecot or openssl is missing and `CI` is not set.
    pub fn start() -> Option<Dovecot> {
        let openssl = std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
        if !std::path::Path::new(DOVECOT).exists() || !openssl || super::python_with(&["imaplib", "ssl"]).is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{DOVECOT}, openssl or python3 is missing; .ci/run installs dovecot-imapd"
            );
            eprintln!(
                "SKIPPED: {DOVECOT} (Debian's dovecot-imapd), openssl or python3 is missing; the IMAP test did not run"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |c: &mut std::process::Command| {
            let out = c.output().unwrap();
            assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ca = super::relay::TestCa::new();
        std::fs::copy(&ca.localhost.pem, d.join("cert.pem")).unwrap();
        std::fs::copy(&ca.localhost.key, d.join("key.pem")).unwrap();
        std::fs::write(d.join("passwd"), format!("bounces:{{PLAIN}}{IMAP_PASSWORD}::::::\n")).unwrap();
        std::fs::create_dir_all(d.join("home")).unwrap();
        // Dovecot's login processes refuse to run as root, and so does mail access: as root, its
        // own users; as anyone else, that user throughout.
        let me = |flag: &str| {
            String::from_utf8(std::process::Command::new("id").arg(flag).output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        };
        let root = me("-u") == "0";
        let id_of = |flag: &str, user: &str| {
            String::from_utf8(std::process::Command::new("id").args([flag, user]).output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        };
        let (internal, login, uid, gid) = if root {
            ("dovecot".to_string(), "dovenull".to_string(), id_of("-u", "dovecot"), id_of("-g", "dovecot"))
        } else {
            (me("-un"), me("-un"), me("-u"), me("-g"))
        };
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            run(std::process::Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(d.join("home")));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = |name: &str| d.join(name).display().to_string();
        let conf = format!(
            "base_dir = {run}\nstate_dir = {run}/state\nlog_path = {log}\nprotocols = imap\nlisten = 127.0.0.1\n\
             ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n\
             default_internal_user = {internal}\ndefault_internal_group = {internal_group}\ndefault_login_user = {login}\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\nauth_mechanisms = plain login\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    port = 0\n  }}\n  inet_listener imaps {{\n    port = {port}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {passwd}\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={home}/%u\n}}\n\
             mail_location = maildir:~/Maildir\n",
            run = p("run"),
            log = p("dovecot.log"),
            cert = p("cert.pem"),
            key = p("key.pem"),
            internal_group = if root { "dovecot".to_string() } else { me("-gn") },
            passwd = p("passwd"),
            home = p("home"),
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child =
            std::process::Command::new(DOVECOT).arg("-F").arg("-c").arg(d.join("dovecot.conf")).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "dovecot did not listen: {}",
                std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Dovecot { child, port, dir, ca })
    }

    pub fn cert(&self) -> std::path::PathBuf {
        self.ca.ca.clone()
    }

    /// Puts messages into the account's INBOX with Python's imaplib: a client other than Gazette's.
    pub fn append(&self, messages: &[String]) {
        let script = "import imaplib, ssl, sys\n\
                      ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
                      m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)\n\
                      m.login('bounces', sys.argv[3])\n\
                      for path in sys.argv[4:]:\n    m.append('INBOX', None, None, open(path, 'rb').read())\n\
                      m.logout()\n";
        let mut files = Vec::new();
        for (i, text) in messages.iter().enumerate() {
            let path = self.dir.path().join(format!("message{i}.eml"));
            std::fs::write(&path, text).unwrap();
            files.push(path);
        }
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.cert())
            .arg(IMAP_PASSWORD)
            .args(&files)
            .output()
            .unwrap();
        assert!(out.status.success(), "imaplib: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The number of messages in a folder of the account, as Dovecot keeps them on disk.
    pub fn count(&self, folder: &str) -> usize {
        let maildir = self.dir.path().join("home/bounces/Maildir");
        let base = if folder == "INBOX" { maildir } else { maildir.join(format!(".{folder}")) };
        ["new", "cur"].iter().map(|s| std::fs::read_dir(base.join(s)).map(|d| d.count()).unwrap_or(0)).sum()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    /// Puts a message into the account's INBOX as a delivery agent does: written into the maildir's
    /// `tmp/`, then moved into `new/`, owned by the account's user.
    pub fn deliver(&self, name: &str, text: &str) {
        use std::os::unix::fs::MetadataExt;
        let maildir = self.dir.path().join("home/bounces/Maildir");
        let owner = std::fs::metadata(maildir.join("new")).unwrap();
        let tmp = maildir.join("tmp").join(name);
        std::fs::write(&tmp, text).unwrap();
        std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::rename(&tmp, maildir.join("new").join(name)).unwrap();
    }
}
