//! A child's resource use, sampled from /proc every 100 ms: peak resident memory (`VmHWM`, the
//! kernel's own high-water mark, so short spikes between samples are not missed) and CPU time
//! (`utime + stime`). The last sample is taken just before the child is stopped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);

/// The latest figures for one process.
#[derive(Default)]
pub struct Usage {
    peak_rss_kb: AtomicU64,
    cpu_ticks: AtomicU64,
}

/// Totals over every webhookd process of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// The largest peak of any one process.
    pub peak_rss_mb: f64,
    /// CPU seconds summed over processes.
    pub cpu_s: f64,
}

impl Usage {
    /// Reads /proc once; a process that has exited leaves the last figures in place.
    pub fn sample(&self, pid: u32) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = peak_rss_kb(&status) {
                self.peak_rss_kb.fetch_max(kb, Relaxed);
            }
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(ticks) = cpu_ticks(&stat) {
                self.cpu_ticks.fetch_max(ticks, Relaxed);
            }
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            peak_rss_mb: self.peak_rss_kb.load(Relaxed) as f64 / 1024.0,
            cpu_s: self.cpu_ticks.load(Relaxed) as f64
                / rustix::param::clock_ticks_per_second() as f64,
        }
    }
}

impl Totals {
    pub fn add(self, other: Totals) -> Totals {
        Totals {
            peak_rss_mb: self.peak_rss_mb.max(other.peak_rss_mb),
            cpu_s: self.cpu_s + other.cpu_s,
        }
    }
}

/// Samples `pid` until the returned handle is aborted.
pub fn monitor(pid: u32, usage: Arc<Usage>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(INTERVAL);
        loop {
            ticker.tick().await;
            usage.sample(pid);
        }
    })
}

/// `VmHWM` (peak RSS) in kB from /proc/PID/status; `VmRSS` if the kernel lacks it.
fn peak_rss_kb(status: &str) -> Option<u64> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.trim_start();
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    field("VmHWM:").or_else(|| field("VmRSS:"))
}

/// `utime + stime` in clock ticks from /proc/PID/stat. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status_and_stat() {
        let status =
            "Name:\twebhookd\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t  40000 kB\n";
        assert_eq!(peak_rss_kb(status), Some(51_200));
        assert_eq!(peak_rss_kb("VmRSS:\t 42 kB\n"), Some(42));
        let stat = "4242 (web hook) d) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }
}
