//! Running webhookd as a child process: start it, learn its address from its log, watch its
//! resource use, and stop it — gracefully when asked, and from `Drop` on every other exit path
//! (errors, Ctrl-C), so no webhookd outlives the bench.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rustix::process::{kill_process, Pid, Signal};

use crate::usage::{self, Totals, Usage};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Log lines kept to explain an early exit.
const TAIL_LINES: usize = 20;

pub struct Webhookd {
    child: Child,
    /// The API address; `None` for a worker-only node.
    pub addr: Option<SocketAddr>,
    /// When the process was spawned (a backlog drain is timed from here).
    pub spawned: Instant,
    usage: Arc<Usage>,
    monitor: tokio::task::JoinHandle<()>,
    tail: Arc<Mutex<Vec<String>>>,
    stopped: bool,
}

/// A child command with a clean environment: no `WEBHOOKD_*` settings or `RUST_LOG` from the
/// caller's shell, so every run uses exactly the flags below and logs the line we wait for.
pub fn command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("WEBHOOKD_") || k == "RUST_LOG") {
            command.env_remove(key);
        }
    }
    // PostgreSQL nodes need the server key that seals secrets at rest; bench data is throwaway,
    // so every run uses this one.
    command.env("WEBHOOKD_SECRET_KEY", "YmVuY2gta2V5LXRoYXQtaXMtMzItYnl0ZXMtbG9uZyE=");
    command.stdin(Stdio::null());
    command
}

impl Webhookd {
    /// Starts `webhookd serve ARGS` and waits until it logs that it is up.
    pub async fn start(binary: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut command = command(binary);
        command.arg("--log-format").arg("text").arg("serve").args(args);
        let spawned = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stdout) = child.stdout.take() {
            // Nothing on stdout matters; read it so the child never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        }
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || drain_log(stderr, &ready_tx, &tail));
        }
        let usage = Arc::new(Usage::default());
        let monitor = usage::monitor(child.id(), Arc::clone(&usage));
        let mut server = Self { child, addr: None, spawned, usage, monitor, tail, stopped: false };
        // Wait for the ready line, polling so an early exit is reported at once.
        loop {
            match ready_rx.try_recv() {
                Ok(addr) => {
                    server.addr = addr;
                    return Ok(server);
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    server.check_alive()?;
                    bail!("webhookd closed its log without saying it was listening");
                }
                Err(mpsc::TryRecvError::Empty) => server.check_alive()?,
            }
            if spawned.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "webhookd did not start within {}s{}",
                    STARTUP_TIMEOUT.as_secs(),
                    server.last_line()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fails if the child has exited (it should run until we stop it).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                self.stopped = true;
                Err(anyhow!("webhookd exited unexpectedly ({status}){}", self.last_line()))
            }
        }
    }

    fn last_line(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.last().map(|line| format!(": {line}")).unwrap_or_default()
    }

    /// Resource use so far, sampled once more now (call just before `stop`).
    pub fn usage(&self) -> Totals {
        self.usage.sample(self.child.id());
        self.usage.totals()
    }

    /// Stops the child: SIGTERM, then SIGKILL if it is still running 10 s later.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.monitor.abort();
        terminate(&self.child);
        let deadline = Instant::now() + STOP_GRACE;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                self.stopped = true;
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.stopped = true;
                bail!("webhookd did not stop within {}s of SIGTERM; killed", STOP_GRACE.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        check_exit(status)
    }
}

fn check_exit(status: ExitStatus) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("webhookd exited with {status} after SIGTERM")
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::TERM);
    }
}

impl Drop for Webhookd {
    /// The error and Ctrl-C path: blocking is acceptable here, the bench is exiting anyway.
    fn drop(&mut self) {
        self.monitor.abort();
        if self.stopped {
            return;
        }
        terminate(&self.child);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's log to its end: reports readiness once, keeps the last lines, and keeps
/// draining so the child never blocks writing its log.
fn drain_log(
    stderr: impl std::io::Read,
    ready: &mpsc::Sender<Option<SocketAddr>>,
    tail: &Mutex<Vec<String>>,
) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("webhookd listening") {
            let _ = ready.send(listen_addr(&line));
        } else if line.contains("webhookd started without the API") {
            let _ = ready.send(None);
        }
        let mut tail = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tail.len() == TAIL_LINES {
            tail.remove(0);
        }
        tail.push(line);
    }
}

/// The token after `addr=` in a text log line.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    rest.split_whitespace().next()?.trim_matches('"').parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_listen_address() {
        let line = "2025-01-01T00:00:00Z  INFO webhookd::app: webhookd listening \
                    addr=127.0.0.1:40123 database=sqlite:///tmp/x.db";
        assert_eq!(super::listen_addr(line), Some("127.0.0.1:40123".parse().expect("addr")));
        assert_eq!(super::listen_addr("webhookd listening"), None);
    }
}
