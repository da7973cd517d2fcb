//! The fleet: creating databases (primary, follower, HA standby), their routes
//! through the endpoint, and recording required maintenances.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::endpoint::Route;
use crate::model::{Labels, Plan, Reason, Strategy, Tier};
use crate::provider::StopMode;
use crate::store::{DatabaseRecord, InstanceRecord, InstanceRole, MaintenanceRecord, NewDatabase, Writer};

use super::{Engine, EngineError, EngineResult};

/// What `databases create` asks for.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub name: String,
    pub plan: Plan,
    pub follow: Option<String>,
    pub window: String,
    pub window_length: Duration,
    pub owners: Vec<String>,
    pub labels: Labels,
}

/// How long a new replica may take to catch up before it counts as failed.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);
/// A replica this close to its primary (bytes of WAL) counts as caught up.
const CAUGHT_UP_BYTES: i64 = 1 << 20;

impl Engine {
    /// Creates a database: its server (a primary, or a streaming follower of
    /// `follow`), an HA standby on HA tiers, and its route through the endpoint.
    pub async fn create_database(&self, spec: &DatabaseSpec) -> EngineResult<DatabaseRecord> {
        validate_name(&spec.name)?;
        let window: crate::schedule::Window = spec.window.parse().map_err(|e| EngineError::Invalid(format!("window {:?}: {e}", spec.window)))?;
        crate::schedule::check_window_length(chrono::TimeDelta::from_std(spec.window_length).unwrap_or(chrono::TimeDelta::MAX))
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let leader = match &spec.follow {
            Some(name) => Some(self.store.database_named(name).await?),
            None => None,
        };
        if let Some(leader) = &leader {
            self.refuse_if_adopted(leader, "a follower of it").await?;
            if spec.plan.tier() == Tier::Essential || plan_of(leader)?.tier() == Tier::Essential {
                return Err(EngineError::Refused("followers need the standard tier or above, for the follower and its leader".into()));
            }
        }
        let record = self
            .store
            .insert_database(&NewDatabase {
                name: &spec.name,
                plan: spec.plan.name(),
                following_id: leader.as_ref().map(|l| l.id),
                dbname: leader.as_ref().map(|l| l.dbname.as_str()),
                owners: &spec.owners,
                window_spec: &window.to_string(),
                labels: &spec.labels,
                window_length_secs: i32::try_from(spec.window_length.as_secs()).map_err(|_| EngineError::Invalid("window too long".into()))?,
            })
            .await?;
        let location = self.provider.new_location(&spec.name);
        let slot = new_slot_name(&spec.name);
        let instance = self.store.insert_instance(Writer::Operator, record.id, InstanceRole::Current, &location, Some(&slot)).await?;
        match &leader {
            None => {
                self.provider.provision_primary(&instance.location, &spec.plan).await?;
                self.connect(&instance.location).await?.ensure_database(&record.dbname).await?;
                self.ensure_roles(&record).await?;
            }
            Some(leader) => {
                // Its roles are made on the leader first, so the copy holds them.
                self.ensure_roles(&record).await?;
                let upstream = self.current_location(leader.id).await?;
                self.build_replica(&upstream, &instance.location, &slot, &spec.plan).await?;
            }
        }
        if leader.is_none() && spec.plan.tier().has_ha_standby() {
            self.build_ha_standby(Writer::Operator, record.id).await?;
        }
        self.publish_routes().await?;
        self.store.set_database_status(record.id, "available").await?;
        Ok(self.store.database(record.id).await?)
    }

    /// Builds a streaming replica of the server at `upstream` at `location` and waits until it has caught up.
    pub(super) async fn build_replica(&self, upstream: &str, location: &str, slot: &str, plan: &Plan) -> EngineResult<()> {
        self.connect(upstream).await?.ensure_slot(slot).await?;
        self.provider.build_replica(location, upstream, slot, plan).await?;
        self.wait_caught_up(upstream, slot).await
    }

    /// A new HA standby for a primary database, streaming from its current server.
    pub(super) async fn build_ha_standby(&self, writer: Writer, database_id: i64) -> EngineResult<()> {
        let database = self.store.database(database_id).await?;
        let plan = plan_of(&database)?;
        let primary = self.current_location(database_id).await?;
        // A standby row left by an interrupted earlier attempt is finished, not duplicated.
        let standby = match self.store.instance_in_role(database_id, InstanceRole::HaStandby).await? {
            Some(existing) => existing,
            None => {
                let location = self.provider.new_location(&format!("{}-ha", database.name));
                let slot = new_slot_name(&database.name);
                self.store.insert_instance(writer, database_id, InstanceRole::HaStandby, &location, Some(&slot)).await?
            }
        };
        self.build_replica(&primary, &standby.location, slot_of(&standby)?, &plan).await?;
        Ok(())
    }

    /// Waits until the replica using `slot` streams from the server at `upstream` within a small lag.
    pub(super) async fn wait_caught_up(&self, upstream: &str, slot: &str) -> EngineResult<()> {
        let server = self.connect(upstream).await?;
        crate::pg::wait_until(CATCH_UP_TIMEOUT, Duration::from_millis(10), "replica catch-up", || async {
            let replicas = server.replicas().await?;
            Ok(replicas
                .iter()
                .any(|r| r.application_name == slot && r.state == "streaming" && r.lag_bytes.is_some_and(|lag| lag < CAUGHT_UP_BYTES)))
        })
        .await?;
        Ok(())
    }

    /// The location of the server clients of `database_id` reach now.
    pub(super) async fn current_location(&self, database_id: i64) -> EngineResult<String> {
        Ok(self.store.current_instance(database_id).await?.location)
    }

    /// The endpoint route of `database` to the server at `location`.
    /// Clients of an adopted cluster keep their own roles: PgBouncer looks
    /// their passwords up on the server as pgmaint's `[patroni] pg_user`.
    pub(super) fn route_to(&self, database: &DatabaseRecord, location: &str) -> Route {
        let route = Route::to(&database.name, &self.provider.address(location), &database.dbname);
        match &self.patroni {
            Some(access) if crate::provider::patroni::is_adopted(location) => route.with_auth_user(access.pg_user()),
            _ => route,
        }
    }

    /// The endpoint route of a database: its name, to its current server.
    pub(super) async fn route_of(&self, database: &DatabaseRecord) -> EngineResult<Route> {
        Ok(self.route_to(database, &self.current_location(database.id).await?))
    }

    /// Makes the endpoint route every database to its current server and
    /// accept every valid login (starting it if needed).
    pub async fn publish_routes(&self) -> EngineResult<()> {
        let mut routes = Vec::new();
        for database in self.store.databases().await? {
            if self.store.instance_in_role(database.id, InstanceRole::Current).await?.is_some() {
                if database.status == "available" && !self.store.has_credentials(database.id).await? && !self.is_adopted(&database).await? {
                    // A database made before pgmaint gave each its own roles.
                    self.ensure_roles(&database).await?;
                }
                routes.push(self.route_of(&database).await?);
            }
        }
        self.endpoint.ensure_started(&routes, &self.valid_logins().await?).await?;
        Ok(())
    }

    /// Stops every server of the fleet and the endpoint (the demo's and the
    /// benchmarks' clean ending; a daemon's own shutdown leaves them running).
    pub async fn stop_fleet(&self) -> EngineResult<()> {
        for database in self.store.databases().await? {
            // An adopted cluster's servers are Patroni's to stop.
            if self.is_adopted(&database).await? {
                continue;
            }
            for instance in self.store.instances(database.id).await? {
                self.provider.stop(&instance.location, StopMode::Fast).await?;
            }
        }
        self.endpoint.stop().await?;
        Ok(())
    }

    /// The URL applications use for a database (its role and password, over
    /// TCP); it never changes across maintenance.
    pub async fn endpoint_url(&self, name: &str) -> EngineResult<String> {
        let database = self.store.database_named(name).await?;
        self.app_url(&database).await
    }

    /// Records a required maintenance with the strategy the table picks.
    pub async fn require_maintenance(&self, name: &str, reason: Reason, required_by: DateTime<Utc>) -> EngineResult<MaintenanceRecord> {
        let database = self.store.database_named(name).await?;
        self.require_for(&database, reason, required_by, None).await
    }

    /// Records a required maintenance of `database`, for `rollout_id` if given.
    pub(super) async fn require_for(&self, database: &DatabaseRecord, reason: Reason, required_by: DateTime<Utc>, rollout_id: Option<i64>) -> EngineResult<MaintenanceRecord> {
        let plan = plan_of(database)?;
        let strategy = if self.is_adopted(database).await? {
            if reason == Reason::PlanChange {
                return Err(EngineError::Refused(format!("{} is an adopted Patroni cluster: its servers belong to Patroni, so pgmaint cannot move it to a new plan", database.name)));
            }
            self.rolling_strategy(database, reason).await?
        } else {
            Strategy::choose(reason, plan.tier(), database.following_id.is_some())
        };
        Ok(self.store.insert_maintenance_for(database.id, reason.as_str(), strategy.as_str(), required_by, None, rollout_id).await?)
    }
}

/// The plan a database is on, as recorded.
pub(super) fn plan_of(database: &DatabaseRecord) -> EngineResult<Plan> {
    database.plan.parse().map_err(|e| EngineError::Invalid(format!("database {}: {e}", database.name)))
}

/// Database names become directory names, PgBouncer entries and SQL identifiers.
pub(super) fn validate_name(name: &str) -> EngineResult<()> {
    if name.starts_with("pg_") {
        return Err(EngineError::Invalid(format!("invalid database name {name:?}: names starting with pg_ are reserved for PostgreSQL's roles")));
    }
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "invalid database name {name:?}: use 1-40 lowercase letters, digits, '-' or '_', starting with a letter"
        )))
    }
}

/// A new replication slot name for a server of `database`: unique per
/// server, whatever provider runs it, and a valid slot name (at most 63
/// lowercase letters, digits and `_`).
pub(super) fn new_slot_name(database: &str) -> String {
    let cleaned: String = database.chars().take(32).map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    format!("pgmaint_{cleaned}_{:016x}", rand::random::<u64>())
}

/// The replication slot a server streams through, as recorded when it was made.
pub(super) fn slot_of(instance: &InstanceRecord) -> EngineResult<&str> {
    instance.slot_name.as_deref().ok_or_else(|| EngineError::Invalid(format!("server {} has no replication slot recorded", instance.location)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_slots() {
        assert!(validate_name("orders-2").is_ok());
        for bad in ["", "Orders", "2orders", "a b", "a;drop", "pg_stats", &"x".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let slot = new_slot_name("orders-ha");
        assert!(slot.starts_with("pgmaint_orders_ha_") && slot.len() == "pgmaint_orders_ha_".len() + 16, "{slot}");
        assert_ne!(slot, new_slot_name("orders-ha"), "each server gets its own slot");
        assert!(new_slot_name(&"x".repeat(40)).len() <= 63);
    }
}
