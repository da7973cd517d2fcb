//! Which maintenances this process is preparing or running right now.
//!
//! A daemon reaches the runner from two sides: its own loop (preparing ahead,
//! running what is due) and the control API (`maintenance run`, an essential
//! plan change). Both act under the daemon's one node name, and a claim in the
//! state store cannot tell them apart, so without this registry the second
//! claim would take a new fencing token and fence the first task out mid-way.
//! Here the first caller owns the work and later callers join it: they wait
//! for its end and, for a run, report its outcome. Across processes the claim
//! (lease + fencing token) still decides who runs.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::{EngineError, ErrorKind, RunReport};

/// What a task does to a maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobKind {
    /// Building what the maintenance needs ahead of its window.
    Prepare,
    /// Carrying it out (preparing first if that is not done yet).
    Run,
}

/// How a job ended, as those who joined it see it.
#[derive(Debug, Clone)]
pub(super) enum JobEnd {
    Prepared,
    Ran(RunReport),
    Failed { kind: ErrorKind, message: String },
    /// Cancelled before it ended (a daemon stopping drops its preparations).
    Abandoned,
}

impl JobEnd {
    pub(super) fn of<T>(result: &Result<T, EngineError>, done: impl FnOnce(&T) -> JobEnd) -> JobEnd {
        match result {
            Ok(value) => done(value),
            Err(error) => JobEnd::Failed { kind: error.kind(), message: error.to_string() },
        }
    }
}

type Ended = watch::Receiver<Option<JobEnd>>;

/// The registry: one entry per maintenance with a task in this process.
#[derive(Default)]
pub(super) struct Jobs {
    active: Mutex<HashMap<i64, (JobKind, Ended)>>,
}

/// The answer to "may I start this job?".
pub(super) enum Entry<'a> {
    /// Yes: the caller does the work and ends the guard with its outcome.
    Mine(JobGuard<'a>),
    /// Another task of this process is already at it; wait for its end.
    Theirs(JobKind, Ended),
}

impl Jobs {
    pub(super) fn enter(&self, maintenance_id: i64, kind: JobKind) -> Entry<'_> {
        let mut active = self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((theirs, ended)) = active.get(&maintenance_id) {
            return Entry::Theirs(*theirs, ended.clone());
        }
        let (sender, ended) = watch::channel(None);
        active.insert(maintenance_id, (kind, ended));
        Entry::Mine(JobGuard { jobs: self, maintenance_id, sender: Some(sender) })
    }

    /// Is a task of this process preparing or running the maintenance?
    pub(super) fn is_active(&self, maintenance_id: i64) -> bool {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(&maintenance_id)
    }

    fn leave(&self, maintenance_id: i64) {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&maintenance_id);
    }
}

/// Waits for the end of a job another task owns.
pub(super) async fn ended(mut ended: Ended) -> JobEnd {
    match ended.wait_for(Option::is_some).await {
        Ok(end) => end.clone().unwrap_or(JobEnd::Abandoned),
        Err(_) => JobEnd::Abandoned,
    }
}

/// Ownership of a job: ending it (or dropping it, if the task is cancelled)
/// removes the entry first, then wakes those who joined.
pub(super) struct JobGuard<'a> {
    jobs: &'a Jobs,
    maintenance_id: i64,
    sender: Option<watch::Sender<Option<JobEnd>>>,
}

impl JobGuard<'_> {
    pub(super) fn finish(mut self, end: JobEnd) {
        self.end(end);
    }

    fn end(&mut self, end: JobEnd) {
        if let Some(sender) = self.sender.take() {
            self.jobs.leave(self.maintenance_id);
            sender.send_replace(Some(end));
        }
    }
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        self.end(JobEnd::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_caller_joins_and_sees_the_end() {
        let jobs = Jobs::default();
        let Entry::Mine(guard) = jobs.enter(7, JobKind::Prepare) else { panic!("the first caller owns the job") };
        assert!(jobs.is_active(7));
        let Entry::Theirs(kind, ended_rx) = jobs.enter(7, JobKind::Run) else { panic!("the second caller joins") };
        assert_eq!(kind, JobKind::Prepare);
        let waiter = tokio::spawn(ended(ended_rx));
        guard.finish(JobEnd::Prepared);
        assert!(matches!(waiter.await.unwrap(), JobEnd::Prepared));
        assert!(!jobs.is_active(7), "the entry is gone once the job ended");
        assert!(matches!(jobs.enter(7, JobKind::Run), Entry::Mine(_)));
    }

    #[tokio::test]
    async fn a_cancelled_owner_is_seen_as_abandoned() {
        let jobs = Jobs::default();
        let Entry::Mine(guard) = jobs.enter(1, JobKind::Run) else { panic!() };
        let Entry::Theirs(_, ended_rx) = jobs.enter(1, JobKind::Run) else { panic!() };
        drop(guard);
        assert!(matches!(ended(ended_rx).await, JobEnd::Abandoned));
        assert!(!jobs.is_active(1));
    }
}
