//! Catch-up-then-live subscriptions over any [`EventStore`], written once for every backend.
//!
//! A subscription reads the ledger from its start position in pages until it reaches the head,
//! then follows the store's live broadcast. It subscribes to the broadcast *before* its last
//! catch-up read and drops live records it has already delivered, so the seam has neither a gap
//! nor a duplicate. Delivery goes through a bounded channel; a subscriber that stops reading
//! blocks its own task only, until the live broadcast overtakes it by
//! [`limits::LIVE_BUFFER_RECORDS`], at which point it gets [`StoreError::SubscriberTooSlow`]
//! with the position to resume from.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cairn_ledger::{Position, Record};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::{EventStore, limits};

/// Records in position order, then live records as they become durable. Ends with an error
/// item if the store fails or the subscriber falls too far behind; dropping it stops the work.
pub struct Subscription {
    receiver: mpsc::Receiver<Result<Arc<Record>, StoreError>>,
    live: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// Waits until the subscription has caught up with the head it found and follows the live
    /// feed; from then on, records arrive as they become durable. Returns false if the
    /// subscription ended before that.
    pub async fn wait_live(&mut self) -> bool {
        self.live.wait_for(|live| *live).await.is_ok()
    }

    /// The next record, or `None` once the subscription has ended.
    pub async fn next_record(&mut self) -> Option<Result<Arc<Record>, StoreError>> {
        self.receiver.recv().await
    }
}

impl futures::Stream for Subscription {
    type Item = Result<Arc<Record>, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(context)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to every record from position `from` (0 means from the first), delivering through a
/// buffer of `buffer` records (clamped to 1..=[`limits::SUBSCRIPTION_BUFFER_RECORDS_MAX`]).
pub fn subscribe<S: EventStore + ?Sized>(
    store: Arc<S>,
    from: Position,
    buffer: usize,
) -> Subscription {
    let buffer = buffer.clamp(1, limits::SUBSCRIPTION_BUFFER_RECORDS_MAX);
    let (sender, receiver) = mpsc::channel(buffer);
    let (live_sender, live) = watch::channel(false);
    let task = tokio::spawn(async move {
        let start = Position(from.0.max(1));
        if let Err(error) = run(&*store, start, &sender, &live_sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    Subscription {
        receiver,
        live,
        task,
    }
}

type Sender = mpsc::Sender<Result<Arc<Record>, StoreError>>;

/// Why delivery stopped without an error to report.
struct Closed;

async fn run<S: EventStore + ?Sized>(
    store: &S,
    start: Position,
    sender: &Sender,
    live_state: &watch::Sender<bool>,
) -> Result<(), StoreError> {
    let mut next = start;
    // Catch up without holding a live receiver, which would overflow during a long catch-up.
    match catch_up(store, &mut next, sender).await? {
        Ok(()) => {}
        Err(Closed) => return Ok(()),
    }
    let mut live = store.live();
    // Records made durable between the last read and `live()` are read here, and arrive on the
    // broadcast as well; the position check below drops those second copies.
    if let Err(Closed) = catch_up(store, &mut next, sender).await? {
        return Ok(());
    }
    live_state.send_replace(true);
    loop {
        match live.recv().await {
            Ok(record) => {
                let position = record.position();
                if position < next {
                    continue;
                }
                if position > next {
                    // The broadcast never skips; a gap here means a backend bug, and reading from
                    // the store keeps the subscriber correct regardless.
                    if let Err(Closed) = catch_up_to(store, &mut next, position, sender).await? {
                        return Ok(());
                    }
                    if next > position {
                        continue;
                    }
                }
                if position != next {
                    return Err(StoreError::Corrupt {
                        position: Some(next),
                        detail: format!("the live feed skipped from {next} to {position}"),
                    });
                }
                if sender.send(Ok(record)).await.is_err() {
                    return Ok(());
                }
                next = next.next();
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return Err(StoreError::SubscriberTooSlow {
                    resume_from: next,
                    lag_max: limits::LIVE_BUFFER_RECORDS,
                });
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(StoreError::Unavailable("the store was closed".into()));
            }
        }
    }
}

/// Reads and delivers from `next` until a read comes back empty.
async fn catch_up<S: EventStore + ?Sized>(
    store: &S,
    next: &mut Position,
    sender: &Sender,
) -> Result<Result<(), Closed>, StoreError> {
    catch_up_to(store, next, Position(u64::MAX), sender).await
}

/// Reads and delivers from `next` up to, not including, `until`, or until a read is empty.
async fn catch_up_to<S: EventStore + ?Sized>(
    store: &S,
    next: &mut Position,
    until: Position,
    sender: &Sender,
) -> Result<Result<(), Closed>, StoreError> {
    while *next < until {
        let wanted = (until.0 - next.0).min(limits::READ_RECORDS_MAX as u64) as usize;
        let records = store.read_all(*next, wanted).await?;
        if records.is_empty() {
            break;
        }
        for record in records {
            if record.position() != *next {
                return Err(StoreError::Corrupt {
                    position: Some(*next),
                    detail: format!(
                        "read returned position {} where {next} was due",
                        record.position()
                    ),
                });
            }
            if sender.send(Ok(record)).await.is_err() {
                return Ok(Err(Closed));
            }
            *next = next.next();
        }
    }
    Ok(Ok(()))
}
