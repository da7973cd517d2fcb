//! Follower switchover by hand, the reference's third way to change a plan:
//! create a follower on the new plan, wait until it is caught up, quiesce the
//! app, `unfollow` it (it becomes a writable database of its own, forked from
//! its leader), then `promote` it to the app's DATABASE_URL. Followers of the
//! old primary keep following the old primary unless `--repoint-followers`
//! moves the ones that can follow the new one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{DatabaseRecord, Writer};

use super::control::DatabaseInfo;
use super::fleet::{plan_of, slot_of};
use super::releases::{attachment_key, ReleaseOutcome};
use super::{Engine, EngineError, EngineResult};

/// How long `pg_promote` may take when a follower is unfollowed.
const UNFOLLOW_PROMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
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
    /// and becomes a writable primary of its own, forked from its leader.
    /// Safe to repeat after a crash part-way.
    pub async fn unfollow(&self, name: &str, confirm: &str) -> EngineResult<DatabaseInfo> {
        let database = self.store.database_named(name).await?;
        let Some(leader_id) = database.following_id else {
            return Err(EngineError::Refused(format!("{name} is not a follower")));
        };
        let words = self.confirmations(&database).await?;
        if !words.iter().any(|w| w == confirm) {
            return Err(EngineError::Refused(format!(
                "unfollowing {name} is destructive (it stops receiving changes for good); confirm with --confirm {}",
                words.last().map(String::as_str).unwrap_or(name)
            )));
        }
        if let Some(open) = self.store.open_maintenance(database.id).await? {
            return Err(EngineError::Refused(format!(
                "{name} has maintenance #{} ({}) open; wait for it to finish before unfollowing",
                open.id, open.reason
            )));
        }
        let leader = self.store.database(leader_id).await?;
        let location = self.current_location(database.id).await?;
        let server = self.connect(&location).await?;
        if server.is_in_recovery().await? {
            self.provider.promote(&location, &server, UNFOLLOW_PROMOTE_TIMEOUT).await?;
        }
        server.check_writable().await?;
        self.store.fork_database(database.id, &leader.name).await?;
        self.take_ownership(&self.store.database(database.id).await?, &leader).await?;
        // The leader no longer keeps WAL for it.
        let instance = self.store.current_instance(database.id).await?;
        let slot = slot_of(&instance)?;
        if let Ok(leader_server) = self.connect(&self.current_location(leader.id).await?).await {
            if let Err(error) = leader_server.drop_slot(slot).await {
                tracing::warn!(database = name, %error, "the leader's replication slot for the unfollowed database was not dropped");
            }
        }
        if plan_of(&database)?.tier().has_ha_standby() {
            self.build_ha_standby(Writer::Operator, database.id).await?;
        }
        tracing::info!(database = name, forked_from = %leader.name, "unfollowed");
        self.info(name).await
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
