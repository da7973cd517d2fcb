//! Switchover and failover: the steps of the critical section (their order
//! is declared in `runbook.rs`).
//!
//! Ahead of the window the candidate (a fresh replacement, or the HA standby)
//! is a caught-up streaming replica. Then: CHECKPOINT the old primary, PAUSE
//! the endpoint, confirm the candidate holds the old primary's WAL up to where
//! it ended when the pause began, stop the old primary at once (the fence:
//! every process frozen, then killed, before anything is promoted), promote the candidate, prove
//! it takes writes, repoint the endpoint, RESUME. Then followers are
//! repointed (or rebuilt), a failover gets a new HA standby, and the old
//! primary stays stopped (retired). If the candidate cannot be shown to hold
//! every commit, nothing is stopped or promoted: the old primary, untouched,
//! takes writes again and the maintenance is postponed.
//!
//! Why no acknowledged commit can be lost, and never two primaries take
//! writes:
//! - Once PAUSE is done no client transaction is in flight, and clients reach
//!   a server only through the endpoint (servers listen on private Unix
//!   sockets), so every commit ever acknowledged was inserted into the old
//!   primary's WAL before `confirm_wal` commits a transaction of its own
//!   there with `synchronous_commit` on: that commit flushes every record
//!   before it (asynchronous commits included), and the flush position read
//!   after it, L, is past every acknowledged commit.
//! - `confirm_wal` waits until the candidate has received and flushed WAL up
//!   to L: the candidate holds every acknowledged commit before the old
//!   primary is touched.
//! - `fence` freezes every process of the old primary (the postmaster first,
//!   so it forks nothing more) and returns only when each is seen stopped,
//!   whatever system call it was in finished, before killing them all;
//!   `promote` comes after. A runner promotes only after it confirmed and fenced in its own
//!   run (`Fencing`): a resumed runner confirms again, and when it finds the
//!   old primary down and the candidate not promoted (its predecessor died
//!   between the fence and the promotion; the candidate's replay must stand
//!   still first, so a promotion already asked for has shown), it starts the
//!   old primary again (crash recovery replays its WAL: it was the only
//!   primary and it still is) and goes through the confirmation and the fence
//!   once more.
//! - WAL the old primary flushed after L by itself (autovacuum, checkpoints,
//!   running-xacts records) may reach a follower and not the candidate before
//!   the fence: such a follower has WAL past the new timeline's start
//!   and could never follow it, so `repoint_followers` rebuilds it instead.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::endpoint::{AdminConsole, Route};
use crate::model::Progress;
use crate::model::Lsn;
use crate::pg::{wait_until, PgError, Server};
use crate::provider::{StartWait, StopMode};
use crate::store::{InstanceRecord, InstanceRole, Writer};

use super::execute::Switch;
use super::fleet::{new_slot_name, plan_of, slot_of};
use super::run::Run;
use super::{Engine, EngineError, EngineResult, WAL_CONFIRM_TIMEOUT};

const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a candidate's replay must stand still before a runner trusts it is not being promoted.
const REPLAY_SETTLE: Duration = Duration::from_millis(100);
/// How long a repointed follower may take to stream from the new primary before it is rebuilt.
const FOLLOWER_REPOINT_TIMEOUT: Duration = Duration::from_secs(20);

impl Engine {
    /// Builds the replacement replica for a switchover (idempotent: an existing
    /// replacement is reused and only waited for).
    pub(super) async fn prepare_replacement(&self, run: &mut Run) -> EngineResult<Value> {
        let started = Instant::now();
        let candidate = self.candidate_instance(run).await?;
        let upstream = match run.database.following_id {
            Some(leader) => self.current_location(leader).await?,
            None => self.current_location(run.database.id).await?,
        };
        let slot = slot_of(&candidate)?.to_string();
        let plan = self.plan_after(run)?;
        let build = self.build_replica(&upstream, &candidate.location, &slot, &plan);
        self.with_progress(run.claim, build, || self.replacement_progress(&upstream, &slot, plan.name())).await?;
        self.record_progress(run.claim, &Progress::Ready { plan: plan.name().to_string() }).await;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(json!({ "candidate": candidate.location, "seconds": started.elapsed().as_secs_f64() }))
    }

    /// A failover's candidate is the HA standby: it must exist and be caught up.
    pub(super) async fn check_ha_standby(&self, run: &mut Run) -> EngineResult<Value> {
        let old = self.store.current_instance(run.database.id).await?;
        let standby = self
            .store
            .instance_in_role(run.database.id, InstanceRole::HaStandby)
            .await?
            .ok_or_else(|| EngineError::Invalid(format!("database {} has no HA standby to fail over to", run.database.name)))?;
        self.store.set_maintenance_instances(run.claim, Some(standby.id), Some(old.id)).await?;
        self.wait_caught_up(&old.location, slot_of(&standby)?).await?;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(json!({ "candidate": standby.location }))
    }

    /// The candidate becomes the database's current server (on the new plan,
    /// for a plan change) and the endpoint routes to it.
    ///
    /// The record and the route are written side by side (clients wait on
    /// both): if either fails or the runner dies between them, `repoint` runs
    /// again, and both writes are idempotent.
    pub(super) async fn adopt_candidate(&self, run: &Run, candidate: &InstanceRecord, route: &Route, admin: &mut AdminConsole) -> EngineResult<Value> {
        let plan = run.maintenance.target_plan.as_deref();
        let (recorded, routed) =
            tokio::join!(self.store.promote_instance(Writer::Runner(run.claim), run.database.id, candidate.id, plan), admin.repoint(route));
        recorded?;
        routed?;
        Ok(json!({ "route": route.target(), "plan": plan }))
    }

    /// Stops the database's HA standby and marks it retired (a new one is built on the new plan).
    pub(super) async fn retire_ha_standby(&self, run: &Run) -> EngineResult<Value> {
        let database_id = run.database.id;
        let Some(standby) = self.store.instance_in_role(database_id, InstanceRole::HaStandby).await? else {
            return Ok(json!({ "standby": null }));
        };
        self.provider.retire(&standby.location).await?;
        self.store.set_instance_role(Writer::Runner(run.claim), standby.id, InstanceRole::Retired).await?;
        Ok(json!({ "standby": standby.location }))
    }

    /// `confirm_wal`, inside the pause: the candidate has received the old
    /// primary's WAL up to its durable end L, so it holds every acknowledged
    /// commit (see the module note); otherwise the switch is called off
    /// (postponed) with the old primary untouched and writable.
    pub(super) async fn confirm_wal(&self, switch: &Switch, fencing: &mut Fencing) -> EngineResult<Value> {
        if switch.old_server.is_none() {
            self.replay_settled(&switch.candidate_server).await?;
        }
        if !switch.candidate_server.is_in_recovery().await? {
            *fencing = Fencing::Promoted;
            return Ok(json!({ "already_promoted": true }));
        }
        let reopened;
        let old = match &switch.old_server {
            Some(session) => session,
            None => {
                // Down while the candidate is not promoted: an earlier runner
                // fenced it and died before promoting. It is still the only
                // primary, so it starts again (crash recovery, no shutdown
                // checkpoint to read), and its end of WAL is confirmed anew.
                self.provider.start(&switch.old, StartWait::UntilServing).await?;
                reopened = self.connect(&switch.old).await?;
                &reopened
            }
        };
        let end = old.durable_wal_end().await?;
        let confirmed = wait_until(WAL_CONFIRM_TIMEOUT, Duration::from_millis(1), "WAL confirmation", || async {
            Ok(switch.candidate_server.received_lsn().await?.is_some_and(|received| received >= end))
        })
        .await;
        let received = switch.candidate_server.received_lsn().await?;
        match confirmed {
            Ok(()) => {
                *fencing = Fencing::Confirmed(end);
                Ok(json!({ "wal_end": end.to_string(), "received": received.map(|l| l.to_string()), "restarted_old": switch.old_server.is_none() }))
            }
            Err(_) => Err(EngineError::Postponed(format!(
                "the candidate received WAL up to {} only; the old primary's WAL ends at {end}",
                received.map(|l| l.to_string()).unwrap_or_else(|| "nothing".into())
            ))),
        }
    }

    /// Waits until the candidate's replay stands still. A runner that finds
    /// the old primary down is about to start it again if the candidate is
    /// in recovery, but its predecessor may have died right after asking for
    /// the promotion: a promotion ends soon after replay reaches the end of
    /// the WAL received, so once replay stands still, `pg_is_in_recovery`
    /// tells a promotion under way from none.
    pub(super) async fn replay_settled(&self, candidate: &Server) -> EngineResult<()> {
        let deadline = Instant::now() + WAL_CONFIRM_TIMEOUT;
        let mut last = candidate.replayed_lsn().await?;
        loop {
            tokio::time::sleep(REPLAY_SETTLE).await;
            let now = candidate.replayed_lsn().await?;
            if now == last {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PgError::Timeout("the candidate's replay to settle").into());
            }
            last = now;
        }
    }

    /// `fence`: the old primary killed at once (`StopMode::Kill`), once this
    /// runner has confirmed the candidate holds its WAL: no shutdown
    /// checkpoint to wait for, since nothing the candidate lacks needs to be
    /// written any more.
    pub(super) async fn fence(&self, switch: &Switch, fencing: &mut Fencing) -> EngineResult<Value> {
        if *fencing == Fencing::Unconfirmed {
            self.confirm_wal(switch, fencing).await?;
        }
        match *fencing {
            Fencing::Confirmed(end) => {
                self.provider.stop(&switch.old, StopMode::Kill).await?;
                *fencing = Fencing::Fenced;
                Ok(json!({ "stopped": "killed", "wal_end": end.to_string() }))
            }
            Fencing::Promoted => Ok(json!({ "already_promoted": true })),
            Fencing::Fenced => Ok(json!({ "already_fenced": true })),
            Fencing::Unconfirmed => Err(EngineError::Invalid("the fence found the candidate's WAL unconfirmed".into())),
        }
    }

    /// `promote`: the candidate becomes a primary and proves it takes writes,
    /// only once this runner has fenced the old primary.
    pub(super) async fn promote_candidate(&self, switch: &Switch, fencing: &mut Fencing) -> EngineResult<Value> {
        if matches!(fencing, Fencing::Unconfirmed | Fencing::Confirmed(_)) {
            self.fence(switch, fencing).await?;
        }
        self.provider.promote(&switch.candidate.location, &switch.candidate_server, PROMOTE_TIMEOUT).await?;
        switch.candidate_server.check_writable().await?;
        Ok(json!({ "timeline": switch.candidate_server.timeline().await? }))
    }

    /// Points every follower at the new primary; one that cannot follow it
    /// (its WAL goes past the new timeline's start, see the module note, or
    /// it does not stream from it in time) is rebuilt.
    pub(super) async fn repoint_followers(&self, run: &Run, switch: &Switch) -> EngineResult<Value> {
        let timeline_start = switch.candidate_server.timeline_start().await?;
        let new_host = self.provider.address(&switch.candidate.location).host.to_string();
        let mut report = Vec::new();
        for follower in self.store.followers_of(run.database.id).await? {
            let started = Instant::now();
            let instance = self.store.current_instance(follower.id).await?;
            let cannot_follow = match self.wal_past(&instance.location, timeline_start, &new_host).await {
                Ok(None) => self
                    .repoint_follower(&instance.location, &switch.candidate.location, &switch.candidate_server, slot_of(&instance)?)
                    .await
                    .err()
                    .map(|error| error.to_string()),
                Ok(Some(end)) => Some(format!("its WAL ends at {end}, past the new timeline's start")),
                Err(error) => Some(error.to_string()),
            };
            let how = match cannot_follow {
                None => "repointed".to_string(),
                Some(why) => {
                    tracing::warn!(follower = %follower.name, why, "follower cannot follow the new primary; rebuilding it");
                    self.rebuild_follower(Writer::Runner(run.claim), &follower.name, follower.id, &switch.candidate.location).await?;
                    format!("rebuilt ({why})")
                }
            };
            report.push(json!({ "follower": follower.name, "how": how, "seconds": started.elapsed().as_secs_f64() }));
        }
        Ok(json!({ "followers": report }))
    }

    /// Points the follower at `follower` to stream from the primary at
    /// `new_primary` through `slot`, and waits until it does.
    pub(super) async fn repoint_follower(&self, follower: &str, new_primary: &str, new_primary_server: &Server, slot: &str) -> EngineResult<()> {
        new_primary_server.ensure_slot(slot).await?;
        let server = self.connect(follower).await?;
        let address = self.provider.address(new_primary);
        let conninfo = format!("{} application_name={slot}", address.conninfo("postgres"));
        server.set_primary(&conninfo, Some(slot)).await?;
        let expected_host = address.host.to_string();
        wait_until(FOLLOWER_REPOINT_TIMEOUT, Duration::from_millis(20), "follower streaming from the new primary", || async {
            Ok(server.wal_receiver().await?.is_some_and(|r| r.status == "streaming" && r.sender_host.as_deref() == Some(expected_host.as_str())))
        })
        .await?;
        Ok(())
    }

    /// Where the follower at `follower` has WAL up to, if that is past
    /// `timeline_start` (where the new primary's timeline forked): it could
    /// never follow the new primary. Not when it streams from `new_host`
    /// already: an earlier runner repointed it, and its WAL is on the new
    /// timeline.
    async fn wal_past(&self, follower: &str, timeline_start: Option<Lsn>, new_host: &str) -> EngineResult<Option<Lsn>> {
        let Some(start) = timeline_start else { return Ok(None) };
        let server = self.connect(follower).await?;
        if server.wal_receiver().await?.is_some_and(|r| r.sender_host.as_deref() == Some(new_host)) {
            return Ok(None);
        }
        let end = server.received_lsn().await?.max(server.replayed_lsn().await?);
        Ok(end.filter(|end| *end > start))
    }

    /// Replaces a follower that cannot follow the new primary with a fresh copy of it.
    async fn rebuild_follower(&self, writer: Writer, name: &str, follower_id: i64, new_primary: &str) -> EngineResult<()> {
        let location = self.provider.new_location(name);
        let slot = new_slot_name(name);
        let instance = self.store.insert_instance(writer, follower_id, InstanceRole::Replacement, &location, Some(&slot)).await?;
        let old = self.current_location(follower_id).await?;
        let plan = plan_of(&self.store.database(follower_id).await?)?;
        self.build_replica(new_primary, &instance.location, &slot, &plan).await?;
        self.store.promote_instance(writer, follower_id, instance.id, None).await?;
        self.publish_routes().await?;
        self.provider.retire(&old).await?;
        Ok(())
    }
}

/// How far one runner got, inside its pause, towards promoting the
/// candidate: it promotes only what it confirmed and fenced itself, so a
/// resumed runner never trusts a predecessor's confirmation (the old primary
/// may have been started again since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fencing {
    Unconfirmed,
    /// The candidate holds the old primary's WAL up to here; the old primary still runs.
    Confirmed(Lsn),
    /// The old primary's postmaster is gone.
    Fenced,
    /// The candidate was found promoted (by an earlier runner).
    Promoted,
}

impl Engine {
    /// What the upstream server shows of a replacement being built: its base
    /// backup, then its streaming lag.
    async fn replacement_progress(&self, upstream: &str, slot: &str, plan: &str) -> Option<Progress> {
        let server = self.connect(upstream).await.ok()?;
        let plan = plan.to_string();
        if let Some(backup) = server.basebackup_progress(slot).await.ok()? {
            return Some(Progress::BaseBackup { plan, done_bytes: backup.streamed_bytes, total_bytes: backup.total_bytes });
        }
        let replica = server.replicas().await.ok()?.into_iter().find(|r| r.application_name == slot)?;
        Some(Progress::CatchingUp { plan, behind_bytes: replica.lag_bytes? })
    }
}
