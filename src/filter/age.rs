//! The age rule: Ansible's `agefilter` against one of an item's times.

use std::time::SystemTime;

use crate::config::units::AgeFilter;

/// Ansible's `agefilter` (`now - stamp >= age`, or `<=` for a negative age),
/// exact to the nanosecond although the bound is whole seconds.
pub(super) fn age_matches(age: &AgeFilter, stamp: SystemTime, now: SystemTime) -> bool {
    match now.duration_since(stamp) {
        Ok(d) => {
            // age >= N  <=>  floor(age) >= N;  age <= N  <=>  ceil(age) <= N.
            let secs = if age.at_most && d.subsec_nanos() > 0 {
                d.as_secs().saturating_add(1)
            } else {
                d.as_secs()
            };
            age.matches(secs)
        }
        // In the future: a negative age, below every bound.
        Err(_) => age.at_most,
    }
}
