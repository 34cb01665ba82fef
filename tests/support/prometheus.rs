//! A real Prometheus (Debian's `prometheus`, `/usr/bin/prometheus`) for the tests: scraping
//! the given targets every second under the job name `vouch`, with rule files loaded, on a
//! free loopback port, storing into its own temporary directory. Killed and reaped on drop.
//! Queries go through its HTTP API, as Grafana's and anyone else's do. `.ci/run` installs
//! the package (it also brings `promtool`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{STEP, free_port, wait_for_child};

/// Where Debian installs the server and its rule tool.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// How often targets are scraped and rules evaluated: short, so a test sees rates within
/// seconds.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// Tries with new ports when another process took the chosen one first.
const START_ATTEMPTS: usize = 5;

pub struct Prometheus {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `/metrics` of each target (job `vouch`) and evaluating
    /// `rule_files`, and waits until it is ready.
    pub fn start(targets: &[SocketAddr], rule_files: &[PathBuf]) -> Prometheus {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut p = Prometheus::spawn(targets, rule_files);
            if p.wait_ready() {
                return p;
            }
            last_log = p.log();
        }
        panic!("prometheus did not start in {START_ATTEMPTS} attempts:\n{last_log}");
    }

    fn spawn(targets: &[SocketAddr], rule_files: &[PathBuf]) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus tempdir");
        let every = format!("{}s", SCRAPE_INTERVAL.as_secs());
        // JSON is YAML, and serde_json quotes the temp paths correctly.
        let config = json!({
            "global": {"scrape_interval": every, "evaluation_interval": every,
                       "scrape_timeout": every},
            "rule_files": rule_files,
            "scrape_configs": [{
                "job_name": "vouch",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": targets.iter().map(|t| t.to_string()).collect::<Vec<_>>()}],
            }],
        });
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn /usr/bin/prometheus (apt-get install prometheus)");
        Prometheus {
            addr,
            child: Some(child),
            dir,
        }
    }

    /// Polls `/-/ready` until it answers 200 (see [`wait_for_child`]).
    fn wait_ready(&mut self) -> bool {
        let addr = self.addr;
        let log_path = self.dir.path().join("prometheus.log");
        wait_for_child(
            &mut self.child,
            || probe_ready(addr),
            &format!("prometheus on {addr}"),
            || std::fs::read_to_string(&log_path).unwrap_or_default(),
        )
    }

    /// Waits (bounded) until every target has been scraped once. Prometheus hands new
    /// targets to its scrapers in batches, about five seconds after start: a load driven
    /// before that would be over before the first scrape.
    pub async fn wait_scraped(&self, targets: usize) {
        let until = std::time::Instant::now() + 2 * STEP;
        loop {
            if self.value(r#"count(up{job="vouch"} == 1)"#).await == targets as f64 {
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "prometheus did not scrape its targets:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What Prometheus logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params`: the `data` of a `success` answer, or why not.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url =
            reqwest::Url::parse_with_params(&format!("http://{}/api/v1/{path}", self.addr), params)
                .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(STEP)
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"].clone())
    }

    /// An instant query: its `data` (`resultType`, `result`), or Prometheus' error.
    pub async fn query(&self, expr: &str) -> Result<Value, String> {
        self.api("query", &[("query", expr)]).await
    }

    /// The samples of an instant query: an empty list when the answer is no data, the one
    /// value of a scalar as one sample.
    pub async fn samples(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.query(expr).await?;
        Ok(match data["resultType"].as_str() {
            Some("vector" | "matrix") => data["result"].as_array().cloned().unwrap_or_default(),
            _ => vec![data["result"].clone()],
        })
    }

    /// The value of a query answering one sample (`NaN` when it has none or several).
    pub async fn value(&self, expr: &str) -> f64 {
        match self.samples(expr).await {
            Ok(s) if s.len() == 1 => s[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN),
            _ => f64::NAN,
        }
    }
}

/// One plain `GET /-/ready`: true on a 200.
fn probe_ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    if tcp
        .write_all(b"GET /-/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `promtool ARGS...` run in `dir`: whether it succeeded, and what it printed.
pub fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(PROMTOOL)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run /usr/bin/promtool (apt-get install prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
