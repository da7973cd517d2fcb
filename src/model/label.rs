//! Database labels (`tier=gold`, `region=eu-west`): what a rollout selects by.
//!
//! A key is 1-63 lowercase letters, digits, `-`, `_`, `.` or `/`, starting
//! with a letter or digit; a value is 0-63 letters, digits, `-`, `_` or `.`.

use std::collections::BTreeMap;

/// A database's labels, by key.
pub type Labels = BTreeMap<String, String>;

const MAX_LEN: usize = 63;

/// Checks a label key.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_LEN
        && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}: use 1-63 lowercase letters, digits, '-', '_', '.' or '/', starting with a letter or digit"))
    }
}

/// Checks a label value.
pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() <= MAX_LEN && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(())
    } else {
        Err(format!("invalid value {value:?} for label {key}: use at most 63 letters, digits, '-', '_' or '.'"))
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("label {text:?} is not KEY=VALUE"))?;
    check_label_key(key)?;
    check_label_value(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Parses several `KEY=VALUE`; a key given twice is refused.
pub fn parse_labels<S: AsRef<str>>(texts: &[S]) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for text in texts {
        let (key, value) = parse_label(text.as_ref())?;
        if labels.insert(key.clone(), value).is_some() {
            return Err(format!("label {key} is given twice"));
        }
    }
    Ok(labels)
}

/// Checks every label of a map (as the API receives them).
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    labels.iter().try_for_each(|(key, value)| check_label_key(key).and_then(|()| check_label_value(key, value)))
}

/// `region=eu,tier=gold`, or `-` when there are none.
pub fn describe_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_refuse_what_they_should() {
        assert_eq!(parse_label("tier=gold").unwrap(), ("tier".to_string(), "gold".to_string()));
        assert_eq!(parse_label("team/owner=").unwrap(), ("team/owner".to_string(), String::new()));
        for bad in ["tier", "=gold", "Tier=gold", "tier=go ld", "-x=1", &format!("{}=1", "k".repeat(64))] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
        assert!(parse_labels(&["a=1", "a=2"]).unwrap_err().contains("twice"));
        let labels = parse_labels(&["tier=gold", "region=eu"]).unwrap();
        assert_eq!(describe_labels(&labels), "region=eu,tier=gold");
        assert_eq!(describe_labels(&Labels::new()), "-");
        assert!(check_labels(&labels).is_ok());
    }
}
