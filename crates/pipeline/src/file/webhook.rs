//! The webhook output (`outputs.webhook`): the run's manifest POSTed as JSON to a URL, retried with the shared
//! policy on transport failures, 5xx, 408 and 429 (a 4xx other than those is final). The URL may carry a token
//! (chat and CI hooks do), so messages show only its scheme and host ([`redacted`]).

use imgport_net::retry::{RetryClass, RetryPolicy, Retryable};
use std::time::Duration;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// `scheme://host[:port]/…`: the URL without what may be secret (path, query, user info).
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/…", u.scheme()),
            (Some(h), None) => format!("{}://{h}/…", u.scheme()),
            (None, _) => format!("{}://…", u.scheme()),
        },
        Err(_) => "(a webhook URL that does not parse)".into(),
    }
}

/// Whether `url` is one a webhook may have: http or https with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

#[derive(Debug)]
struct Failure {
    class: RetryClass,
    message: String,
}

impl Retryable for Failure {
    fn retry_class(&self) -> RetryClass {
        self.class
    }
}

/// POSTs `body` (JSON) to `url` with the shared policy (5 attempts within 2 minutes); answers the HTTP status of
/// the delivery and the attempts it took.
pub async fn post(url: &str, body: &serde_json::Value) -> Result<(u16, u32), String> {
    post_with(url, body, &RetryPolicy::default().with_deadline(Duration::from_secs(120))).await
}

/// [`post`] with a retry policy of the caller's.
pub async fn post_with(url: &str, body: &serde_json::Value, policy: &RetryPolicy) -> Result<(u16, u32), String> {
    let client = imgport_net::http::ClientOptions::new(Duration::from_secs(10))
        .total_timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let data = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut attempts = 0;
    let answer = policy
        .run("webhook", |n| {
            attempts = n;
            let (client, data) = (client.clone(), data.clone());
            async move {
                let sent = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("X-Imgport-Event", "pipeline-run")
                    .body(data)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let class = match status {
                            429 => RetryClass::Throttle,
                            408 | 500..=599 => RetryClass::Retry,
                            _ => RetryClass::Fatal,
                        };
                        Err(Failure { class, message: format!("answered HTTP {status}") })
                    }
                    Err(e) => Err(Failure {
                        class: RetryClass::Retry,
                        message: imgport_net::http::describe_transport_error(&e.without_url()),
                    }),
                }
            }
        })
        .await;
    match answer {
        Ok(status) => Ok((status, attempts)),
        Err(f) => Err(format!("webhook {}: {} (after {attempts} attempt(s))", redacted(url), f.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets_and_checked() {
        assert_eq!(redacted("https://hooks.example.com/services/T000/B000/XXXX?x=1"), "https://hooks.example.com/…");
        assert_eq!(redacted("https://user:pass@ci.example:8443/hook"), "https://ci.example:8443/…");
        assert_eq!(redacted("https://user:p%2Fa@ci.example/hook#frag"), "https://ci.example/…");
        let odd = "https://user:s3cr/et@host/x";
        assert!(!redacted(odd).contains("s3cr") && !redacted(odd).contains("et@"), "{}", redacted(odd));
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(check_url("http://127.0.0.1:9/x").is_ok());
        assert!(check_url("ftp://x/y").is_err() && check_url("https://").is_err() && check_url("x").is_err());
    }
}
