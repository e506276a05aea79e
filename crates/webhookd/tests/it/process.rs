//! `webhookd` as a child process, for tests of what only a real process shows: exit codes,
//! signals, crashes, several nodes on one database.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub fn webhookd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command
        .env_remove("WEBHOOKD_DATABASE")
        .env_remove("RUST_LOG")
        .env("WEBHOOKD_SECRET_KEY", crate::harness::TEST_SECRET_KEY);
    command
}

/// `webhookd org create` on `database`; returns the API key.
pub fn create_org(database: &str) -> String {
    let output = webhookd()
        .args(["org", "create", "--name", "proc", "--database", database])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    created["api_key"].as_str().unwrap().to_string()
}

/// A running `webhookd serve`; killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    /// `host:port` of its API.
    pub addr: String,
    pub stdout: Option<BufReader<std::process::ChildStdout>>,
    /// Every line it wrote to stderr so far.
    stderr_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `webhookd serve --listen 127.0.0.1:0 --database <database> <extra…>` and waits for
    /// it to log its address (empty with `--no-api`). Its stderr is drained by a thread so it never blocks on a full pipe.
    pub fn start(database: &str, extra: &[&str]) -> ServeProcess {
        Self::start_with_env(database, extra, &[])
    }

    /// [`ServeProcess::start`] with extra environment variables.
    pub fn start_with_env(database: &str, extra: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let (globals, serve): (Vec<&str>, Vec<&str>) = split_globals(extra);
        let mut command = webhookd();
        command
            .args(globals)
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(serve)
            .envs(env.iter().copied());
        Self::spawn(command)
    }

    /// Runs `command` (a `webhookd serve` on port 0, however it is wrapped) and waits for it to
    /// log its address.
    pub fn spawn(mut command: Command) -> ServeProcess {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (found, address) = std::sync::mpsc::channel();
        let stderr_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = stderr_lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ =
                        found.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                } else if let Some(rest) = line.split("\"addr\":\"").nth(1) {
                    let _ = found.send(rest.split('"').next().unwrap_or_default().to_string());
                } else if line.contains("webhookd started without the API") {
                    let _ = found.send(String::new());
                }
            }
        });
        let addr = address.recv_timeout(Duration::from_secs(30)).expect("serve logged its address");
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        ServeProcess { child, addr, stdout, stderr_lines }
    }

    /// What it logged so far, one line per line.
    pub fn stderr_log(&self) -> std::io::Cursor<Vec<u8>> {
        std::io::Cursor::new(self.stderr_lines.lock().unwrap().join("\n").into_bytes())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

/// `--log-format X` goes before the subcommand; every other flag after it.
fn split_globals<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut globals = Vec::new();
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if *arg == "--log-format" {
            globals.push(*arg);
            globals.extend(iter.next());
        } else {
            rest.push(*arg);
        }
    }
    (globals, rest)
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
