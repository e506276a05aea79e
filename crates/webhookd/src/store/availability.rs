//! What this node knows of its database's condition, shared by everything that uses the store:
//! the API answers from it at once while the database is known unreachable (503, not a timeout
//! per request), `/readyz` reports it, and a watcher (`maintenance::watch_database`) probes until
//! the fault is gone. Whoever meets a fault reports it; nothing polls while the database is well.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

use super::error::Fault;

const UP: u8 = 0;
const DISK_FULL: u8 = 1;
const UNAVAILABLE: u8 = 2;

#[derive(Debug, Default)]
pub struct Availability {
    state: AtomicU8,
    /// Woken when a fault is reported while the database was up.
    faulted: Notify,
}

impl Availability {
    /// The fault the database is known to have, `None` while it is up.
    pub fn fault(&self) -> Option<Fault> {
        match self.state.load(Ordering::Acquire) {
            DISK_FULL => Some(Fault::DiskFull),
            UNAVAILABLE => Some(Fault::Unavailable),
            _ => None,
        }
    }

    /// A request met `fault`. The first report after a healthy spell wakes the watcher.
    pub fn report(&self, fault: Fault) {
        let code = match fault {
            Fault::DiskFull => DISK_FULL,
            Fault::Unavailable => UNAVAILABLE,
        };
        let before = self.state.swap(code, Ordering::AcqRel);
        if before != code {
            match fault {
                Fault::DiskFull => tracing::error!(
                    "the database is out of space: writes are refused (507) until space is freed"
                ),
                Fault::Unavailable => tracing::error!(
                    "the database is unavailable: requests are answered 503 until it is back"
                ),
            }
        }
        if before == UP {
            self.faulted.notify_one();
        }
    }

    /// The database answered as it should: whatever fault was known is gone.
    pub fn recovered(&self) {
        if self.state.swap(UP, Ordering::AcqRel) != UP {
            tracing::info!("the database is available again");
        }
    }

    /// Waits until a fault is reported (at once if one is known).
    pub async fn faulted(&self) {
        let notified = self.faulted.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.fault().is_some() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reported_fault_is_known_until_recovery_and_wakes_the_watcher_once() {
        let availability = Availability::default();
        assert_eq!(availability.fault(), None);
        availability.report(Fault::DiskFull);
        assert_eq!(availability.fault(), Some(Fault::DiskFull));
        availability.faulted().await; // returns at once: a fault is known
        availability.report(Fault::Unavailable);
        assert_eq!(availability.fault(), Some(Fault::Unavailable));
        availability.recovered();
        assert_eq!(availability.fault(), None);
    }
}
