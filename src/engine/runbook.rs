//! Runbooks as data: every strategy's steps, in order, each with what is done
//! when it fails, in one place a reader can follow top to bottom.
//!
//! The step log stores each step's name; failpoints use the same names
//! (`PGMAINT_FAILPOINT=<step>:<before|after>[:exit|panic|stall=<ms>]`). Every step
//! observes the servers before it acts, so a runner killed anywhere can run
//! it again: the kill drills walk every declared step of every runbook.
//!
//! The pause is one combinator for all of them: once `pause` is done (by this
//! runner or one before it) and until `resume` is, any failure runs the
//! step's recovery and then RESUMEs the endpoint, always. A recovery that
//! itself fails is [`super::EngineError::Recovery`]: a server-side failure
//! an operator must look at, never mistaken for bad input.

use std::fmt;

use crate::model::Strategy;

/// Every step a runbook can take, by the name the step log and failpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The `[hooks] before_maintenance` command (nothing when none is configured).
    BeforeHook,
    /// Build the replacement replica (a switchover's preparation).
    PrepareReplacement,
    /// The HA standby exists and has caught up (a failover's preparation).
    CheckStandby,
    /// An empty primary on the new plan (an essential copy's preparation).
    PrepareTarget,
    /// Restart the HA standby first: clients never see it.
    RestartStandby,
    /// CHECKPOINT the primary so a shutdown checkpoint (a restart) or a crash
    /// recovery (a fenced primary started again) has little to do.
    Checkpoint,
    /// The database refuses writes while its data is copied.
    BlockWrites,
    /// Copy and verify the data into the new server.
    CopyData,
    /// PAUSE the database in the endpoint.
    Pause,
    /// Fast stop then start of the server.
    Restart,
    /// The restarted server serves again.
    WaitReady,
    /// Stop the old primary at once (every process frozen, then killed): the fence, once the
    /// candidate holds its WAL and before anything is promoted.
    Fence,
    /// The candidate received the old primary's WAL up to its durable end,
    /// read inside the pause (a switch); the candidate Patroni chose holds the
    /// WAL position `mark_wal` read (Patroni).
    ConfirmWal,
    /// Promote the candidate (an unfollow: the follower itself) and prove it takes writes.
    Promote,
    /// An unfollowed database is recorded as forked from its leader and owns its objects.
    Fork,
    /// The candidate becomes current and the endpoint routes to it.
    Repoint,
    /// RESUME the endpoint.
    Resume,
    /// A release (`Switchover NAME`...) for every app attached to the database.
    Release,
    /// Followers stream from the new primary (or are rebuilt).
    RepointFollowers,
    /// The HA standby on the old plan is retired (a plan change).
    RetireStandby,
    /// A new HA standby streams from the new primary.
    RebuildStandby,
    /// The old server is retired: stopped, removed after the grace period.
    RetireOld,
    /// The leader's replication slot for an unfollowed database is dropped.
    DropLeaderSlot,
    /// Recovery: the old primary starts again (nothing was promoted).
    Rollback,
    /// The switch was called off and the maintenance re-planned.
    Postponed,
    /// The `[hooks] after_maintenance` command: the maintenance's check.
    AfterHook,
    /// Patroni: each replica in turn restarted (or the host hook run on it)
    /// and waited healthy, before anything touches the leader.
    RollReplicas,
    /// Patroni: one member done (recorded per member, so a resumed run skips it).
    RollMember,
    /// Patroni: the pre-checks, and the candidate chosen and recorded.
    ChooseCandidate,
    /// Patroni: the leader's WAL position once the endpoint is paused.
    MarkWal,
    /// Patroni: `POST /switchover`, and the candidate takes writes.
    Handover,
    /// Patroni: the old leader, now a replica, restarted (or hooked) last.
    RollOldLeader,
}

impl Step {
    pub const ALL: [Step; 32] = [
        Step::BeforeHook,
        Step::PrepareReplacement,
        Step::CheckStandby,
        Step::PrepareTarget,
        Step::RestartStandby,
        Step::Checkpoint,
        Step::BlockWrites,
        Step::CopyData,
        Step::Pause,
        Step::Restart,
        Step::WaitReady,
        Step::Fence,
        Step::ConfirmWal,
        Step::Promote,
        Step::Fork,
        Step::Repoint,
        Step::Resume,
        Step::Release,
        Step::RepointFollowers,
        Step::RetireStandby,
        Step::RebuildStandby,
        Step::RetireOld,
        Step::DropLeaderSlot,
        Step::Rollback,
        Step::Postponed,
        Step::AfterHook,
        Step::RollReplicas,
        Step::RollMember,
        Step::ChooseCandidate,
        Step::MarkWal,
        Step::Handover,
        Step::RollOldLeader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::PrepareReplacement => "prepare_replacement",
            Step::CheckStandby => "check_standby",
            Step::PrepareTarget => "prepare_target",
            Step::RestartStandby => "restart_standby",
            Step::Checkpoint => "checkpoint",
            Step::BlockWrites => "block_writes",
            Step::CopyData => "copy_data",
            Step::Pause => "pause",
            Step::Restart => "restart",
            Step::WaitReady => "wait_ready",
            Step::Fence => "fence",
            Step::ConfirmWal => "confirm_wal",
            Step::Promote => "promote",
            Step::Fork => "fork",
            Step::Repoint => "repoint",
            Step::Resume => "resume",
            Step::Release => "release",
            Step::RepointFollowers => "repoint_followers",
            Step::RetireStandby => "retire_standby",
            Step::RebuildStandby => "rebuild_standby",
            Step::RetireOld => "retire_old",
            Step::DropLeaderSlot => "drop_leader_slot",
            Step::Rollback => "rollback",
            Step::Postponed => "postponed",
            Step::BeforeHook => "before_hook",
            Step::AfterHook => "after_hook",
            Step::RollReplicas => "roll_replicas",
            Step::RollMember => "roll_member",
            Step::ChooseCandidate => "choose_candidate",
            Step::MarkWal => "mark_wal",
            Step::Handover => "handover",
            Step::RollOldLeader => "roll_old_leader",
        }
    }

    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.name() == name)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a declared step applies to the database at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// The database has an HA standby.
    HasHaStandby,
    /// The database's plan (after the maintenance) is an HA tier.
    HaTierAfter,
}

/// What is done when a step fails (inside the pause, RESUME follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing to undo: the run stops; the step is retried by a later run.
    Retry,
    /// Restart: the server is started again, whatever state it was left in.
    StartServer,
    /// Switch: forward if the candidate was promoted (it becomes current and
    /// the endpoint routes to it), else back (the old primary starts again).
    ForwardOrBack,
    /// Copy: the old server takes writes again and the new one is retired.
    CallOffCopy,
    /// Copy's repoint: forward if the store already names the new server,
    /// else the copy is called off.
    ForwardIfAdopted,
    /// Patroni: whoever Patroni made leader is current, and the endpoint
    /// routes there (pgmaint never picks a leader itself).
    FollowLeader,
}

/// One step of a runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    pub step: Step,
    pub when: When,
    pub recovery: Recovery,
}

const fn always(step: Step, recovery: Recovery) -> Declared {
    Declared { step, when: When::Always, recovery }
}

const fn only(when: When, step: Step, recovery: Recovery) -> Declared {
    Declared { step, when, recovery }
}

/// The runbooks, one per kind of maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runbook {
    Restart,
    Switchover,
    Failover,
    /// A follower's switchover: both servers are replicas, nothing is promoted.
    FollowerMove,
    /// A plan change from the standard tier up: a switchover to a replacement
    /// on the new plan; an HA standby on the old plan is retired, and on an HA
    /// tier a new one is built on the new plan.
    PlanChange,
    /// A plan change within the essential tier: copy into a new server while writes are refused.
    EssentialCopy,
    /// An adopted Patroni cluster, member by member: replicas, then a Patroni
    /// switchover inside the endpoint's pause, then the old leader.
    PatroniRolling,
    /// An adopted Patroni cluster whose pending settings must reach the leader
    /// first: the leader restarted in place inside the pause, then the replicas.
    PatroniLeaderFirst,
    /// `databases unfollow`: a follower becomes a writable database of its own, in place.
    Unfollow,
}

use Recovery::{CallOffCopy, FollowLeader, ForwardIfAdopted, ForwardOrBack, Retry, StartServer};
use Step::*;

const RESTART: &[Declared] = &[
    always(BeforeHook, Retry),
    only(When::HasHaStandby, RestartStandby, Retry),
    always(Checkpoint, Retry),
    always(Pause, Retry),
    always(Restart, StartServer),
    always(WaitReady, StartServer),
    always(Resume, Retry),
    always(AfterHook, Retry),
];

/// A switchover or failover: the before hook, the critical section from the
/// pause to the release, the runbook's own tail, the after hook.
macro_rules! switch_steps {
    ($($tail:expr),* $(,)?) => {
        &[
            always(BeforeHook, Retry),
            always(Checkpoint, Retry),
            always(Pause, Retry),
            always(ConfirmWal, ForwardOrBack),
            always(Fence, ForwardOrBack),
            always(Promote, ForwardOrBack),
            always(Repoint, ForwardOrBack),
            always(Resume, Retry),
            always(Release, Retry),
            always(RepointFollowers, Retry),
            $($tail,)*
            always(AfterHook, Retry),
        ]
    };
}

const SWITCHOVER: &[Declared] = switch_steps![always(RetireOld, Retry)];
const FAILOVER: &[Declared] = switch_steps![only(When::HaTierAfter, RebuildStandby, Retry), always(RetireOld, Retry)];
const PLAN_CHANGE: &[Declared] = switch_steps![
    only(When::HasHaStandby, RetireStandby, Retry),
    only(When::HaTierAfter, RebuildStandby, Retry),
    always(RetireOld, Retry),
];

const FOLLOWER_MOVE: &[Declared] = &[
    always(BeforeHook, Retry),
    always(Pause, Retry),
    always(Repoint, Retry),
    always(Resume, Retry),
    always(RetireOld, Retry),
    always(AfterHook, Retry),
];

const ESSENTIAL_COPY: &[Declared] = &[
    always(BeforeHook, Retry),
    always(BlockWrites, CallOffCopy),
    always(CopyData, CallOffCopy),
    always(Pause, CallOffCopy),
    always(Repoint, ForwardIfAdopted),
    always(Resume, Retry),
    always(Release, Retry),
    always(RetireOld, Retry),
    always(AfterHook, Retry),
];

/// Patroni decides who leads; pgmaint decides when, with the endpoint paused.
/// A replica that fails stops the run before the leader is touched.
const PATRONI_ROLLING: &[Declared] = &[
    always(BeforeHook, Retry),
    always(RollReplicas, Retry),
    always(ChooseCandidate, Retry),
    always(Checkpoint, Retry),
    always(Pause, FollowLeader),
    always(MarkWal, FollowLeader),
    always(Handover, FollowLeader),
    always(ConfirmWal, FollowLeader),
    always(Repoint, FollowLeader),
    always(Resume, Retry),
    always(Release, Retry),
    always(RollOldLeader, Retry),
    always(AfterHook, Retry),
];

/// An unfollow has no pause: the follower's clients only read, and it is
/// promoted in place, so no write is held back while it happens and there is
/// never a second server of the database to fence (its leader is another
/// database, untouched). Each step observes first: `promote` only a server
/// still in recovery, `fork` only what the store still records as following,
/// `drop_leader_slot` only a slot still on the leader.
/// Lowering `max_connections` and its kin: a replica may not run a smaller
/// value than its primary, so the leader restarts first (Patroni keeps it
/// leader), with the endpoint paused around it; then each replica in turn.
const PATRONI_LEADER_FIRST: &[Declared] = &[
    always(BeforeHook, Retry),
    always(Checkpoint, Retry),
    always(Pause, FollowLeader),
    always(Restart, FollowLeader),
    always(WaitReady, FollowLeader),
    always(Repoint, FollowLeader),
    always(Resume, Retry),
    always(RollReplicas, Retry),
    always(AfterHook, Retry),
];

const UNFOLLOW: &[Declared] = &[
    always(BeforeHook, Retry),
    always(Promote, Retry),
    always(Fork, Retry),
    always(DropLeaderSlot, Retry),
    only(When::HaTierAfter, RebuildStandby, Retry),
    always(AfterHook, Retry),
];

impl Runbook {
    pub const ALL: [Runbook; 9] = [
        Runbook::Restart,
        Runbook::Switchover,
        Runbook::Failover,
        Runbook::FollowerMove,
        Runbook::PlanChange,
        Runbook::EssentialCopy,
        Runbook::PatroniRolling,
        Runbook::PatroniLeaderFirst,
        Runbook::Unfollow,
    ];

    /// The runbook for a maintenance: its strategy, whether the database is
    /// a follower, and whether it changes plan.
    pub fn choose(strategy: Strategy, is_follower: bool, plan_change: bool) -> Runbook {
        match strategy {
            Strategy::Restart => Runbook::Restart,
            Strategy::Copy => Runbook::EssentialCopy,
            Strategy::Rolling => Runbook::PatroniRolling,
            Strategy::RollingLeaderFirst => Runbook::PatroniLeaderFirst,
            Strategy::Unfollow => Runbook::Unfollow,
            Strategy::Switchover | Strategy::Failover if is_follower => Runbook::FollowerMove,
            Strategy::Switchover | Strategy::Failover if plan_change => Runbook::PlanChange,
            Strategy::Failover => Runbook::Failover,
            Strategy::Switchover => Runbook::Switchover,
        }
    }

    /// The step run ahead of the window, if any (it is part of the run too,
    /// when the run comes before the preparation finished).
    pub fn preparation(self) -> Option<Step> {
        match self {
            Runbook::Restart | Runbook::PatroniRolling | Runbook::PatroniLeaderFirst | Runbook::Unfollow => None,
            Runbook::Failover => Some(CheckStandby),
            Runbook::Switchover | Runbook::FollowerMove | Runbook::PlanChange => Some(PrepareReplacement),
            Runbook::EssentialCopy => Some(PrepareTarget),
        }
    }

    /// The steps of the run itself, in order.
    pub fn steps(self) -> &'static [Declared] {
        match self {
            Runbook::Restart => RESTART,
            Runbook::Switchover => SWITCHOVER,
            Runbook::Failover => FAILOVER,
            Runbook::FollowerMove => FOLLOWER_MOVE,
            Runbook::PlanChange => PLAN_CHANGE,
            Runbook::EssentialCopy => ESSENTIAL_COPY,
            Runbook::PatroniRolling => PATRONI_ROLLING,
            Runbook::PatroniLeaderFirst => PATRONI_LEADER_FIRST,
            Runbook::Unfollow => UNFOLLOW,
        }
    }

    /// Whether the step records of the paused section are batched (written
    /// after RESUME). Not for Patroni: its own switchover takes seconds, so a
    /// few milliseconds of records matter nothing, and a resumed runner must
    /// find the WAL position `mark_wal` recorded before the handover.
    pub fn batches_paused_records(self) -> bool {
        !matches!(self, Runbook::PatroniRolling | Runbook::PatroniLeaderFirst)
    }

    /// Every step of this runbook a runner can be stopped at: the preparation, then the run's.
    pub fn all_steps(self) -> Vec<Step> {
        self.preparation().into_iter().chain(self.steps().iter().map(|d| d.step)).collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Runbook::Restart => "restart",
            Runbook::Switchover => "switchover",
            Runbook::Failover => "failover",
            Runbook::FollowerMove => "follower move",
            Runbook::PlanChange => "plan change",
            Runbook::EssentialCopy => "essential copy",
            Runbook::PatroniRolling => "patroni rolling",
            Runbook::PatroniLeaderFirst => "patroni leader first",
            Runbook::Unfollow => "unfollow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_round_trip_and_are_unique() {
        for step in Step::ALL {
            assert_eq!(Step::from_name(step.name()), Some(step));
        }
        let mut names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Step::ALL.len());
        assert_eq!(Step::from_name("nonsense"), None);
    }

    #[test]
    fn every_runbook_that_pauses_resumes_and_no_step_repeats() {
        for runbook in Runbook::ALL {
            let steps: Vec<Step> = runbook.all_steps();
            let mut unique = steps.clone();
            unique.sort_by_key(|s| s.name());
            unique.dedup();
            assert_eq!(unique.len(), steps.len(), "{} repeats a step", runbook.name());
            let pause = steps.iter().position(|s| *s == Pause);
            let resume = steps.iter().position(|s| *s == Resume);
            // Only an unfollow holds no write back (see `UNFOLLOW`).
            assert_eq!(pause.is_some(), runbook != Runbook::Unfollow, "{}: pauses or not", runbook.name());
            match (pause, resume) {
                (Some(pause), Some(resume)) => assert!(pause < resume, "{}: resume before pause", runbook.name()),
                (None, None) => {}
                _ => panic!("{}: a pause without a resume, or the other way round", runbook.name()),
            }
        }
    }

    #[test]
    fn every_run_starts_with_the_before_hook_and_ends_with_the_after_hook() {
        for runbook in Runbook::ALL {
            let steps = runbook.steps();
            assert_eq!(steps.first().map(|d| (d.step, d.when)), Some((BeforeHook, When::Always)), "{}", runbook.name());
            assert_eq!(steps.last().map(|d| (d.step, d.when)), Some((AfterHook, When::Always)), "{}", runbook.name());
        }
    }

    #[test]
    fn confirmation_comes_before_the_fence_and_the_fence_before_promotion() {
        for runbook in [Runbook::Switchover, Runbook::Failover, Runbook::PlanChange] {
            let steps = runbook.all_steps();
            let at = |step| steps.iter().position(|s| *s == step).unwrap();
            // Inside the pause: the candidate holds the old primary's WAL before
            // the old primary is stopped, and it is stopped before anything is promoted.
            assert!(at(Pause) < at(ConfirmWal) && at(ConfirmWal) < at(Fence) && at(Fence) < at(Promote) && at(Promote) < at(Repoint));
            assert!(at(Resume) < at(Release), "{}: the release is made once writes resumed", runbook.name());
        }
    }

    #[test]
    fn patroni_touches_the_leader_only_after_every_replica_and_inside_the_pause() {
        let steps = Runbook::PatroniRolling.all_steps();
        let at = |step| steps.iter().position(|s| *s == step).unwrap();
        assert!(at(RollReplicas) < at(ChooseCandidate) && at(ChooseCandidate) < at(Pause));
        assert!(at(Pause) < at(MarkWal) && at(MarkWal) < at(Handover) && at(Handover) < at(ConfirmWal) && at(ConfirmWal) < at(Repoint) && at(Repoint) < at(Resume));
        assert!(at(Resume) < at(RollOldLeader));
        assert!(!steps.contains(&RollMember), "per-member records are not steps of their own");
    }

    #[test]
    fn runbooks_follow_the_strategy_table() {
        assert_eq!(Runbook::choose(Strategy::Switchover, true, false), Runbook::FollowerMove);
        assert_eq!(Runbook::choose(Strategy::Switchover, false, true), Runbook::PlanChange);
        assert_eq!(Runbook::choose(Strategy::Switchover, false, false), Runbook::Switchover);
        assert_eq!(Runbook::choose(Strategy::Failover, false, false), Runbook::Failover);
        assert_eq!(Runbook::choose(Strategy::Copy, false, true), Runbook::EssentialCopy);
        assert_eq!(Runbook::choose(Strategy::Restart, true, false), Runbook::Restart);
        assert_eq!(Runbook::choose(Strategy::Unfollow, true, false), Runbook::Unfollow);
    }
}
