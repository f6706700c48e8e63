//! The writer thread's queue: writes in the order they were handed over, taken in batches.
//!
//! A write that wakes the writer (most writes somebody waits for) is taken at once, with
//! everything queued before it. One that does not — a detached write (nobody waits for it), or
//! a waited one whose caller can wait a moment — rides with the next: after each batch the
//! writer waits up to `linger` for the next waking write, and writes handed over meanwhile ride
//! with it, or are taken when that wait ends. Only a writer asleep without a deadline (idle for
//! `linger` after its last batch) is woken by a write that does not wake, and it then lingers
//! from that moment. So at low rates, settling a delivery costs the writer no wake-up of its
//! own. What this delays: such a write's commit, by at most `linger`; it never reorders writes.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub(super) struct WriteQueue<J> {
    state: Mutex<State<J>>,
    ready: Condvar,
}

struct State<J> {
    /// Each write with whether it wakes the writer.
    jobs: VecDeque<(J, bool)>,
    /// Writes in `jobs` that wake the writer.
    waking: usize,
    closed: bool,
    /// The writer sleeps without a deadline: a detached write must wake it.
    asleep: bool,
}

impl<J> WriteQueue<J> {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                waking: 0,
                closed: false,
                asleep: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues `job` after every write handed over before it; `Err(job)` once closed.
    pub fn push(&self, job: J, wakes: bool) -> Result<(), J> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(job);
        }
        state.jobs.push_back((job, wakes));
        state.waking += usize::from(wakes);
        let wake = wakes || state.asleep;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// No more writes; the writer takes what is queued, then [`WriteQueue::next_batch`] ends.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next batch, up to `max` writes in order: as soon as a waking write is queued, `max`
    /// writes are, or the queue is closed; writes that do not wake alone once `linger` has
    /// passed since the call (or since they woke an idle writer). `None` once closed and empty.
    pub fn next_batch(&self, max: usize, linger: Duration) -> Option<Vec<J>> {
        let mut state = self.state.lock();
        let mut deadline = Instant::now() + linger;
        loop {
            // A full batch has all the company it can take: it does not wait for more.
            if state.waking > 0 || state.jobs.len() >= max || (state.closed && !state.jobs.is_empty()) {
                return Some(take(&mut state, max));
            }
            if state.closed {
                return None;
            }
            if Instant::now() < deadline {
                self.ready.wait_until(&mut state, deadline);
            } else if !state.jobs.is_empty() {
                return Some(take(&mut state, max));
            } else {
                state.asleep = true;
                self.ready.wait(&mut state);
                state.asleep = false;
                deadline = Instant::now() + linger;
            }
        }
    }
}

fn take<J>(state: &mut State<J>, max: usize) -> Vec<J> {
    let count = state.jobs.len().min(max);
    let batch: Vec<(J, bool)> = state.jobs.drain(..count).collect();
    state.waking -= batch.iter().filter(|(_, wakes)| *wakes).count();
    batch.into_iter().map(|(job, _)| job).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_waited_write_takes_everything_before_it_in_order() {
        let queue = WriteQueue::new();
        queue.push("detached 1", false).unwrap();
        queue.push("detached 2", false).unwrap();
        queue.push("waited", true).unwrap();
        queue.push("detached 3", false).unwrap();
        assert_eq!(
            queue.next_batch(10, HOUR),
            Some(vec!["detached 1", "detached 2", "waited", "detached 3"])
        );
    }

    #[test]
    fn batches_are_bounded_and_keep_their_order() {
        let queue = WriteQueue::new();
        for i in 0..5 {
            queue.push(i, true).unwrap();
        }
        assert_eq!(queue.next_batch(2, HOUR), Some(vec![0, 1]));
        assert_eq!(queue.next_batch(2, HOUR), Some(vec![2, 3]));
        assert_eq!(queue.next_batch(2, HOUR), Some(vec![4]));
    }

    /// With an hour's linger, what the writer takes cannot depend on the machine's speed: the
    /// detached write is taken only when a waited one arrives, from another thread.
    #[test]
    fn a_detached_write_waits_for_a_waited_one() {
        let queue = Arc::new(WriteQueue::new());
        queue.push("detached", false).unwrap();
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.next_batch(10, HOUR))
        };
        queue.push("waited", true).unwrap();
        assert_eq!(writer.join().unwrap(), Some(vec!["detached", "waited"]));
    }

    #[test]
    fn a_full_batch_of_detached_writes_does_not_wait() {
        let queue = WriteQueue::new();
        for i in 0..3 {
            queue.push(i, false).unwrap();
        }
        assert_eq!(queue.next_batch(2, HOUR), Some(vec![0, 1]));
    }

    #[test]
    fn detached_writes_alone_are_taken_once_the_linger_is_over() {
        let queue = WriteQueue::new();
        queue.push("detached", false).unwrap();
        assert_eq!(queue.next_batch(10, Duration::ZERO), Some(vec!["detached"]));
    }

    #[test]
    fn closing_hands_over_what_is_queued_then_ends() {
        let queue = Arc::new(WriteQueue::new());
        queue.push("detached", false).unwrap();
        queue.close();
        assert_eq!(queue.push("late", true), Err("late"), "refused once closed");
        assert_eq!(queue.next_batch(10, HOUR), Some(vec!["detached"]));
        assert_eq!(queue.next_batch(10, HOUR), None);

        let idle = Arc::new(WriteQueue::<u8>::new());
        let writer = {
            let idle = idle.clone();
            std::thread::spawn(move || idle.next_batch(10, HOUR))
        };
        idle.close();
        assert_eq!(writer.join().unwrap(), None, "an idle writer wakes to end");
    }

    /// An idle writer (asleep without a deadline) is woken by a detached write, which then
    /// lingers: with no linger, it is taken at once.
    #[test]
    fn a_detached_write_wakes_an_idle_writer() {
        let queue = Arc::new(WriteQueue::new());
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.next_batch(10, Duration::ZERO))
        };
        while !queue.state.lock().asleep {
            std::thread::yield_now();
        }
        queue.push("detached", false).unwrap();
        assert_eq!(writer.join().unwrap(), Some(vec!["detached"]));
    }
}
