//! Which connections of a listener are still open: the accept loop and
//! each connection hold a [`Tracker`]; the listener's owner closes them all
//! and waits through [`Connections`]. A leaf module: the listeners
//! (`server`, `rocketmq`) and the connections both use it.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Held by a listener's accept loop and, one each, by its connections:
/// [`Connections::close_all`] cancels `closed` and waits until every
/// holder is dropped (the accept loop ended, every socket closed).
#[derive(Clone)]
pub(crate) struct Tracker {
    /// Cancelled when the listener's owner closes all its connections.
    pub(crate) closed: CancellationToken,
    _alive: mpsc::Sender<()>,
}

impl Tracker {
    /// A tracker for one new connection. Its token is a child of the
    /// listener's: waiting on it locks no state shared with the other
    /// connections (they run on other threads).
    pub(crate) fn for_connection(&self) -> Tracker {
        Tracker {
            closed: self.closed.child_token(),
            _alive: self._alive.clone(),
        }
    }
}

/// The owner's side of a listener's [`Tracker`]s.
pub(crate) struct Connections {
    closed: CancellationToken,
    gone: mpsc::Receiver<()>,
}

impl Connections {
    /// Closes every connection and waits until each has dropped its
    /// tracker, and the accept loop its own (stop accepting first).
    pub(crate) async fn close_all(&mut self) {
        self.closed.cancel();
        let _ = self.gone.recv().await;
    }
}

/// A tracker for an accept loop, and its owner's side.
pub(crate) fn track_connections() -> (Tracker, Connections) {
    let closed = CancellationToken::new();
    let (alive, gone) = mpsc::channel(1);
    (
        Tracker {
            closed: closed.clone(),
            _alive: alive,
        },
        Connections { closed, gone },
    )
}
