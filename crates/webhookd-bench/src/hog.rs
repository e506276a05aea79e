//! `--cpu-hog`: a neighbour that keeps one core busy for the whole run, to measure webhookd's
//! latency beside a CPU-heavy process. It is a plain thread of the bench (outside the async
//! runtime) spinning until the run ends; the kernel schedules it like any other runnable thread,
//! so on a two-core machine webhookd, the receiver, the bench client and the database share what
//! is left.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

pub struct CpuHog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    started: Instant,
}

impl CpuHog {
    pub fn start() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("cpu-hog".into()).spawn(move || {
            // Real work the optimizer cannot remove, checking the flag every few microseconds.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut rounds: u64 = 0;
            while !flag.load(Relaxed) {
                for _ in 0..4096 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                rounds = rounds.wrapping_add(std::hint::black_box(x) & 1);
            }
            rounds
        })?;
        Ok(Self { stop, thread: Some(thread), started: Instant::now() })
    }

    /// Stops the thread; returns how long it ran.
    pub fn stop(mut self) -> f64 {
        self.halt();
        self.started.elapsed().as_secs_f64()
    }

    fn halt(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CpuHog {
    /// The error and Ctrl-C path.
    fn drop(&mut self) {
        self.halt();
    }
}
