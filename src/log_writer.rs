//! The server's log written by a thread of its own: a request hands its
//! line over a channel instead of writing it to stderr while the client
//! waits. One write per request to a pipe (a supervisor's, a test's) was 6%
//! of a small query's CPU on the server, on the request's path.
//!
//! Lines are written in the order they were logged. The first line after
//! a quiet spell is written at once; the thread then rests for [`LINGER`]
//! and writes what came meanwhile in one go. While it rests, handing a line
//! over wakes nobody: under steady requests, waking the thread for every
//! line cost as much of the server's time as writing it.
//! [`LogWriter::flush`] waits until every line handed over so far is
//! written (at exit). When stderr
//! takes nothing (a pipe nobody reads), at most [`QUEUED_LINES`] wait; later
//! ones are dropped and counted, and the count is written once stderr takes
//! lines again: requests neither stall on the log nor grow memory without
//! bound.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

/// Lines that may wait for the writer thread.
pub const QUEUED_LINES: usize = 65_536;

/// How long the thread rests after writing, so that a busy server's lines
/// are written a batch at a time instead of waking the thread for each.
pub const LINGER: Duration = Duration::from_millis(10);

/// Lines dropped because that many were waiting.
static DROPPED: AtomicU64 = AtomicU64::new(0);

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// Log lines for tracing's fmt layer, which a thread writes to stderr.
pub struct LogWriter {
    sender: SyncSender<Message>,
}

impl LogWriter {
    /// Starts the thread writing to stderr.
    pub fn stderr() -> Self {
        let (sender, receiver) = sync_channel(QUEUED_LINES);
        let started = std::thread::Builder::new()
            .name("pitlake-log".into())
            .spawn(move || write_lines(receiver));
        if let Err(e) = started {
            // Without a thread the lines are lost: say so once.
            eprintln!("warning: cannot start the log writer thread: {e}");
        }
        LogWriter { sender }
    }

    /// Waits (at most `timeout`) until every line logged so far is written.
    pub fn flush(&self, timeout: Duration) {
        let (done, wait) = sync_channel(1);
        if self.sender.try_send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

/// Writes what arrives until every sender is gone. stderr is locked only
/// while lines are written: `eprintln!` elsewhere (the server's address, a
/// warning) must not wait behind an idle log.
fn write_lines(receiver: Receiver<Message>) {
    let stderr = std::io::stderr();
    while let Ok(message) = receiver.recv() {
        let mut out = std::io::BufWriter::new(stderr.lock());
        let mut next = Some(message);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = receiver.try_recv().ok();
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "pitlake: {dropped} log lines dropped: stderr took none while {QUEUED_LINES} waited"
            );
        }
        let _ = out.flush();
        drop(out);
        std::thread::sleep(LINGER);
    }
}

/// One log line being formatted; handed to the thread when dropped.
pub struct Line<'a> {
    bytes: Vec<u8>,
    sender: &'a SyncSender<Message>,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            let line = std::mem::take(&mut self.bytes);
            if let Err(TrySendError::Full(_)) = self.sender.try_send(Message::Line(line)) {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl LogWriter {
    /// A line to format, handed to the thread when dropped (tracing's fmt
    /// layer takes `|| writer.line()` as its writer).
    pub fn line(&self) -> Line<'_> {
        Line {
            bytes: Vec::with_capacity(256),
            sender: &self.sender,
        }
    }
}
