//! The load driver: workers calling as fast as they can (closed loop) for a fixed time, each
//! call's latency recorded in an HDR histogram, failures counted by gRPC code.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, to 3 significant figures.
const MAX_MICROS: u64 = 60_000_000;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl Outcome {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency_us: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
            ok: 0,
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
        })
    }

    fn merge(&mut self, other: Outcome) -> anyhow::Result<()> {
        self.latency_us.add(&other.latency_us)?;
        self.ok += other.ok;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        Ok(())
    }

    /// Adds a later round of the same measurement, run after this one: its time adds up,
    /// so the throughput stays a rate over both.
    pub fn append_round(&mut self, more: Outcome) -> anyhow::Result<()> {
        self.elapsed += more.elapsed;
        let elapsed = self.elapsed;
        self.merge(more)?;
        self.elapsed = elapsed;
        Ok(())
    }

    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            self.ok as f64 / secs
        }
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }

    /// One line for the table.
    pub fn line(&self, label: &str) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "  {label:<34} {:>9.0}/s  p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  max {:>8.3} ms  ok {:>7}  errors {errors}",
            self.throughput(),
            self.ms(0.50),
            self.ms(0.90),
            self.ms(0.99),
            self.max_ms(),
            self.ok,
        )
    }
}

/// Runs `workers` loops for `duration`, each calling `call(worker)` back to back.
pub async fn closed_loop<F, Fut>(
    workers: usize,
    duration: Duration,
    call: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new()?;
            while Instant::now() < deadline {
                let t = Instant::now();
                let result = call(w).await;
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(MAX_MICROS);
                match result {
                    Ok(()) => {
                        out.ok += 1;
                        out.latency_us.saturating_record(us.max(1));
                    }
                    Err(status) => {
                        *out.errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                    }
                }
            }
            out.elapsed = started.elapsed();
            anyhow::Ok(out)
        }));
    }
    let mut total = Outcome::new()?;
    for t in tasks {
        total.merge(t.await??)?;
    }
    Ok(total)
}

/// Starts calls at a fixed `rate` per second for `duration`, whatever the answers do (open
/// loop), so a slow server shows as latency instead of hiding it. Each call's latency is
/// counted from the moment it was due, not from when it happened to start; at most
/// `max_in_flight` calls are outstanding (the rest are counted as `Overload`).
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    call: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let started = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (duration.as_secs_f64() * rate) as usize;
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<u64, String>>();
    let mut overload = 0u64;
    for k in 0..total {
        let due = started + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            overload += 1;
            continue;
        };
        let call = call.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = call(k).await;
            let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(MAX_MICROS);
            let _ = tx.send(result.map(|()| us).map_err(|s| format!("{:?}", s.code())));
            drop(permit);
        });
    }
    drop(tx);
    let mut out = Outcome::new()?;
    while let Some(r) = rx.recv().await {
        match r {
            Ok(us) => {
                out.ok += 1;
                out.latency_us.saturating_record(us.max(1));
            }
            Err(code) => *out.errors.entry(code).or_default() += 1,
        }
    }
    if overload > 0 {
        out.errors.insert("Overload".to_owned(), overload);
    }
    out.elapsed = started.elapsed();
    Ok(out)
}
