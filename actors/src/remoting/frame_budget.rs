//! The process-wide budget of memory for request frames still arriving
//! (`incomplete_frame_budget_bytes`), and one connection's share of it.
//!
//! Why: a connection buffers a frame until its last byte is in. With
//! `max_connections` (10 000) peers each holding an unfinished frame of up
//! to `max_frame_size` (16 MiB), that was up to 160 GiB — 40 connections
//! sending 15 MiB of a 16 MiB frame and then nothing grew the broker by
//! 629 MB. Now a frame that does not arrive whole in one read must first be
//! admitted: it takes its announced size from the budget, or, while the
//! budget is spent, its connection stops reading (the rest waits in the
//! kernel's socket buffers and TCP slows the sender) until admitted frames
//! complete or are dropped. This is Kafka's `queued.max.request.bytes`
//! memory pool, applied only to frames that straddle reads.
//!
//! Admitted frames never wait on the budget, so they can always finish:
//! no deadlock. A frame is admitted while the budget is not spent, even if
//! it takes it past the limit, so the memory held is at most the budget
//! plus about one `max_frame_size` per arbiter thread. A frame waiting for
//! admission still has to be complete within `frame_read_timeout` of its
//! first byte, as any other. A frame read whole in one go touches nothing
//! here, and neither does one of at most 64 KiB (`READ_RESERVE_STEP`) or
//! a larger one until 64 KiB of it is in (see [`FrameReservation::admit`]).
//!
//! How: the connection's decoder ([`BudgetedCodec`]) asks for admission
//! when a frame is left incomplete and gives the bytes back when it is
//! decoded; its socket reader ([`BudgetedRead`]) reads nothing while the
//! frame waits; its read stream retries the admission every 20 ms. Used by
//! [`super::connection::Connection`]; the accounting is plain Rust, tested
//! without a runtime.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use skylark_codec::{FrameCodec, ProtocolError, RawFrame, LENGTH_PREFIX_LEN, READ_RESERVE_STEP};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

/// Bytes taken from the budget by admitted incomplete frames, over every
/// connection of the process.
static INCOMPLETE_FRAME_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of incomplete request frames admitted now, over every connection
/// of this process (their announced sizes).
pub fn incomplete_frame_bytes() -> usize {
    INCOMPLETE_FRAME_BYTES.load(Ordering::Relaxed)
}

/// What one connection holds of the budget: the announced size of the
/// frame now partly in its read buffer, once admitted. Dropping it gives
/// the bytes back.
#[derive(Debug)]
pub(crate) struct FrameReservation {
    /// The count it takes from: [`INCOMPLETE_FRAME_BYTES`] but in tests.
    count: &'static AtomicUsize,
    held: usize,
    /// Frames up to this size, and larger ones until this much of them is
    /// buffered, are not counted: [`READ_RESERVE_STEP`] but in tests.
    step: usize,
}

impl Default for FrameReservation {
    fn default() -> Self {
        FrameReservation {
            count: &INCOMPLETE_FRAME_BYTES,
            held: 0,
            step: READ_RESERVE_STEP,
        }
    }
}

impl FrameReservation {
    /// Whether the incomplete frame at the start of `buffered` may be read
    /// on: yes if admitted already, or if `budget` is not spent (then its
    /// size, length prefix included, is taken).
    ///
    /// The decoder never holds more than what is buffered plus one step
    /// for a frame (`reserve_toward`), so a frame of at most one step, or
    /// a larger one until one step of it is in, costs at most two steps of
    /// memory per connection: it takes nothing and never waits. So small
    /// requests cut by a read boundary are never held back, and a peer
    /// cannot take a 16 MiB share of the budget with a 4-byte prefix: it
    /// must send a step (64 KiB) of the frame first.
    pub(crate) fn admit(&mut self, buffered: &[u8], budget: usize) -> bool {
        if self.held > 0 {
            return true;
        }
        let Some(prefix) = buffered.get(..LENGTH_PREFIX_LEN) else {
            return true;
        };
        let mut len = [0u8; LENGTH_PREFIX_LEN];
        len.copy_from_slice(prefix);
        let size = LENGTH_PREFIX_LEN + u32::from_be_bytes(len) as usize;
        if size <= self.step || buffered.len() < self.step {
            return true;
        }
        if self.count.load(Ordering::Relaxed) >= budget {
            return false;
        }
        self.count.fetch_add(size, Ordering::Relaxed);
        self.held = size;
        true
    }

    /// The admitted frame is complete (or refused): its bytes go back.
    pub(crate) fn release(&mut self) {
        if self.held > 0 {
            self.count.fetch_sub(self.held, Ordering::Relaxed);
            self.held = 0;
        }
    }
}

impl Drop for FrameReservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// One connection's admission state, shared by its decoder and its
/// socket reader ([`BudgetedCodec`], [`BudgetedRead`]) and the read stream
/// that retries a waiting frame.
#[derive(Debug)]
pub(crate) struct Admission {
    reservation: RefCell<FrameReservation>,
    budget: usize,
    /// The incomplete frame in the read buffer was not admitted: the
    /// socket is not read until it is.
    waiting: Cell<bool>,
}

impl Admission {
    /// A connection's admission to a process-wide budget of `budget` bytes.
    pub(crate) fn new(budget: usize) -> Rc<Admission> {
        Rc::new(Admission {
            reservation: RefCell::new(FrameReservation::default()),
            budget,
            waiting: Cell::new(false),
        })
    }

    /// Whether the incomplete frame is waiting for the budget.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.get()
    }

    /// Tries to admit the incomplete frame at the start of `buffered`;
    /// true if it is admitted (reading may go on).
    pub(crate) fn admit(&self, buffered: &[u8]) -> bool {
        let ok = self.reservation.borrow_mut().admit(buffered, self.budget);
        self.waiting.set(!ok);
        ok
    }
}

/// [`FrameCodec`] taking an incomplete frame's size from the budget (or
/// marking it waiting) and giving it back once the frame is decoded or
/// refused. A frame decoded whole costs one branch more.
pub(crate) struct BudgetedCodec {
    pub(crate) codec: FrameCodec,
    pub(crate) admission: Rc<Admission>,
}

impl Decoder for BudgetedCodec {
    type Item = RawFrame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, ProtocolError> {
        let decoded = self.codec.decode(src);
        match decoded {
            Ok(None) if !src.is_empty() => {
                self.admission.admit(src);
            }
            _ => self.admission.reservation.borrow_mut().release(),
        }
        decoded
    }
}

/// The socket's read half, not read while the frame in the buffer waits for
/// the budget: its bytes stay in the kernel, and TCP slows the sender. The
/// read stream retries the admission (and so wakes this) on a timer.
pub(crate) struct BudgetedRead<R> {
    pub(crate) inner: R,
    pub(crate) admission: Rc<Admission>,
}

impl<R: AsyncRead + Unpin> AsyncRead for BudgetedRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.admission.waiting() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 8 bytes (one test step) of a frame announcing `len`.
    fn prefix(len: u32) -> Vec<u8> {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(&[0x92, 0, 0, 0]);
        v
    }

    #[test]
    fn frames_are_admitted_while_the_budget_lasts_and_give_it_back() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let held = || COUNT.load(Ordering::Relaxed);
        let new = || FrameReservation {
            count: &COUNT,
            held: 0,
            step: 8,
        };
        let budget = 1000;
        let (mut a, mut b, mut c) = (new(), new(), new());
        // A prefix not all in takes nothing; nor does a large frame's
        // prefix before a step of it is in, nor a frame of one step.
        assert!(c.admit(&[0, 0], budget));
        assert!(c.admit(&prefix(1500)[..5], budget));
        assert!(c.admit(&prefix(4)[..6], budget));
        assert_eq!(held(), 0);
        // Admitted past the limit while it was not spent ...
        assert!(a.admit(&prefix(1500), budget));
        assert_eq!(held(), 1504);
        // ... so the next frame waits, and an admitted one goes on.
        assert!(!b.admit(&prefix(10), budget));
        assert!(a.admit(&prefix(1500), budget));
        assert_eq!(held(), 1504);
        a.release();
        assert_eq!(held(), 0);
        assert!(b.admit(&prefix(10), budget));
        assert_eq!(held(), 14);
        drop(b);
        assert_eq!(held(), 0);
    }
}
