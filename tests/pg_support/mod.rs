//! A real, throwaway PostgreSQL server for the shared-history tests and bench: Debian's
//! `postgresql` package's `initdb` and `pg_ctl` make a cluster in a temp dir, listening on a
//! free loopback port (optionally with TLS from `tests/fixtures/tls` and a custom
//! pg_hba.conf), stopped and started at will, removed on drop. PostgreSQL refuses to run as
//! root, so under root the cluster belongs to the `postgres` user.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The role the tests connect as (the cluster's superuser) and its password.
pub const USER: &str = "deskhook";
pub const PG_PASSWORD: &str = "pg-test-Secret-9";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    tls: bool,
    /// Who runs the server: `None` = this user.
    run_as: Option<&'static str>,
}

/// How the cluster is set up.
#[derive(Default)]
pub struct PgSetup {
    /// ssl = on with the test CA's `localhost`/`127.0.0.1` certificate.
    pub tls: bool,
    /// Replaces pg_hba.conf (the default: scram-sha-256 for every loopback client).
    pub hba: Option<String>,
}

/// The directory with initdb and pg_ctl: the newest Debian PostgreSQL, else `$PATH`.
fn binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let found = Command::new("sh").args(["-c", "command -v initdb"]).output().expect("sh runs");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "PostgreSQL's initdb is not installed (apt-get install postgresql); the shared-history tests need a real server"
    );
    PathBuf::from(path).parent().expect("bin dir").to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Postgres {
    /// A cluster with a `deskhook` database, running.
    pub fn start(setup: PgSetup) -> Postgres {
        let dir = tempfile::tempdir().expect("tempdir");
        let run_as = (std::fs::metadata("/proc/self").expect("proc").uid() == 0).then_some("postgres");
        let postgres = Postgres { bin: binaries(), port: free_port(), tls: setup.tls, run_as, dir };
        std::fs::write(postgres.dir.path().join("pw"), PG_PASSWORD).expect("password file");
        if let Some(user) = run_as {
            postgres.run(Command::new("chown").args(["-R", &format!("{user}:"), &postgres.path_str()]), "chown");
        }
        let data = postgres.data();
        postgres.run(
            postgres
                .tool("initdb")
                .args(["-D", &data, "-U", USER, "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"])
                .args(["-E", "UTF8", "--locale=C"])
                .arg(format!("--pwfile={}/pw", postgres.path_str())),
            "initdb",
        );
        if setup.tls {
            let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
            for (from, to) in [("server.crt", "server.crt"), ("server.key", "server.key")] {
                let target = postgres.dir.path().join("data").join(to);
                std::fs::copy(tls.join(from), &target).expect("copy certificate");
                postgres.run(Command::new("chmod").args(["600", target.to_str().expect("utf8")]), "chmod");
                if let Some(user) = run_as {
                    postgres.run(
                        Command::new("chown").args([&format!("{user}:"), target.to_str().expect("utf8")]),
                        "chown",
                    );
                }
            }
        }
        if let Some(hba) = setup.hba {
            std::fs::write(postgres.dir.path().join("data/pg_hba.conf"), format!("local all all trust\n{hba}\n"))
                .expect("pg_hba.conf");
        }
        postgres.start_again();
        postgres.sql("postgres", "CREATE DATABASE deskhook");
        postgres
    }

    fn path_str(&self) -> String {
        self.dir.path().to_str().expect("utf8 temp dir").to_string()
    }

    fn data(&self) -> String {
        format!("{}/data", self.path_str())
    }

    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run(&self, command: &mut Command, what: &str) {
        let output = command.output().unwrap_or_else(|error| panic!("{what} cannot run: {error}"));
        assert!(
            output.status.success(),
            "{what} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.path_str());
        if self.tls {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = format!("{}/log", self.path_str());
        self.run(
            self.tool("pg_ctl").args(["-D", &self.data(), "-l", &log, "-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    /// Stops the server (fast: open connections are cut, as in an outage).
    pub fn stop(&self) {
        self.run(self.tool("pg_ctl").args(["-D", &self.data(), "-m", "fast", "-w", "stop"]), "pg_ctl stop");
    }

    /// Runs `sql` as the superuser over the cluster's unix socket.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let output = self
            .tool("psql")
            .args(["-h", &self.path_str(), "-p", &self.port.to_string(), "-U", USER, "-d", database])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `postgres://deskhook:…@127.0.0.1:PORT/deskhook` plus `query` (e.g. `sslmode=disable`).
    pub fn url(&self, query: &str) -> String {
        let url = format!("postgres://{USER}:{PG_PASSWORD}@127.0.0.1:{}/deskhook", self.port);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
    }
}
