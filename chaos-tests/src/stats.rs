//! Small summaries of measured durations (election times, write outages).

use std::fmt;
use std::time::Duration;

/// min / median / p99 / max of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: Duration,
    /// Median (lower middle for an even count).
    pub median: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort();
        let rank = |q: f64| {
            let r = (q * s.len() as f64).ceil() as usize;
            s[r.clamp(1, s.len()) - 1]
        };
        Some(Summary {
            n: s.len(),
            min: s[0],
            median: s[(s.len() - 1) / 2],
            p99: rank(0.99),
            max: s[s.len() - 1],
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} min={} median={} p99={} max={}",
            self.n,
            ms(self.min),
            ms(self.median),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// A duration as milliseconds, e.g. `412ms`.
pub fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let s: Vec<Duration> = [5u64, 1, 3, 2, 4]
            .iter()
            .map(|m| Duration::from_millis(*m))
            .collect();
        let sum = Summary::of(&s).unwrap();
        assert_eq!(sum.min, Duration::from_millis(1));
        assert_eq!(sum.median, Duration::from_millis(3));
        assert_eq!(sum.p99, Duration::from_millis(5));
        assert_eq!(sum.max, Duration::from_millis(5));
        assert!(Summary::of(&[]).is_none());
    }
}
