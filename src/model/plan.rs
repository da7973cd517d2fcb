//! Plans and tiers: `standard-2` is the standard tier; the tier decides HA and strategy.

use std::fmt;
use std::str::FromStr;

/// The service tier, the text of a plan before the dash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Essential,
    Standard,
    Premium,
    Private,
    Shield,
}

impl Tier {
    /// High-availability tiers keep a hot standby beside every primary.
    pub fn has_ha_standby(self) -> bool {
        matches!(self, Tier::Premium | Tier::Private | Tier::Shield)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Essential => "essential",
            Tier::Standard => "standard",
            Tier::Premium => "premium",
            Tier::Private => "private",
            Tier::Shield => "shield",
        }
    }
}

/// A plan name such as `premium-4`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Plan {
    name: String,
    tier: Tier,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown plan {0:?} (expected <tier>-<size>, tier one of essential, standard, premium, private, shield)")]
pub struct PlanParseError(String);

impl FromStr for Plan {
    type Err = PlanParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tier, size) = s.split_once('-').ok_or_else(|| PlanParseError(s.to_string()))?;
        let tier = match tier {
            "essential" => Tier::Essential,
            "standard" => Tier::Standard,
            "premium" => Tier::Premium,
            "private" => Tier::Private,
            "shield" => Tier::Shield,
            _ => return Err(PlanParseError(s.to_string())),
        };
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PlanParseError(s.to_string()));
        }
        Ok(Plan { name: s.to_string(), tier })
    }
}

impl Plan {
    pub fn tier(&self) -> Tier {
        self.tier
    }
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size step after the dash (`standard-2` -> 2; a size without
    /// leading digits, such as `private-l`, counts as 0).
    pub fn size(&self) -> u32 {
        let size = self.name.split_once('-').map_or("", |(_, size)| size);
        let digits: String = size.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(steps) => steps,
            Err(_) if digits.is_empty() => 0,
            Err(_) => u32::MAX,
        }
    }

    /// The memory a plan buys its servers: 32 MB of shared_buffers plus 16 MB
    /// per size step, at most 256 MB. A plan change is visible on the server
    /// (`SHOW shared_buffers`), which is what tells its replacement apart.
    pub fn shared_buffers_mb(&self) -> u32 {
        32u32.saturating_add(self.size().saturating_mul(16)).min(256)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tiers() {
        assert_eq!("standard-2".parse::<Plan>().unwrap().tier(), Tier::Standard);
        assert!("premium-4".parse::<Plan>().unwrap().tier().has_ha_standby());
        assert!(!"essential-0".parse::<Plan>().unwrap().tier().has_ha_standby());
        assert_eq!("standard-2".parse::<Plan>().unwrap().shared_buffers_mb(), 64);
        assert_eq!("essential-0".parse::<Plan>().unwrap().shared_buffers_mb(), 32);
        assert_eq!("premium-99999999999".parse::<Plan>().unwrap().shared_buffers_mb(), 256);
        assert_eq!("private-l".parse::<Plan>().unwrap().size(), 0);
        for bad in ["gold-1", "standard", "standard-", "standard-2 x"] {
            assert!(bad.parse::<Plan>().is_err(), "{bad}");
        }
    }
}
