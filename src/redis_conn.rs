//! A lazily opened, shared Redis connection with bounded connect and call times, used by the
//! verdict tier and the claim store. Opening is lazy so vouch starts (and stays ready) while
//! Redis is down; the connection manager reconnects by itself once open.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub struct RedisConnector {
    client: Result<redis::Client, String>,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

impl RedisConnector {
    pub fn new(url: &str, timeout: Duration) -> RedisConnector {
        RedisConnector {
            client: redis::Client::open(url).map_err(|e| format!("redis URL {url:?}: {e}")),
            conn: tokio::sync::Mutex::new(None),
            timeout,
        }
    }

    /// Budget of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection if it is open, without trying to open it.
    pub async fn current(&self) -> Option<ConnectionManager> {
        self.conn.lock().await.clone()
    }

    /// The connection, opening it if needed (bounded by twice the call budget).
    pub async fn get(&self) -> Result<ConnectionManager, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        match tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        {
            Ok(Ok(c)) => {
                *guard = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(format!("cannot connect to redis: {e}")),
            Err(_) => Err("cannot connect to redis: timed out".to_string()),
        }
    }
}
