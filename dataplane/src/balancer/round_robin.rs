//! Smooth weighted round robin, precomputed as one cycle.

/// Longest cycle we precompute; larger weight sums are scaled down.
const MAX_CYCLE: u64 = 1 << 16;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One full cycle of nginx's smooth weighted round robin over `weights`
/// (indices into `weights`). Weights are reduced by their gcd first, so
/// `[2, 2]` cycles `0, 1` rather than `0, 1, 0, 1`. Zero weights never appear.
pub(super) fn smooth_cycle(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let mut w: Vec<i64> = weights.iter().map(|x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    if total as u64 > MAX_CYCLE {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (*x * MAX_CYCLE as i64 / total).max(1);
        }
    }
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0usize;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best as u32);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::smooth_cycle;

    #[test]
    fn nginx_example() {
        assert_eq!(smooth_cycle(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn gcd_reduction_and_zero_weights() {
        assert_eq!(smooth_cycle(&[2, 0, 2]), [0, 2]);
        assert!(smooth_cycle(&[0, 0]).is_empty());
        assert!(smooth_cycle(&[]).is_empty());
    }

    #[test]
    fn huge_weight_sums_are_bounded() {
        let weights = vec![256u32; 1000];
        let c = smooth_cycle(&weights);
        assert_eq!(c.len(), 1000); // gcd 256 → all ones
        let weights: Vec<u32> = (1..=1000).map(|i| (i % 256) + 1).collect();
        let c = smooth_cycle(&weights);
        assert!(c.len() as u64 <= super::MAX_CYCLE + 1000);
        for i in 0..1000u32 {
            assert!(c.contains(&i));
        }
    }
}
