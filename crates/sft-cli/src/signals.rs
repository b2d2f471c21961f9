//! The signals a batch job is stopped with: Ctrl-C (SIGINT), a scheduler's SIGTERM (Slurm,
//! Kubernetes, `timeout`, spot reclaimers; SIGKILL follows after a grace period) and Slurm's
//! early warning SIGUSR1 (`--signal=USR1@60`). Each binary says what a stop means for its
//! job: sft-train saves a checkpoint, sft-eval keeps the report of the checkpoints already
//! scored, sft-data removes its unfinished outputs. A job stopped by a signal exits with
//! 128 + the signal's number, as a shell reports it.
//!
//! The handlers run on a thread of their own (not inside the signal handler), so they may
//! print, take locks and write files.

use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// The signals a job stops on.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGUSR1];

/// The first stop signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The exit code of a job stopped by `signal` (130 for SIGINT, 143 for SIGTERM, 138 for
/// SIGUSR1 on Linux).
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// The first stop signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// A signal's name as people write it (`SIGTERM`), with how Ctrl-C is known.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// Calls `on_signal(signal, first)` on a thread of its own for each stop signal, `first`
/// telling whether it is the first one. Returns false when the handlers could not be set
/// (the job then runs with the default actions).
pub fn on_stop(on_signal: impl Fn(i32, bool) + Send + 'static) -> bool {
    let Ok(mut signals) = signal_hook::iterator::Signals::new(STOP_SIGNALS) else {
        return false;
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let first = RECEIVED
                .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            on_signal(signal, first);
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(exit_code(SIGINT), 130);
        assert_eq!(exit_code(SIGTERM), 143);
        assert_eq!(exit_code(SIGUSR1), 138);
        assert_eq!(name(SIGTERM), "SIGTERM");
    }
}
