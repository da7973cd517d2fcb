//! What a maintenance is for, and how it is carried out (the strategy table).

use std::fmt;
use std::str::FromStr;

use super::Tier;

/// Why a database needs maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Operating system or libraries under the server: the server moves to new infrastructure.
    OsPatch,
    /// Newer server binaries of the same major version are installed: a restart picks them up.
    MinorUpgrade,
    /// Settings that only take effect at a restart.
    Settings,
    /// A move to another plan: a replacement on the new plan.
    PlanChange,
    /// The periodic (90-day) refresh onto fresh infrastructure.
    Periodic,
}

/// Whether the server process restarts in place or the database moves to another server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RestartOnly,
    Replace,
}

impl Reason {
    pub const ALL: [Reason; 5] = [Reason::OsPatch, Reason::MinorUpgrade, Reason::Settings, Reason::PlanChange, Reason::Periodic];

    pub fn kind(self) -> Kind {
        match self {
            Reason::MinorUpgrade | Reason::Settings => Kind::RestartOnly,
            Reason::OsPatch | Reason::PlanChange | Reason::Periodic => Kind::Replace,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OsPatch => "os-patch",
            Reason::MinorUpgrade => "minor-upgrade",
            Reason::Settings => "settings",
            Reason::PlanChange => "plan-change",
            Reason::Periodic => "periodic",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown maintenance reason {0:?} (expected os-patch, minor-upgrade, settings, plan-change or periodic)")]
pub struct ReasonParseError(String);

impl FromStr for Reason {
    type Err = ReasonParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| ReasonParseError(s.to_string()))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a maintenance is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Pause the endpoint, fast-restart the server, resume.
    Restart,
    /// Promote a freshly prepared replacement replica.
    Switchover,
    /// Promote the HA standby, then build a new standby.
    Failover,
    /// Essential tier (no replicas): the database refuses writes while its
    /// data is copied into a new server, then the endpoint moves there.
    Copy,
    /// An adopted Patroni cluster: each replica in turn (restarted, or the
    /// host hook run on it), then a Patroni switchover to one of them with
    /// the endpoint paused, then the old leader.
    Rolling,
    /// An adopted Patroni cluster whose pending settings lower a value a
    /// replica may not run below its primary's (`max_connections`...): the
    /// leader is restarted first, in place, with the endpoint paused; then
    /// each replica. No switchover.
    #[serde(rename = "rolling-leader-first")]
    RollingLeaderFirst,
    /// `databases unfollow`: a follower is promoted in place and becomes a
    /// database of its own, forked from its leader (never chosen by the table).
    Unfollow,
}

impl Strategy {
    /// The strategy table: kind of maintenance x tier x role. A plan change
    /// needs a server on the new plan, so it never fails over to the HA
    /// standby (that standby is on the old plan): it switches over to a
    /// replacement built on the new plan, or, in the essential tier that has
    /// no replicas, copies the data into one.
    pub fn choose(reason: Reason, tier: Tier, is_follower: bool) -> Strategy {
        match reason.kind() {
            Kind::RestartOnly => Strategy::Restart,
            Kind::Replace if reason == Reason::PlanChange && tier == Tier::Essential && !is_follower => Strategy::Copy,
            Kind::Replace if reason == Reason::PlanChange => Strategy::Switchover,
            Kind::Replace if is_follower => Strategy::Switchover,
            Kind::Replace if tier.has_ha_standby() => Strategy::Failover,
            Kind::Replace if tier == Tier::Essential => Strategy::Restart,
            Kind::Replace => Strategy::Switchover,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Restart => "restart",
            Strategy::Switchover => "switchover",
            Strategy::Failover => "failover",
            Strategy::Copy => "copy",
            Strategy::Rolling => "rolling",
            Strategy::RollingLeaderFirst => "rolling-leader-first",
            Strategy::Unfollow => "unfollow",
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "restart" => Ok(Strategy::Restart),
            "switchover" => Ok(Strategy::Switchover),
            "rolling" => Ok(Strategy::Rolling),
            "rolling-leader-first" => Ok(Strategy::RollingLeaderFirst),
            "failover" => Ok(Strategy::Failover),
            "copy" => Ok(Strategy::Copy),
            "unfollow" => Ok(Strategy::Unfollow),
            other => Err(format!("unknown strategy {other:?}")),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_table() {
        use Strategy::*;
        assert_eq!(Strategy::choose(Reason::Settings, Tier::Premium, false), Restart);
        assert_eq!(Strategy::choose(Reason::MinorUpgrade, Tier::Standard, true), Restart);
        assert_eq!(Strategy::choose(Reason::OsPatch, Tier::Essential, false), Restart);
        assert_eq!(Strategy::choose(Reason::OsPatch, Tier::Standard, false), Switchover);
        assert_eq!(Strategy::choose(Reason::Periodic, Tier::Premium, false), Failover);
        assert_eq!(Strategy::choose(Reason::Periodic, Tier::Shield, false), Failover);
        assert_eq!(Strategy::choose(Reason::PlanChange, Tier::Premium, true), Switchover);
        assert_eq!(Strategy::choose(Reason::PlanChange, Tier::Premium, false), Switchover);
        assert_eq!(Strategy::choose(Reason::PlanChange, Tier::Standard, false), Switchover);
        assert_eq!(Strategy::choose(Reason::PlanChange, Tier::Essential, false), Copy);
        for strategy in [Restart, Switchover, Failover, Copy, Unfollow] {
            assert_eq!(strategy.as_str().parse::<Strategy>().unwrap(), strategy);
        }
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>().unwrap(), reason);
        }
    }
}
