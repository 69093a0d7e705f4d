//! The console sink: lines written to stderr by the log's own thread, as
//! many per `write` as are queued (under load one system call carries many
//! lines); a full queue makes logged requests wait (without blocking the
//! runtime) rather than drop lines. Dropping it drains the queue.

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, Semaphore};

pub(super) struct Console {
    /// Lines (and the byte permits they hold) to the writer thread; `None`
    /// only while dropping.
    lines: Option<mpsc::Sender<(Vec<u8>, u32)>>,
    /// Bytes that may still be queued.
    room: Arc<Semaphore>,
    writer: Option<JoinHandle<()>>,
}

/// Lines, and bytes, waiting for the writer; a request waits (asynchronously:
/// the runtime's threads keep serving, `/health` included) while either is
/// full, so the log slows logged decisions down rather than dropping lines,
/// as OPA's does. A line carries the whole input, hence the byte bound.
const QUEUE: usize = 4096;
const QUEUE_BYTES: u32 = 64 << 20;

impl Drop for Console {
    /// Lets the writer drain what is queued, then waits for it.
    fn drop(&mut self) {
        drop(self.lines.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Writes queued lines to stderr, as many per `write` as are waiting: under
/// load one system call carries many lines; an idle log writes at once.
fn write_lines(mut lines: mpsc::Receiver<(Vec<u8>, u32)>, room: Arc<Semaphore>) {
    let mut batch = Vec::with_capacity(64 << 10);
    while let Some((line, permits)) = lines.blocking_recv() {
        batch.extend_from_slice(&line);
        let mut held = permits as usize;
        while batch.len() < (1 << 20) {
            match lines.try_recv() {
                Ok((line, permits)) => {
                    batch.extend_from_slice(&line);
                    held += permits as usize;
                }
                Err(_) => break,
            }
        }
        // A closed stderr drops the lines: logging never fails a decision.
        let _ = std::io::stderr().lock().write_all(&batch);
        room.add_permits(held);
        batch.clear();
        if batch.capacity() > 4 << 20 {
            batch = Vec::with_capacity(64 << 10); // one huge line: let it go
        }
    }
}

impl Console {
    pub(super) fn start() -> Console {
        let (lines, receiver) = mpsc::channel(QUEUE);
        let room = Arc::new(Semaphore::new(QUEUE_BYTES as usize));
        let writer_room = Arc::clone(&room);
        let writer = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_lines(receiver, writer_room))
            .ok();
        Console {
            lines: writer.is_some().then_some(lines),
            room,
            writer,
        }
    }

    /// Queues `line` for stderr; waits while the queue is full. Without the
    /// writer thread (it could not start), writes the line here.
    pub(super) async fn write(&self, line: Vec<u8>) {
        let Some(lines) = &self.lines else {
            let _ = std::io::stderr().lock().write_all(&line);
            return;
        };
        // A line over the byte bound waits for the whole bound.
        let permits = u32::try_from(line.len())
            .unwrap_or(u32::MAX)
            .min(QUEUE_BYTES);
        match self.room.acquire_many(permits).await {
            Ok(permit) => permit.forget(), // the writer gives them back
            Err(_) => return,              // closed: only while dropping
        }
        if lines.send((line, permits)).await.is_err() {
            self.room.add_permits(permits as usize);
        }
    }
}
