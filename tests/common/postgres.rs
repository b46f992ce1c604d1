//! A real Postgres for discovery tests: Debian's `postgresql` binaries, a private data
//! directory, 127.0.0.1 on a free port, LiteLLM's own schema (the SQL migrations of
//! the `litellm-proxy-extras` package in the e2e venv, applied in order with psql).
//! Stopped on drop. Missing binaries or migrations fail the test loudly: they are
//! installed by scripts/install-deps.sh and tests/e2e/setup_venv.sh.
//!
//! [`Postgres::shared`] hands out one server to the tests of a binary that run at the
//! same time (each gets its own database, cloned from a migrated template in a few
//! milliseconds); the last one to finish stops it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::proxy::free_port;

pub struct Postgres {
    bin: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Run the server as this user (initdb refuses to run as root).
    user: Option<String>,
    next_db: Mutex<u32>,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "DISCOVERY TESTS NEED POSTGRES: no /usr/lib/postgresql/*/bin/initdb. \
             Run scripts/install-deps.sh (it installs Debian's postgresql package)."
        )
    })
}

/// LiteLLM's migrations, oldest first.
fn migrations() -> Vec<PathBuf> {
    let venv = std::env::var("MODELMAP_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/setup_venv.sh");
            let out = Command::new(&setup)
                .stderr(Stdio::inherit())
                .output()
                .expect("run tests/e2e/setup_venv.sh");
            assert!(out.status.success(), "tests/e2e/setup_venv.sh failed");
            let text = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(text.lines().last().expect("venv path").trim())
        });
    let lib = venv.join("lib");
    let site = std::fs::read_dir(&lib)
        .expect("venv lib dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join("site-packages/litellm_proxy_extras/migrations")
        })
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no litellm_proxy_extras/migrations under {}", lib.display()));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&site)
        .expect("migrations dir")
        .filter_map(|e| e.ok().map(|e| e.path().join("migration.sql")))
        .filter(|p| p.exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() > 100,
        "expected LiteLLM's migrations in {}",
        site.display()
    );
    dirs
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());

impl Postgres {
    /// The server shared by the tests running now (started if none is).
    pub fn shared() -> Arc<Postgres> {
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pg) = slot.upgrade() {
            return pg;
        }
        let pg = Arc::new(Postgres::start());
        *slot = Arc::downgrade(&pg);
        pg
    }

    /// A new server of its own, with a migrated `template_litellm` database.
    pub fn start() -> Postgres {
        let started = Instant::now();
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let user = (is_root()).then(|| "postgres".to_string());
        if let Some(u) = &user {
            let ids = check(
                Command::new("id").args(["-u", u]).output().expect("id"),
                "id -u",
            );
            let gids = check(
                Command::new("id").args(["-g", u]).output().expect("id"),
                "id -g",
            );
            let (uid, gid) = (ids.trim().parse().ok(), gids.trim().parse().ok());
            std::os::unix::fs::chown(dir.path(), uid, gid).expect("chown data dir");
        }
        let pg = Postgres {
            bin,
            port: free_port(),
            dir,
            user,
            next_db: Mutex::new(0),
        };
        let data = pg.data();
        check(
            pg.server_cmd("initdb")
                .args(["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .args(["--no-sync", "--no-instructions"])
                .output()
                .expect("initdb"),
            "initdb",
        );
        pg.resume();
        pg.psql("postgres", "CREATE DATABASE template_litellm");
        let mut all = String::new();
        for m in migrations() {
            all.push_str(&std::fs::read_to_string(&m).expect("read migration"));
            all.push_str("\n;\n");
        }
        pg.psql("template_litellm", &all);
        eprintln!(
            "postgres: {} on 127.0.0.1:{} with LiteLLM's schema in {:?}",
            pg.bin.display(),
            pg.port,
            started.elapsed()
        );
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn server_cmd(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts (or restarts) the server on its port.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        check(
            self.server_cmd("pg_ctl")
                .args([
                    "-D",
                    &self.data(),
                    "-o",
                    &opts,
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ])
                .stdout(Stdio::null())
                .output()
                .expect("pg_ctl start"),
            "pg_ctl start",
        );
    }

    /// Stops the server at once (as a crash or a network cut would look to a client).
    pub fn halt(&self) {
        let _ = self
            .server_cmd("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A fresh database with LiteLLM's schema; returns its name.
    pub fn database(&self) -> String {
        let n = {
            let mut next = self.next_db.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let name = format!("litellm_{}_{n}", std::process::id());
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE template_litellm"),
        );
        name
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql (stops at the first error); returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let psql = self.bin.join("psql");
        let mut child = Command::new(psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", db, "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(sql.as_bytes()).expect("write sql");
        }
        check(child.wait_with_output().expect("psql output"), "psql")
    }

    /// Adds a team model the way LiteLLM's `/model/new` does for a team
    /// (`add_team_model_to_db`): `model_id` = `model_info.id` = a uuid4, internal name
    /// `model_name_{team_id}_{another uuid4}`, `model_info` with `team_id` and
    /// `team_public_model_name`, `litellm_params` encrypted (opaque here).
    /// `created` is an SQL timestamp expression. Returns (model_id, internal name).
    pub fn add_team_model(
        &self,
        db: &str,
        team: &str,
        public: &str,
        created: &str,
    ) -> (String, String) {
        let out = self.psql(
            db,
            &format!(
                r#"WITH u AS (SELECT gen_random_uuid()::text AS id, gen_random_uuid()::text AS n)
                INSERT INTO "LiteLLM_ProxyModelTable"
                    (model_id, model_name, litellm_params, model_info, created_at, created_by, updated_at, updated_by)
                SELECT id, 'model_name_' || '{team}' || '_' || n,
                    '{{"model": "gAAAAABencrypted", "api_key": "gAAAAABencrypted"}}'::jsonb,
                    jsonb_build_object('id', id, 'db_model', false, 'team_id', '{team}',
                        'team_public_model_name', '{public}', 'member_auto_router', false),
                    {created}, 'default_user_id', {created}, 'default_user_id'
                FROM u RETURNING model_id, model_name"#
            ),
        );
        let line = out.lines().next().expect("a returned row");
        let (id, name) = line.split_once('|').expect("id|name");
        (id.to_string(), name.to_string())
    }

    /// Deletes a model the way `/model/delete` does (by `model_id`).
    pub fn delete_model(&self, db: &str, model_id: &str) {
        self.psql(
            db,
            &format!(r#"DELETE FROM "LiteLLM_ProxyModelTable" WHERE model_id = '{model_id}'"#),
        );
    }
}

fn is_root() -> bool {
    // No libc dependency: the effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Waits up to `limit` for `ok`, polling every 25 ms.
pub fn eventually(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if ok() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
