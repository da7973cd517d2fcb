//! A rollout's waves as the operator writes them: `1,10%,50%,100%`, the
//! cumulative size of each wave, a count or a percentage of the selection,
//! the last being `100%`.

use std::fmt;
use std::str::FromStr;

/// One cumulative size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Count(usize),
    /// 1 to 100.
    Percent(u32),
}

/// A parsed wave specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveSpec {
    sizes: Vec<Size>,
}

impl FromStr for WaveSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<WaveSpec, String> {
        let mut sizes = Vec::new();
        for part in text.split(',').map(str::trim) {
            let size = match part.strip_suffix('%') {
                Some(percent) => match percent.parse::<u32>() {
                    Ok(p @ 1..=100) => Size::Percent(p),
                    _ => return Err(format!("wave size {part:?} is not a percentage from 1% to 100%")),
                },
                None => match part.parse::<usize>() {
                    Ok(n) if n > 0 => Size::Count(n),
                    _ => return Err(format!("wave size {part:?} is not a count (1, 2...) or a percentage (10%)")),
                },
            };
            sizes.push(size);
        }
        if sizes.last() != Some(&Size::Percent(100)) {
            return Err(format!("waves {text:?}: the last wave must be 100%"));
        }
        let shrinks = |a: &Size, b: &Size| match (a, b) {
            (Size::Count(x), Size::Count(y)) => y < x,
            (Size::Percent(x), Size::Percent(y)) => y < x,
            _ => false,
        };
        if sizes.iter().enumerate().any(|(i, a)| sizes[i + 1..].iter().any(|b| shrinks(a, b))) {
            return Err(format!("waves {text:?}: sizes are cumulative and must not shrink"));
        }
        Ok(WaveSpec { sizes })
    }
}

impl fmt::Display for WaveSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .sizes
            .iter()
            .map(|s| match s {
                Size::Count(n) => n.to_string(),
                Size::Percent(p) => format!("{p}%"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl WaveSpec {
    /// The sizes of the waves of a selection of `n` databases: a percentage
    /// is rounded down ("up to 10%"), a size never below the previous one, and
    /// a wave that would be empty is left out. They add up to `n`.
    pub fn split(&self, n: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut done = 0;
        for size in &self.sizes {
            let end = match size {
                Size::Count(count) => (*count).min(n),
                Size::Percent(p) => n * (*p as usize) / 100,
            };
            if end > done {
                sizes.push(end - done);
                done = end;
            }
        }
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_split_a_selection() {
        let spec: WaveSpec = "1,10%,50%,100%".parse().unwrap();
        assert_eq!(spec.to_string(), "1,10%,50%,100%");
        assert_eq!(spec.split(200), vec![1, 19, 80, 100]);
        assert_eq!(spec.split(5), vec![1, 1, 3], "10% of 5 rounds down to nothing: that wave is left out");
        assert_eq!(spec.split(1), vec![1]);
        assert_eq!(spec.split(0), Vec::<usize>::new());
        assert_eq!("1,100%".parse::<WaveSpec>().unwrap().split(2), vec![1, 1]);
        assert_eq!("100%".parse::<WaveSpec>().unwrap().split(7), vec![7]);
        for bad in ["", "1", "0,100%", "1,0%,100%", "101%", "x,100%", "50%,10%,100%", "5,2,100%", "1,100%,50%"] {
            assert!(bad.parse::<WaveSpec>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn waves_cover_the_selection_once(counts in proptest::collection::vec(1usize..50, 0..4), percents in proptest::collection::vec(1u32..100, 0..4), n in 0usize..500) {
            let mut counts = counts;
            counts.sort_unstable();
            let mut percents = percents;
            percents.sort_unstable();
            let mut parts: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
            parts.extend(percents.iter().map(|p| format!("{p}%")));
            parts.push("100%".into());
            let spec: WaveSpec = parts.join(",").parse().unwrap();
            let sizes = spec.split(n);
            proptest::prop_assert_eq!(sizes.iter().sum::<usize>(), n);
            proptest::prop_assert!(sizes.iter().all(|s| *s > 0));
        }
    }
}
