//! Connection slots: the `server.maxConnections` cap, and who gives way when it is reached.
//!
//! Waiting for a free slot alone lets a flood of clients that connect and then do nothing
//! (no TLS handshake, or no request after it) hold every slot until their timeouts run out,
//! while Gatekeeper's next connection waits behind them in the kernel backlog and its
//! webhook call times out. So at the cap the newcomer takes the slot of the least useful
//! connection: the oldest among those still in the handshake or that never sent a request,
//! else the one idle the longest between keep-alive requests. A connection serving a
//! request is never closed for a newcomer; when every slot is serving, the newcomer waits.
//!
//! A real client completes its handshake and sends its request within milliseconds, so it
//! is never the oldest unproductive connection for long: a flood has to open connections
//! faster than `maxConnections` per handshake time to push it out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::metrics::{Metrics, ShedPhase};

/// What a connection is doing, as far as giving way at the cap is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// TCP accepted, TLS handshake not finished.
    Handshaking = 0,
    /// Handshake done, no request received yet.
    AwaitingRequest = 1,
    /// A request is being answered.
    Serving = 2,
    /// Between requests on a keep-alive connection.
    Idle = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Handshaking,
            1 => Phase::AwaitingRequest,
            2 => Phase::Serving,
            _ => Phase::Idle,
        }
    }

    /// Lower gives way first; `None` never gives way.
    fn shed_rank(self) -> Option<u8> {
        match self {
            Phase::Handshaking | Phase::AwaitingRequest => Some(0),
            Phase::Idle => Some(1),
            Phase::Serving => None,
        }
    }

    fn metric(self) -> ShedPhase {
        match self {
            Phase::Handshaking => ShedPhase::Handshake,
            Phase::AwaitingRequest => ShedPhase::NoRequest,
            Phase::Serving | Phase::Idle => ShedPhase::Idle,
        }
    }
}

/// The connection-slot table of one listener.
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    open: Mutex<Table>,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Arc<SlotState>>,
}

/// One connection's phase, shared between its task and the table.
pub(crate) struct SlotState {
    phase: AtomicU8,
    /// Milliseconds since the table's epoch when the phase last changed.
    since_ms: AtomicU64,
    shed: CancellationToken,
}

impl SlotState {
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Completes when this connection has been chosen to give way to a newcomer.
    pub(crate) fn shed(&self) -> WaitForCancellationFutureOwned {
        self.shed.clone().cancelled_owned()
    }
}

/// A held slot; dropping it frees the slot.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    id: u64,
    slots: Arc<Slots>,
    pub state: Arc<SlotState>,
}

impl Slot {
    /// Records what the connection does now.
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.state
            .since_ms
            .store(self.slots.now_ms(), Ordering::Release);
        self.state.phase.store(phase as u8, Ordering::Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.slots.open.lock() {
            t.entries.remove(&self.id);
        }
    }
}

impl Slots {
    pub(crate) fn new(max_connections: usize, metrics: Arc<Metrics>) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max_connections)),
            open: Mutex::new(Table::default()),
            epoch: Instant::now(),
            metrics,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a connection just accepted (in [`Phase::Handshaking`]). At the cap, asks
    /// the least useful open connection to give way, then waits for a slot to free.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.shed_one();
                // The semaphore is never closed, so this only waits.
                match self.permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => unreachable_closed(),
                }
            }
        };
        let state = Arc::new(SlotState {
            phase: AtomicU8::new(Phase::Handshaking as u8),
            since_ms: AtomicU64::new(self.now_ms()),
            shed: CancellationToken::new(),
        });
        let id = match self.open.lock() {
            Ok(mut t) => {
                t.next_id += 1;
                let id = t.next_id;
                t.entries.insert(id, state.clone());
                id
            }
            // A poisoned table only loses the ability to shed; the cap still holds.
            Err(_) => 0,
        };
        Slot {
            _permit: permit,
            id,
            slots: self.clone(),
            state,
        }
    }

    /// Asks one connection to give way, unless one already asked has not left yet.
    fn shed_one(&self) {
        let Ok(t) = self.open.lock() else { return };
        if t.entries.values().any(|s| s.shed.is_cancelled()) {
            return;
        }
        let victim = t
            .entries
            .values()
            .filter_map(|s| {
                let rank = s.phase().shed_rank()?;
                Some((rank, s.since_ms.load(Ordering::Acquire), s))
            })
            .min_by_key(|(rank, since, _)| (*rank, *since))
            .map(|(_, _, s)| s.clone());
        drop(t);
        if let Some(s) = victim {
            self.metrics.connection_shed(s.phase().metric());
            s.shed.cancel();
        }
    }

    /// Open connections.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.lock().map(|t| t.entries.len()).unwrap_or(0)
    }
}

fn unreachable_closed() -> ! {
    // `Slots` owns the semaphore and never calls `close()` on it.
    panic!("connection slot semaphore closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slots(n: usize) -> Arc<Slots> {
        Slots::new(n, Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn below_the_cap_nobody_gives_way() {
        let s = slots(2);
        let a = s.acquire().await;
        let b = s.acquire().await;
        assert!(!a.state.shed.is_cancelled() && !b.state.shed.is_cancelled());
        assert_eq!(s.open(), 2);
        drop(a);
        assert_eq!(s.open(), 1);
    }

    #[tokio::test]
    async fn the_oldest_connection_without_a_request_gives_way_first() {
        let s = slots(3);
        let idle = s.acquire().await;
        idle.set_phase(Phase::Idle);
        let old = s.acquire().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let young = s.acquire().await;
        young.set_phase(Phase::AwaitingRequest);
        // At the cap: the newcomer waits until the chosen one leaves.
        let s2 = s.clone();
        let newcomer = tokio::spawn(async move { s2.acquire().await });
        old.state.shed().await;
        assert!(!idle.state.shed.is_cancelled());
        assert!(!young.state.shed.is_cancelled());
        assert!(!newcomer.is_finished());
        drop(old);
        let n = tokio::time::timeout(Duration::from_secs(5), newcomer)
            .await
            .expect("newcomer gets the freed slot")
            .expect("join");
        assert_eq!(n.state.phase(), Phase::Handshaking);
    }

    #[tokio::test]
    async fn idle_keep_alive_gives_way_after_unproductive_ones() {
        let s = slots(2);
        let serving = s.acquire().await;
        serving.set_phase(Phase::Serving);
        let idle = s.acquire().await;
        idle.set_phase(Phase::Idle);
        let s2 = s.clone();
        let newcomer = tokio::spawn(async move { s2.acquire().await });
        idle.state.shed().await;
        assert!(!serving.state.shed.is_cancelled());
        drop(idle);
        let _n = tokio::time::timeout(Duration::from_secs(5), newcomer)
            .await
            .expect("slot")
            .expect("join");
    }

    #[tokio::test]
    async fn a_serving_connection_never_gives_way() {
        let s = slots(1);
        let serving = s.acquire().await;
        serving.set_phase(Phase::Serving);
        let s2 = s.clone();
        let newcomer = tokio::spawn(async move { s2.acquire().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!serving.state.shed.is_cancelled());
        assert!(
            !newcomer.is_finished(),
            "newcomer waits while every slot serves"
        );
        drop(serving);
        let _n = tokio::time::timeout(Duration::from_secs(5), newcomer)
            .await
            .expect("slot")
            .expect("join");
    }
}
