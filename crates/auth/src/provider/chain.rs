//! The default chain: environment, OIDC, aliyun CLI profile, shared credentials file, ECS instance metadata.

use super::{BoxFuture, Clock, CredentialsError, CredentialsProvider, Imds, Oidc, Refreshing};
use super::{CliProfile, IniProfile};
use crate::{Credentials, Env};
use std::sync::{Arc, Mutex};

/// Tries each configured source in the SDKs' order and keeps using the first that works.
pub struct DefaultChain {
    env: Env,
    clock: Clock,
    last: Mutex<Option<Arc<dyn CredentialsProvider>>>,
}

type Candidate = (&'static str, Option<Result<Arc<dyn CredentialsProvider>, CredentialsError>>);

impl DefaultChain {
    pub fn new(env: Env) -> Self {
        DefaultChain { env, clock: super::system_clock(), last: Mutex::new(None) }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn candidates(&self) -> Vec<Candidate> {
        let env = &self.env;
        let clock = &self.clock;
        let arc = |p: Arc<dyn CredentialsProvider>| p;
        vec![
            ("env", super::from_env(env).map(|r| r.map(|p| arc(Arc::new(p))))),
            (
                "oidc_role_arn",
                Oidc::from_env(env, clock.clone())
                    .map(|r| r.map(|o| arc(Arc::new(Refreshing::new(o, "oidc_role_arn (env)", clock.clone()))))),
            ),
            ("cli_profile", CliProfile::from_env(env, clock.clone())),
            ("profile", IniProfile::from_env(env, clock.clone())),
            (
                "ecs_ram_role",
                Imds::applies(env).then(|| {
                    Imds::new(env, None).map(|i| arc(Arc::new(Refreshing::new(i, "ecs_ram_role", clock.clone()))))
                }),
            ),
        ]
    }

    /// Credentials and the name of the source that supplied them.
    pub async fn resolve(&self) -> Result<(Credentials, String), CredentialsError> {
        let last = self.last.lock().ok().and_then(|l| l.clone());
        if let Some(p) = last {
            return Ok((p.credentials().await?, p.name()));
        }
        let mut tried = Vec::new();
        for (kind, candidate) in self.candidates() {
            match candidate {
                None => tried.push(format!("{kind}: not configured")),
                Some(Err(e)) => tried.push(e.to_string()),
                Some(Ok(p)) => match p.credentials().await {
                    Ok(c) => {
                        if let Ok(mut l) = self.last.lock() {
                            *l = Some(p.clone());
                        }
                        return Ok((c, p.name()));
                    }
                    Err(e) => tried.push(e.to_string()),
                },
            }
        }
        Err(CredentialsError::NoneFound(tried))
    }
}

impl CredentialsProvider for DefaultChain {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move { self.resolve().await.map(|(c, _)| c) })
    }

    fn name(&self) -> String {
        match self.last.lock().ok().and_then(|l| l.as_ref().map(|p| p.name())) {
            Some(n) => format!("default/{n}"),
            None => "default".to_string(),
        }
    }

    fn invalidate<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, ()> {
        let last = self.last.lock().ok().and_then(|l| l.clone());
        Box::pin(async move {
            if let Some(p) = last {
                p.invalidate(access_key_id).await;
            }
        })
    }
}
