//! Follower switchover by hand, the reference's third way to change a plan:
//! create a follower on the new plan, wait until it is caught up, quiesce the
//! app, `unfollow` it (it becomes a writable database of its own, forked from
//! its leader), then `promote` it to the app's DATABASE_URL. Followers of the
//! old primary keep following the old primary unless `--repoint-followers`
//! moves the ones that can follow the new one.
//!
//! `unfollow` is a maintenance run at once, `Runbook::Unfollow`: its steps
//! (`promote`, `fork`, `drop_leader_slot`; `rebuild_standby` is the fleet's)
//! are here, each observing before it acts.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::model::Strategy;
use crate::store::{DatabaseRecord, Writer};

use super::control::DatabaseInfo;
use super::fleet::slot_of;
use super::releases::{attachment_key, ReleaseOutcome};
use super::run::Run;
use super::{Engine, EngineError, EngineResult};

/// How long `pg_promote` may take when a follower is unfollowed.
const UNFOLLOW_PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the leader's walsender for an unfollowed database may take to go.
const SLOT_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// The reason an unfollow's maintenance records (no planned reason applies).
const UNFOLLOW_REASON: &str = "unfollow";
/// A follower within this many commits of its leader counts as caught up (the reference's figure).
pub const CAUGHT_UP_COMMITS: i64 = 200;
/// The attachment a promotion moves: the app's main URL.
const MAIN_ATTACHMENT: &str = "DATABASE_URL";
/// The pooler attachment with the default name, which moves with a promotion.
const DEFAULT_POOLER_ATTACHMENT: &str = "DATABASE_CONNECTION_POOL_URL";

/// What `databases promote` did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    pub database: String,
    pub app: String,
    /// The database that was the app's DATABASE_URL before, if any.
    pub previous: Option<String>,
    /// Config keys now pointing at the promoted database.
    pub moved: Vec<String>,
    /// The key the previous database stays attached under, if it was free.
    pub previous_attached_as: Option<String>,
    /// Other keys of the app that still point at the previous database: re-attach them by hand.
    pub reattach: Vec<String>,
    /// Followers of the previous database and what became of them.
    pub followers: Vec<FollowerFate>,
    pub release: ReleaseOutcome,
}

/// A follower of the previous primary after a promotion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FollowerFate {
    pub name: String,
    pub fate: Fate,
    /// The same in words: `repointed`, `not repointed (<why>)` or `needs re-creation`.
    pub outcome: String,
    /// Why it could not be repointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What became of a follower of the previous primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// It now follows the promoted database.
    Repointed,
    /// Repointing it failed: it was put back on its old leader.
    NotRepointed,
    /// `--repoint-followers` was not given: it still follows the previous primary.
    NeedsRecreation,
}

impl FollowerFate {
    fn repointed(name: String) -> FollowerFate {
        FollowerFate { name, fate: Fate::Repointed, outcome: "repointed".into(), error: None }
    }

    fn not_repointed(name: String, error: String) -> FollowerFate {
        FollowerFate { name, fate: Fate::NotRepointed, outcome: format!("not repointed ({error})"), error: Some(error) }
    }

    fn needs_recreation(name: String) -> FollowerFate {
        FollowerFate { name, fate: Fate::NeedsRecreation, outcome: "needs re-creation".into(), error: None }
    }
}

impl Engine {
    /// The words that confirm a destructive change to `database`: its own
    /// name, or the name of an app attached to it or to its leader.
    async fn confirmations(&self, database: &DatabaseRecord) -> EngineResult<Vec<String>> {
        let mut words = vec![database.name.clone()];
        let mut ids = vec![database.id];
        ids.extend(database.following_id);
        for id in ids {
            words.extend(self.store.apps_attached_to(id).await?.into_iter().map(|a| a.name));
        }
        Ok(words)
    }

    /// `databases unfollow NAME --confirm APP`: the follower stops following
    /// and becomes a writable primary of its own, forked from its leader. It
    /// is a maintenance run at once (`Runbook::Unfollow`), so a daemon killed
    /// part-way resumes it; repeating the verb meanwhile joins that run.
    pub async fn unfollow(&self, name: &str, confirm: &str) -> EngineResult<DatabaseInfo> {
        let database = self.store.database_named(name).await?;
        if database.following_id.is_none() {
            return Err(EngineError::Refused(format!("{name} is not a follower")));
        }
        let words = self.confirmations(&database).await?;
        if !words.iter().any(|w| w == confirm) {
            return Err(EngineError::Refused(format!(
                "unfollowing {name} is destructive (it stops receiving changes for good); confirm with --confirm {}",
                words.last().map(String::as_str).unwrap_or(name)
            )));
        }
        let id = match self.store.open_maintenance(database.id).await? {
            Some(open) if open.strategy == Strategy::Unfollow.as_str() => open.id,
            Some(open) => {
                return Err(EngineError::Refused(format!(
                    "{name} has maintenance #{} ({}) open; wait for it to finish before unfollowing",
                    open.id, open.reason
                )))
            }
            None => {
                let now = Utc::now();
                let record = self.store.insert_maintenance(database.id, UNFOLLOW_REASON, Strategy::Unfollow.as_str(), now, None).await?;
                self.store.schedule_maintenance(record.id, now, None, Some("an unfollow happens at once")).await?;
                record.id
            }
        };
        self.run_maintenance(id).await?;
        tracing::info!(database = name, maintenance = id, "unfollowed");
        self.info(name).await
    }

    /// The leader an unfollow acts for: the database it follows, or once the
    /// `fork` step is done, the one it was forked from.
    pub(super) async fn unfollowed_leader(&self, database: &DatabaseRecord) -> EngineResult<String> {
        match (database.following_id, &database.forked_from) {
            (Some(leader), _) => Ok(self.store.database(leader).await?.name),
            (None, Some(leader)) => Ok(leader.clone()),
            (None, None) => Err(EngineError::Invalid(format!("{} neither follows nor was forked from a leader", database.name))),
        }
    }

    /// `promote`: the follower's server leaves recovery, if it is still in
    /// it, and proves it takes a write.
    pub(super) async fn promote_follower(&self, location: &str) -> EngineResult<Value> {
        let server = self.connect(location).await?;
        let in_recovery = server.is_in_recovery().await?;
        if in_recovery {
            self.provider.promote(location, &server, UNFOLLOW_PROMOTE_TIMEOUT).await?;
        }
        server.check_writable().await?;
        Ok(json!({ "promoted": in_recovery }))
    }

    /// `fork`: the store records the database as forked from `leader`, if it
    /// still says it follows, and the database and its objects pass to its
    /// own owner role.
    pub(super) async fn fork_from_leader(&self, run: &mut Run, leader: &str) -> EngineResult<Value> {
        let following = self.store.database(run.database.id).await?.following_id.is_some();
        if following {
            self.store.fork_database(Writer::Runner(run.claim), run.database.id, leader).await?;
        }
        run.database = self.store.database(run.database.id).await?;
        self.take_ownership(&run.database, leader).await?;
        Ok(json!({ "forked_from": leader, "recorded": following }))
    }

    /// `drop_leader_slot`: the leader no longer keeps WAL for the database.
    /// The slot it streamed through is dropped on the leader's current
    /// server if it is still there. As before unfollow was a runbook, a
    /// leader that cannot be reached does not fail the unfollow: the step
    /// records why the slot stays (and it is logged).
    pub(super) async fn drop_leader_slot(&self, run: &Run, leader: &str) -> EngineResult<Value> {
        let instance = self.store.current_instance(run.database.id).await?;
        let slot = slot_of(&instance)?;
        let dropped = async {
            let leader = self.store.database_named(leader).await?;
            let server = self.connect(&self.current_location(leader.id).await?).await?;
            Ok::<_, EngineError>(server.drop_slot_once_inactive(slot, SLOT_RELEASE_TIMEOUT).await?)
        }
        .await;
        Ok(match dropped {
            Ok(dropped) => json!({ "slot": slot, "dropped": dropped }),
            Err(error) => {
                tracing::warn!(database = %run.database.name, %error, "the leader's replication slot for the unfollowed database was not dropped");
                json!({ "slot": slot, "dropped": false, "error": error.to_string() })
            }
        })
    }

    /// `databases promote NAME --app APP [--repoint-followers]`: NAME becomes
    /// the app's DATABASE_URL in a release `Promote NAME`; the default-named
    /// pooler attachment moves with it, the previous database stays attached
    /// under its own key, other keys pointing at it are listed to re-attach.
    pub async fn promote(&self, name: &str, app: &str, repoint_followers: bool, made_by: &str) -> EngineResult<Promotion> {
        let database = self.store.database_named(name).await?;
        if let Some(leader) = database.following_id {
            let leader = self.store.database(leader).await?;
            return Err(EngineError::Refused(format!(
                "{name} is still following {}; unfollow it first (`pgmaint databases unfollow {name} --confirm {app}`)",
                leader.name
            )));
        }
        let app_record = self.store.app_named(app).await?;
        let attachments = self.store.attachments_of(app_record.id).await?;
        let previous_id = attachments.iter().find(|(key, _)| key == MAIN_ATTACHMENT).map(|(_, id)| *id);
        if previous_id == Some(database.id) {
            return Err(EngineError::Refused(format!("{name} is already the DATABASE_URL of {app}")));
        }
        let previous = match previous_id {
            Some(id) => Some(self.store.database(id).await?),
            None => None,
        };
        let moved: Vec<String> = attachments
            .iter()
            .filter(|(key, id)| key == MAIN_ATTACHMENT || (key == DEFAULT_POOLER_ATTACHMENT && Some(*id) == previous_id))
            .map(|(key, _)| key.clone())
            .chain(previous_id.is_none().then(|| MAIN_ATTACHMENT.to_string()))
            .collect();
        let reattach: Vec<String> =
            attachments.iter().filter(|(key, id)| Some(*id) == previous_id && !moved.contains(key)).map(|(key, _)| key.clone()).collect();
        let previous_attached_as = match &previous {
            Some(previous) => {
                let key = attachment_key(&previous.name, None)?;
                (!attachments.iter().any(|(k, _)| *k == key)).then_some(key)
            }
            None => None,
        };
        self.store
            .move_attachments(app_record.id, database.id, &moved, previous.as_ref().zip(previous_attached_as.as_deref()).map(|(p, key)| (p.id, key)))
            .await?;
        let new_url = self.app_url(&database).await?;
        let previous_url = match &previous {
            Some(previous) => Some(self.app_url(previous).await?),
            None => None,
        };
        let release = self
            .release_with(&app_record, made_by, Vec::new(), |latest| {
                let mut config = latest.map(|r| r.config.0.clone()).unwrap_or_default();
                for key in &moved {
                    config.insert(key.clone(), new_url.clone());
                }
                if let (Some(key), Some(url)) = (&previous_attached_as, &previous_url) {
                    config.insert(key.clone(), url.clone());
                }
                Ok((format!("Promote {name}"), config))
            })
            .await?;
        let followers = match &previous {
            Some(previous) => self.followers_after_promotion(previous, &database, repoint_followers).await?,
            None => Vec::new(),
        };
        Ok(Promotion {
            database: database.name,
            app: app_record.name,
            previous: previous.map(|p| p.name),
            moved,
            previous_attached_as,
            reattach,
            followers,
            release,
        })
    }

    /// The previous primary's followers: listed as needing re-creation, or
    /// (when asked) repointed at the promoted database where they can follow
    /// it; one that cannot is put back on its old leader.
    async fn followers_after_promotion(&self, previous: &DatabaseRecord, promoted: &DatabaseRecord, repoint: bool) -> EngineResult<Vec<FollowerFate>> {
        let mut fates = Vec::new();
        for follower in self.store.followers_of(previous.id).await? {
            if !repoint {
                fates.push(FollowerFate::needs_recreation(follower.name));
                continue;
            }
            let fate = match self.repoint_to(&follower, previous, promoted).await {
                Ok(()) => FollowerFate::repointed(follower.name),
                Err(error) => FollowerFate::not_repointed(follower.name, error.to_string()),
            };
            fates.push(fate);
        }
        Ok(fates)
    }

    async fn repoint_to(&self, follower: &DatabaseRecord, previous: &DatabaseRecord, promoted: &DatabaseRecord) -> EngineResult<()> {
        let instance = self.store.current_instance(follower.id).await?;
        let slot = slot_of(&instance)?;
        let target = self.current_location(promoted.id).await?;
        let target_server = self.connect(&target).await?;
        match self.repoint_follower(&instance.location, &target, &target_server, slot).await {
            Ok(()) => {
                self.store.set_following(Writer::Operator, follower.id, promoted.id).await?;
                if let Ok(old) = self.connect(&self.current_location(previous.id).await?).await {
                    let _ = old.drop_slot(slot).await;
                }
                Ok(())
            }
            Err(error) => {
                let old = self.provider.address(&self.current_location(previous.id).await?);
                let conninfo = format!("{} application_name={slot}", old.conninfo("postgres"));
                self.connect(&instance.location).await?.set_primary(&conninfo, Some(slot)).await?;
                let _ = target_server.drop_slot(slot).await;
                Err(error)
            }
        }
    }
}
