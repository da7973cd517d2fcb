//! What a maintenance is for, and how it is carried out (DESIGN.md's strategy table).

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Pause the endpoint, fast-restart the server, resume.
    Restart,
    /// Promote a freshly prepared replacement replica.
    Switchover,
    /// Promote the HA standby, then build a new standby.
    Failover,
}

impl Strategy {
    /// DESIGN.md's table: kind of maintenance x tier x role.
    pub fn choose(reason: Reason, tier: Tier, is_follower: bool) -> Strategy {
        match reason.kind() {
            Kind::RestartOnly => Strategy::Restart,
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
        }
    }

    /// Does this strategy promote another server (and so need a candidate)?
    pub fn moves_database(self) -> bool {
        !matches!(self, Strategy::Restart)
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "restart" => Ok(Strategy::Restart),
            "switchover" => Ok(Strategy::Switchover),
            "failover" => Ok(Strategy::Failover),
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
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>().unwrap(), reason);
        }
    }
}
