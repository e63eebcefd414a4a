//! Pauses between retries: exponential with jitter (backon), one shape for every retry loop in
//! deskhook, so clients that failed together do not come back together.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The pause before retry number `retry` (1 for the first): doubling from `first`, with jitter
/// of up to the pause again, never above `cap`.
pub(crate) fn pause(first: Duration, cap: Duration, retry: u32) -> Duration {
    // Jitter doubles at most, so growth stops at half the cap and the jittered wait stays in [cap/2, cap].
    let ceiling = (cap / 2).max(first);
    let builder =
        ExponentialBuilder::default().with_min_delay(first).with_max_delay(ceiling).with_factor(2.0).with_jitter();
    let step = retry.max(1) as usize - 1;
    builder.without_max_times().build().nth(step).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_with_jitter_up_to_the_cap() {
        let (first, cap) = (Duration::from_millis(100), Duration::from_secs(3));
        for _ in 0..50 {
            let one = pause(first, cap, 1);
            assert!(one >= first && one <= first * 2, "{one:?}");
            let three = pause(first, cap, 3);
            assert!(three >= first * 4 && three <= first * 8, "{three:?}");
            let late = pause(first, cap, 40);
            assert!(late >= cap / 2 && late <= cap, "{late:?}");
        }
        let spread: std::collections::BTreeSet<Duration> = (0..50).map(|_| pause(first, cap, 2)).collect();
        assert!(spread.len() > 1, "jittered");
    }
}
