//! A fresh, private database per run, removed afterwards: a temporary SQLite file, or a new
//! PostgreSQL schema reached through `search_path`. The schema is created and dropped with `psql`
//! (shipped with every PostgreSQL install), which keeps a database driver out of the bench.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

pub struct Database {
    /// What webhookd is given as `--database`.
    pub url: String,
    /// `sqlite` or `postgres`, for the report.
    pub backend: &'static str,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Removing the directory removes the database with its -wal and -shm files.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        schema: String,
    },
}

impl Database {
    pub fn prepare(spec: &str) -> anyhow::Result<Self> {
        if spec == "sqlite" {
            let dir = tempfile::Builder::new()
                .prefix("webhookd-bench-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            return Ok(Self { url, backend: "sqlite", cleanup: Cleanup::Sqlite { _dir: dir } });
        }
        let schema = unique_schema();
        psql(spec, &format!("CREATE SCHEMA {schema}"))?;
        Ok(Self {
            url: with_search_path(spec, &schema),
            backend: "postgres",
            cleanup: Cleanup::Postgres { admin_url: spec.to_string(), schema },
        })
    }
}

impl Database {
    /// The SQLite file (its `-wal` beside it), for the history's size on disk.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.url.strip_prefix("sqlite://").map(std::path::PathBuf::from)
    }

    /// PostgreSQL: the transactions committed and rolled back so far in the run's database, by
    /// every session on it (`pg_stat_database`, as the statistics system last flushed them).
    /// This query's own session counts too, once its transaction ends.
    pub fn pg_transactions(&self) -> anyhow::Result<Option<u64>> {
        let Cleanup::Postgres { admin_url, .. } = &self.cleanup else {
            return Ok(None);
        };
        let output = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", admin_url, "-c"])
            .arg(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database \
                 WHERE datname = current_database()",
            )
            .output()
            .context("cannot run psql to read pg_stat_database")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!("psql failed: {}", stderr.lines().next().unwrap_or("no message").trim());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let count = stdout
            .trim()
            .parse()
            .with_context(|| format!("pg_stat_database answered {:?}", stdout.trim()))?;
        Ok(Some(count))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, schema } = &self.cleanup {
            if let Err(error) = psql(admin_url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            {
                eprintln!("webhookd-bench: warning: could not drop schema {schema}: {error:#}");
            }
        }
    }
}

/// `bench_<pid>_<nanoseconds>`: unique enough for runs on one machine, and a valid identifier.
fn unique_schema() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("bench_{}_{nanos}", std::process::id())
}

/// The URL with `options=-c search_path=SCHEMA` appended, so every connection webhookd opens
/// (migrations included) lives in the run's schema.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context("cannot run psql (needed to create a schema for --database postgres://…)")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("psql failed: {}", stderr.lines().next().unwrap_or("no message").trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_path_is_appended_as_a_query_parameter() {
        assert_eq!(
            super::with_search_path("postgres://u@h/db", "bench_1"),
            "postgres://u@h/db?options=-c%20search_path%3Dbench_1"
        );
        assert_eq!(
            super::with_search_path("postgres://u@h/db?sslmode=disable", "s"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds"
        );
    }
}
