//! `cargo bench --bench indicium`: build + sign, render, verify. Final stdout line is JSON:
//! `{"signed_per_s":..,"render_ms_p50":..,"verify_per_s":..,"pkcs11_signed_per_s":..}`.
//! Goals: signed_per_s >= 20000, render_ms_p50 <= 2, verify_per_s >= 10000.
//! `pkcs11_signed_per_s` (issue 20): build + sign with the same key imported into a throwaway
//! SoftHSM2 token, one thread per session of the signer's pool (what the ledger's signing pool
//! gets); `pkcs11_one_session_per_s` the same on one thread.

#[path = "../tests/indicium_support/mod.rs"]
mod indicium_support;
#[path = "../tests/support/softhsm.rs"]
mod softhsm;

use frank::indicium::render::render_label;
use frank::indicium::signer::{KeySigner, PieceFacts, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, verify_payload};
use indicium_support::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Iterations of the throughput loops.
const SIGN_ITERATIONS_MAX: usize = 40_000;
const VERIFY_ITERATIONS_MAX: usize = 20_000;
/// Most signatures through the token per measurement, and the longest one runs.
const PKCS11_ITERATIONS_MAX: usize = 20_000;
const PKCS11_RUN_MS_MAX: u128 = 5_000;
/// Timed renders for the median.
const RENDER_SAMPLES_MAX: usize = 1_000;

/// On-CPU time of this thread in ns (Linux schedstat), so figures stay meaningful on a machine
/// shared with other jobs. `None` where unavailable.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn load_avg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// Operations per second of on-CPU time, if measurable.
fn per_cpu_s(ops: usize, cpu_start: Option<u64>) -> f64 {
    match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => ops as f64 / ((b - a) as f64 / 1e9),
        _ => -1.0,
    }
}

fn all_facts() -> Vec<PieceFacts> {
    every_kind()
        .into_iter()
        .enumerate()
        .map(|(i, (item, amount))| facts(item, amount, 1 + i as u64))
        .collect()
}

fn main() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let mut keys = VendorKeys::new();
    keys.add(&signer.public_key()).expect("valid key");
    let mut facts = all_facts();

    // Warm up.
    for f in &facts {
        black_box(build_and_sign(f, &signer).expect("sign"));
    }

    // Build + sign, one core, all five kinds in turn with fresh serials.
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    for i in 0..SIGN_ITERATIONS_MAX {
        let f = &mut facts[i % 5];
        f.piece_serial = frank::indicium::layout::PieceSerial::new(i as u64 + 10).expect("serial");
        black_box(build_and_sign(black_box(f), &signer).expect("sign"));
    }
    let sign_s = start.elapsed().as_secs_f64();
    let signed_per_s = SIGN_ITERATIONS_MAX as f64 / sign_s;
    let cpu_signed_per_s = per_cpu_s(SIGN_ITERATIONS_MAX, cpu_start);

    // Render: indicium -> payload -> Data Matrix -> 1-bit label image at 203 dpi.
    let indicia: Vec<_> = facts
        .iter()
        .map(|f| build_and_sign(f, &signer).expect("sign"))
        .collect();
    let mut samples: Vec<Duration> = Vec::with_capacity(RENDER_SAMPLES_MAX);
    for i in 0..RENDER_SAMPLES_MAX {
        let ind = &indicia[i % indicia.len()];
        let t = Instant::now();
        black_box(render_label(black_box(ind), 203).expect("render"));
        samples.push(t.elapsed());
    }
    samples.sort();
    let render_ms_p50 = samples[samples.len() / 2].as_secs_f64() * 1e3;
    let render_ms_p99 = samples[samples.len() * 99 / 100].as_secs_f64() * 1e3;

    // Verify.
    let payloads: Vec<Vec<u8>> = indicia.iter().map(|i| i.to_bytes()).collect();
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    for i in 0..VERIFY_ITERATIONS_MAX {
        black_box(verify_payload(black_box(&payloads[i % payloads.len()]), &keys).expect("valid"));
    }
    let verify_per_s = VERIFY_ITERATIONS_MAX as f64 / start.elapsed().as_secs_f64();
    let cpu_verify_per_s = per_cpu_s(VERIFY_ITERATIONS_MAX, cpu_start);
    let (pkcs11_signed_per_s, pkcs11_one_session_per_s, pkcs11_sessions) = pkcs11_rates();
    let load = load_avg_1m();

    eprintln!(
        "build+sign: {SIGN_ITERATIONS_MAX} in {sign_s:.3} s wall ({cpu_signed_per_s:.0}/s of on-CPU time); \
         render p50 {render_ms_p50:.3} ms p99 {render_ms_p99:.3} ms; \
         verify {verify_per_s:.0}/s wall ({cpu_verify_per_s:.0}/s on-CPU); \
         SoftHSM2 build+sign {pkcs11_signed_per_s:.0}/s on {pkcs11_sessions} sessions, {pkcs11_one_session_per_s:.0}/s on one; load average {load:.2}"
    );
    // The three goal figures are wall-clock; the cpu_* figures divide by this thread's on-CPU
    // time instead, which is what "one core" means when other jobs share the machine.
    println!(
        "{{\"signed_per_s\":{signed_per_s:.0},\"render_ms_p50\":{render_ms_p50:.3},\"verify_per_s\":{verify_per_s:.0},\"cpu_signed_per_s\":{cpu_signed_per_s:.0},\"cpu_verify_per_s\":{cpu_verify_per_s:.0},\"pkcs11_signed_per_s\":{pkcs11_signed_per_s:.0},\"pkcs11_one_session_per_s\":{pkcs11_one_session_per_s:.0},\"pkcs11_sessions\":{pkcs11_sessions},\"load_avg_1m\":{load:.2}}}"
    );
}

/// Build + sign rates through a SoftHSM2 token holding [`TEST_SEED`]'s key: on every session
/// at once (one thread each), and on one thread; and the session count.
fn pkcs11_rates() -> (f64, f64, usize) {
    let token = softhsm::token();
    let key = ed25519_dalek::SigningKey::from_bytes(&TEST_SEED);
    let public = token
        .token_key()
        .import(&key)
        .expect("import into the token");
    let signer =
        frank::pkcs11::Pkcs11Signer::open(&token.config(&public)).expect("open the token key");
    let sessions = signer.sessions();
    let run = |threads: usize, iterations: usize| {
        let per_thread = iterations / threads;
        let start = Instant::now();
        let done: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let signer = &signer;
                    s.spawn(move || {
                        let mut facts = all_facts();
                        let mut n = 0;
                        while n < per_thread && start.elapsed().as_millis() < PKCS11_RUN_MS_MAX {
                            let f = &mut facts[n % 5];
                            f.piece_serial = frank::indicium::layout::PieceSerial::new(
                                (t * per_thread + n) as u64 + 10,
                            )
                            .expect("serial");
                            black_box(build_and_sign(f, signer).expect("token signs"));
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("signing thread"))
                .sum()
        });
        done as f64 / start.elapsed().as_secs_f64()
    };
    run(1, 200); // warm up
    let all = run(sessions, PKCS11_ITERATIONS_MAX);
    let one = run(1, PKCS11_ITERATIONS_MAX);
    (all, one, sessions)
}
