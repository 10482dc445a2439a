//! Service endpoints: region to host for OSS, ECS, STS and RAM; custom domains; per-service overrides.

use crate::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Oss,
    Ecs,
    Sts,
    Ram,
}

impl Service {
    /// The environment variable that points the service somewhere else (a local emulator, a proxy).
    pub fn override_var(self) -> &'static str {
        match self {
            Service::Oss => "IMGPORT_OSS_ENDPOINT",
            Service::Ecs => "IMGPORT_ECS_ENDPOINT",
            Service::Sts => "IMGPORT_STS_ENDPOINT",
            Service::Ram => "IMGPORT_RAM_ENDPOINT",
        }
    }
}

/// Which OSS network to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OssNetwork {
    #[default]
    Public,
    /// From ECS instances in the same region: no traffic charges.
    Internal,
    /// Global transfer acceleration.
    Accelerate,
}

/// Why an upload's OSS endpoint is the one it is ([`oss_network`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OssReason {
    /// `IMGPORT_OSS_ENDPOINT` is set: it wins over everything.
    Override,
    /// Asked for (`--oss-internal`).
    Forced,
    /// The instance metadata service answered the import region: imgport runs on ECS there.
    OnEcsInRegion,
    /// imgport runs on ECS, but in another region: the internal endpoint is not reachable from there.
    OnEcsElsewhere(String),
    /// Not on ECS (or the metadata service did not answer within its timeout).
    NotOnEcs,
}

impl std::fmt::Display for OssReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OssReason::Override => write!(f, "IMGPORT_OSS_ENDPOINT"),
            OssReason::Forced => write!(f, "--oss-internal"),
            OssReason::OnEcsInRegion => write!(f, "running on ECS in the import region"),
            OssReason::OnEcsElsewhere(r) => write!(f, "running on ECS in {r}, not in the import region"),
            OssReason::NotOnEcs => write!(f, "not running on ECS"),
        }
    }
}

/// The OSS network for an upload into `region`: `IMGPORT_OSS_ENDPOINT` wins (the network is then unused), then
/// `force_internal`, then the internal network when imgport runs on ECS in that region (`instance_region`, what
/// the metadata service answered), else the public one. The internal endpoint costs no traffic and is faster,
/// but answers only from ECS (VPC) in its own region.
pub fn choose_oss_network(
    region: &str,
    force_internal: bool,
    instance_region: Option<&str>,
    env: &Env,
) -> (OssNetwork, OssReason) {
    if env.get(Service::Oss.override_var()).is_some_and(|e| !e.is_empty()) {
        return (OssNetwork::Public, OssReason::Override);
    }
    if force_internal {
        return (OssNetwork::Internal, OssReason::Forced);
    }
    match instance_region {
        Some(r) if r == region => (OssNetwork::Internal, OssReason::OnEcsInRegion),
        Some(r) => (OssNetwork::Public, OssReason::OnEcsElsewhere(r.to_string())),
        None => (OssNetwork::Public, OssReason::NotOnEcs),
    }
}

/// [`choose_oss_network`], asking the instance metadata service for its region only when that decides it (no
/// override, not forced), only where [`crate::provider::Imds::applies`] (an Alibaba Cloud machine, or a metadata
/// endpoint configured), once, and for at most `timeout`.
pub async fn oss_network(
    region: &str,
    force_internal: bool,
    env: &Env,
    timeout: std::time::Duration,
) -> (OssNetwork, OssReason) {
    let decided = force_internal || env.get(Service::Oss.override_var()).is_some_and(|e| !e.is_empty());
    let instance = if decided { None } else { crate::provider::instance_region(env, timeout).await };
    choose_oss_network(region, force_internal, instance.as_deref(), env)
}

/// An endpoint: scheme and host (with port when not the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    /// A user-supplied endpoint rather than one derived from the region.
    pub custom: bool,
}

impl Endpoint {
    /// Parses `https://host[:port]`, `http://host:port` or a bare host (HTTPS).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim().trim_end_matches('/');
        let (scheme, host) = match s.split_once("://") {
            Some((scheme, host)) => (scheme.to_ascii_lowercase(), host),
            None => ("https".to_string(), s),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("endpoint {s:?}: scheme must be http or https"));
        }
        if host.is_empty() || host.contains('/') || host.contains('?') || host.contains('@') || host.contains(' ') {
            return Err(format!("endpoint {s:?}: expected scheme://host[:port] with no path"));
        }
        Ok(Endpoint { scheme, host: host.to_ascii_lowercase(), custom: true })
    }

    fn derived(host: String) -> Endpoint {
        Endpoint { scheme: "https".to_string(), host, custom: false }
    }

    /// `scheme://host`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// The host without the port.
    pub fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        self.host.rsplit_once(':').map_or(self.host.as_str(), |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                &self.host
            }
        })
    }

    /// An IP address or `localhost`: buckets cannot be subdomains of it.
    pub fn is_ip_or_localhost(&self) -> bool {
        let h = self.hostname();
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok()
    }
}

/// `oss-<region>.aliyuncs.com`, `oss-<region>-internal.aliyuncs.com` or `oss-accelerate.aliyuncs.com`.
pub fn oss_host(region: &str, network: OssNetwork) -> String {
    match network {
        OssNetwork::Public => format!("oss-{region}.aliyuncs.com"),
        OssNetwork::Internal => format!("oss-{region}-internal.aliyuncs.com"),
        OssNetwork::Accelerate => "oss-accelerate.aliyuncs.com".to_string(),
    }
}

/// OSS's S3-compatible endpoint (AWS SigV4), `s3.oss-<region>.aliyuncs.com`.
pub fn oss_s3_host(region: &str) -> String {
    format!("s3.oss-{region}.aliyuncs.com")
}

/// Regions whose ECS API is not at `ecs.<region>.aliyuncs.com`, from the official ECS SDK's endpoint map.
const ECS_HOSTS: &[(&str, &str)] = &[
    ("cn-hangzhou", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-shanghai-finance-1", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-shenzhen-finance-1", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-north-2-gov-1", "ecs.aliyuncs.com"),
    ("ap-northeast-2-pop", "ecs.aliyuncs.com"),
    ("cn-beijing-finance-pop", "ecs.aliyuncs.com"),
    ("cn-beijing-gov-1", "ecs.aliyuncs.com"),
    ("cn-beijing-nu16-b01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-edge-1", "ecs.cn-qingdao-nebula.aliyuncs.com"),
    ("cn-fujian", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-haidian-cm12-c01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-hangzhou-bj-b01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-hangzhou-finance", "ecs.aliyuncs.com"),
    ("cn-hongkong-finance-pop", "ecs.aliyuncs.com"),
    ("cn-huhehaote-nebula-1", "ecs.cn-qingdao-nebula.aliyuncs.com"),
    ("cn-shanghai-et15-b01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-shanghai-et2-b01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-shanghai-inner", "ecs.aliyuncs.com"),
    ("cn-shenzhen-inner", "ecs.aliyuncs.com"),
    ("cn-shenzhen-st4-d01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-shenzhen-su18-b01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-wuhan", "ecs.aliyuncs.com"),
    ("cn-yushanfang", "ecs.aliyuncs.com"),
    ("cn-zhangbei", "ecs.aliyuncs.com"),
    ("cn-zhangbei-na61-b01", "ecs-cn-hangzhou.aliyuncs.com"),
    ("cn-zhangjiakou-na62-a01", "ecs.cn-zhangjiakou.aliyuncs.com"),
    ("cn-zhengzhou-nebula-1", "ecs.cn-qingdao-nebula.aliyuncs.com"),
    ("eu-west-1-oxs", "ecs.cn-shenzhen-cloudstone.aliyuncs.com"),
    ("rus-west-1-pop", "ecs.aliyuncs.com"),
];

/// The ECS API host of a region.
pub fn ecs_host(region: &str) -> String {
    ECS_HOSTS
        .iter()
        .find(|(r, _)| *r == region)
        .map_or_else(|| format!("ecs.{region}.aliyuncs.com"), |(_, h)| h.to_string())
}

/// STS: the global `sts.aliyuncs.com`, or the regional (`sts.<region>`) or VPC (`sts-vpc.<region>`) endpoint.
pub fn sts_host(region: Option<&str>, vpc: bool) -> String {
    match region {
        Some(r) => format!("{}.{r}.aliyuncs.com", if vpc { "sts-vpc" } else { "sts" }),
        None => "sts.aliyuncs.com".to_string(),
    }
}

/// RAM is a global service.
pub fn ram_host() -> String {
    "ram.aliyuncs.com".to_string()
}

/// Resolves a service's endpoint: an explicit one (a command's `--endpoint`) first, then the service's
/// `IMGPORT_*_ENDPOINT` variable, then the regional default. For STS without a region, `ALIBABA_CLOUD_STS_REGION`
/// and `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED` pick the regional endpoint, as the SDKs do.
pub fn resolve(
    service: Service,
    region: Option<&str>,
    network: OssNetwork,
    explicit: Option<&str>,
    env: &Env,
) -> Result<Endpoint, String> {
    if let Some(e) = explicit.filter(|e| !e.is_empty()) {
        return Endpoint::parse(e);
    }
    if let Some(e) = env.get(service.override_var()) {
        return Endpoint::parse(e).map_err(|m| format!("{}: {m}", service.override_var()));
    }
    let need_region = || region.ok_or_else(|| format!("{service:?} needs a region (or an endpoint)"));
    Ok(Endpoint::derived(match service {
        Service::Oss => oss_host(need_region()?, network),
        Service::Ecs => ecs_host(need_region()?),
        Service::Sts => {
            let vpc = env.flag("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED");
            sts_host(region.or_else(|| env.get("ALIBABA_CLOUD_STS_REGION")), vpc)
        }
        Service::Ram => ram_host(),
    }))
}

/// How an OSS request names its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketStyle {
    /// `bucket.endpoint/key` (the default).
    VirtualHosted,
    /// `endpoint/bucket/key` (IP endpoints, some emulators and gateways).
    Path,
    /// The endpoint is a custom domain bound to one bucket: `domain/key`.
    Cname,
}

impl BucketStyle {
    /// Virtual-hosted unless the endpoint is an IP address or `localhost`, where only path style can work.
    pub fn default_for(endpoint: &Endpoint) -> BucketStyle {
        if endpoint.is_ip_or_localhost() {
            BucketStyle::Path
        } else {
            BucketStyle::VirtualHosted
        }
    }
}

/// Host and decoded path of an OSS object (or bucket, with no key) under the given addressing style.
pub fn oss_location(endpoint: &Endpoint, style: BucketStyle, bucket: &str, key: Option<&str>) -> (String, String) {
    let key = key.unwrap_or("");
    match style {
        BucketStyle::VirtualHosted => (format!("{bucket}.{}", endpoint.host), format!("/{key}")),
        BucketStyle::Path => (endpoint.host.clone(), format!("/{bucket}/{key}")),
        BucketStyle::Cname => (endpoint.host.clone(), format!("/{key}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_hosts() {
        assert_eq!(oss_host("cn-beijing", OssNetwork::Public), "oss-cn-beijing.aliyuncs.com");
        assert_eq!(oss_host("cn-beijing", OssNetwork::Internal), "oss-cn-beijing-internal.aliyuncs.com");
        assert_eq!(oss_host("cn-beijing", OssNetwork::Accelerate), "oss-accelerate.aliyuncs.com");
        assert_eq!(ecs_host("cn-beijing"), "ecs.cn-beijing.aliyuncs.com");
        assert_eq!(ecs_host("cn-hangzhou"), "ecs-cn-hangzhou.aliyuncs.com");
        assert_eq!(ecs_host("cn-wuhan"), "ecs.aliyuncs.com");
        assert_eq!(sts_host(None, false), "sts.aliyuncs.com");
        assert_eq!(sts_host(Some("cn-shanghai"), true), "sts-vpc.cn-shanghai.aliyuncs.com");
        assert_eq!(oss_s3_host("us-west-1"), "s3.oss-us-west-1.aliyuncs.com");
    }

    #[test]
    fn oss_network_choice() {
        let none = Env::from_vars(Vec::<(String, String)>::new());
        let choose = |force, instance, env| choose_oss_network("cn-beijing", force, instance, env);
        assert_eq!(choose(false, None, &none), (OssNetwork::Public, OssReason::NotOnEcs));
        assert_eq!(choose(false, Some("cn-beijing"), &none), (OssNetwork::Internal, OssReason::OnEcsInRegion));
        assert_eq!(
            choose(false, Some("cn-shanghai"), &none),
            (OssNetwork::Public, OssReason::OnEcsElsewhere("cn-shanghai".into()))
        );
        assert_eq!(choose(true, None, &none), (OssNetwork::Internal, OssReason::Forced));
        assert_eq!(choose(true, Some("cn-shanghai"), &none), (OssNetwork::Internal, OssReason::Forced));
        let overridden = Env::from_vars([("IMGPORT_OSS_ENDPOINT", "http://127.0.0.1:9000")]);
        assert_eq!(choose(true, Some("cn-beijing"), &overridden).1, OssReason::Override);
        let (network, _) = choose(true, None, &overridden);
        let e = resolve(Service::Oss, Some("cn-beijing"), network, None, &overridden);
        assert_eq!(e.map(|e| e.url()), Ok("http://127.0.0.1:9000".to_string()), "the override wins");
        let (network, _) = choose(false, Some("cn-beijing"), &none);
        let e = resolve(Service::Oss, Some("cn-beijing"), network, None, &none);
        assert_eq!(e.map(|e| e.url()), Ok("https://oss-cn-beijing-internal.aliyuncs.com".to_string()));
    }

    #[test]
    fn overrides_win() {
        let env = Env::from_vars([
            ("IMGPORT_ECS_ENDPOINT", "http://127.0.0.1:9000"),
            ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
        ]);
        let e = resolve(Service::Ecs, Some("cn-beijing"), OssNetwork::Public, None, &env);
        assert_eq!(e.as_ref().map(Endpoint::url), Ok("http://127.0.0.1:9000".to_string()));
        let e = resolve(Service::Ecs, Some("cn-beijing"), OssNetwork::Public, Some("ecs.example.com"), &env);
        assert_eq!(e.map(|e| e.url()), Ok("https://ecs.example.com".to_string()));
        let e = resolve(Service::Sts, None, OssNetwork::Public, None, &env);
        assert_eq!(e.map(|e| e.host), Ok("sts.cn-beijing.aliyuncs.com".to_string()));
        assert!(resolve(Service::Oss, None, OssNetwork::Public, None, &env).is_err());
        let bad = Env::from_vars([("IMGPORT_OSS_ENDPOINT", "ftp://x")]);
        assert!(resolve(Service::Oss, Some("cn-beijing"), OssNetwork::Public, None, &bad).is_err());
    }

    #[test]
    fn bucket_styles() {
        let public = Endpoint::derived(oss_host("cn-hangzhou", OssNetwork::Public));
        assert_eq!(BucketStyle::default_for(&public), BucketStyle::VirtualHosted);
        assert_eq!(
            oss_location(&public, BucketStyle::VirtualHosted, "b", Some("k/x")),
            ("b.oss-cn-hangzhou.aliyuncs.com".to_string(), "/k/x".to_string())
        );
        let local = Endpoint::parse("http://127.0.0.1:8080").unwrap_or_else(|_| public.clone());
        assert_eq!(local.hostname(), "127.0.0.1");
        assert_eq!(BucketStyle::default_for(&local), BucketStyle::Path);
        assert_eq!(
            oss_location(&local, BucketStyle::Path, "b", Some("k")),
            ("127.0.0.1:8080".to_string(), "/b/k".to_string())
        );
        let cname = Endpoint::parse("https://img.example.com").unwrap_or_else(|_| public.clone());
        assert_eq!(
            oss_location(&cname, BucketStyle::Cname, "b", Some("k")),
            ("img.example.com".to_string(), "/k".to_string())
        );
        assert!(Endpoint::parse("http://[::1]:9000").is_ok_and(|e| e.is_ip_or_localhost()));
        assert!(Endpoint::parse("https://host/path").is_err());
    }
}
