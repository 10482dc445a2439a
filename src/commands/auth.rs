//! `imgport auth whoami`: which credential source is in use, without ever showing the secret or the token.

use crate::output::print_json;
use imgport_auth::provider::DefaultChain;
use imgport_auth::time::{now, UtcTime};
use imgport_auth::{mask_access_key_id, Env};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show which source supplies credentials (environment, OIDC, CLI profile, credentials file, instance role),
    /// the access key id masked, and whether a security token is present and when it expires.
    Whoami(WhoamiArgs),
}

#[derive(clap::Args)]
pub struct WhoamiArgs {
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Out {
    source: String,
    access_key_id: String,
    security_token: bool,
    expiration: Option<String>,
    expires_in_seconds: Option<i64>,
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Whoami(a) => whoami(a),
    }
}

fn whoami(args: WhoamiArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imgport: error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let chain = DefaultChain::new(Env::from_process());
    let (creds, source) = match rt.block_on(chain.resolve()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    let out = Out {
        source,
        access_key_id: mask_access_key_id(&creds.access_key_id),
        security_token: creds.token().is_some(),
        expiration: creds.expiration.map(|e| UtcTime::from_unix(e).iso8601()),
        expires_in_seconds: creds.expiration.map(|e| e - now()),
    };
    if args.json {
        print_json(&out);
    } else {
        outln!("source:         {}", out.source);
        outln!("access key id:  {}", out.access_key_id);
        outln!("security token: {}", if out.security_token { "present" } else { "none" });
        match (&out.expiration, out.expires_in_seconds) {
            (Some(at), Some(left)) if left >= 0 => outln!("expires:        {at} (in {}m {}s)", left / 60, left % 60),
            (Some(at), _) => outln!("expires:        {at} (expired)"),
            _ if out.security_token => outln!("expires:        unknown (a token without a stated expiry)"),
            _ => outln!("expires:        never (long-term key)"),
        }
    }
    0
}
