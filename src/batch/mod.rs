//! Batch work: cron-scheduled scans (SPEC §6) and the CPU throttle that
//! holds back new post/batch work items while the machine is busy (§6.3).

pub mod throttle;
