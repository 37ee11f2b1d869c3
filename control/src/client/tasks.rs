//! Background tasks of one client peer (receive loop, reports, retransmissions): they
//! must not outlive it, whether it is closed or just dropped.

use tokio::task::JoinHandle;

#[derive(Debug, Default)]
pub(super) struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub(super) fn push(&mut self, t: JoinHandle<()>) {
        self.0.push(t);
    }

    pub(super) fn abort_all(&mut self) {
        for t in self.0.drain(..) {
            t.abort();
        }
    }
}

impl From<Vec<JoinHandle<()>>> for Tasks {
    fn from(v: Vec<JoinHandle<()>>) -> Self {
        Self(v)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}
