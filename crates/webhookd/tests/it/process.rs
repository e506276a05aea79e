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
}

impl ServeProcess {
    /// Starts `webhookd serve --listen 127.0.0.1:0 --database <database> <extra…>` and waits for
    /// it to log its address (empty with `--no-api`). Its stderr is drained by a thread so it never blocks on a full pipe.
    pub fn start(database: &str, extra: &[&str]) -> ServeProcess {
        let mut child = webhookd()
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ =
                        found.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                } else if line.contains("webhookd started without the API") {
                    let _ = found.send(String::new());
                }
            }
        });
        let addr = address.recv_timeout(Duration::from_secs(30)).expect("serve logged its address");
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        ServeProcess { child, addr, stdout }
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

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
