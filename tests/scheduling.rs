//! examples/scheduling, checked without a cluster: the systemd units pass `systemd-analyze verify`, the YAML parses
//! (Python's yaml), the settings the examples exist for are set (one run per pipeline at a time, retries only on the
//! exit codes a rerun can finish, credentials from secrets), the Kubernetes objects use only the API's field names,
//! Argo's retry expression is evaluated for every exit code, and the pipelines the ConfigMaps carry pass
//! `imgport pipeline check`.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// imgport's exit codes that need a fix before a rerun can succeed.
const PERMANENT: [i64; 4] = [2, 3, 4, 6];

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scheduling").join(name)
}

/// The YAML documents of a file, as JSON.
fn yaml(name: &str) -> Vec<Value> {
    require_python("yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = list(yaml.safe_load_all(open(sys.argv[1])))\n\
             # YAML 1.1 reads a bare `on` key as true: GitHub reads it as the string.\n\
             fix = lambda d: {('on' if k is True else k): v for k, v in d.items()} if isinstance(d, dict) else d\n\
             print(json.dumps([fix(d) for d in docs]))",
        ])
        .arg(example(name))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

/// Every key of `v` is one the API defines for that object.
fn only_fields(what: &str, v: &Value, known: &[&str]) {
    let unknown: Vec<&str> = keys(v).into_iter().filter(|k| !known.contains(k)).collect();
    assert!(unknown.is_empty(), "{what}: fields the API does not have: {unknown:?}");
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("a list").iter().map(|n| n.as_i64().expect("an integer")).collect()
}

/// `imgport pipeline check` on each pipeline file a ConfigMap holds: each keeps its state and leases in the
/// bucket (`state`, `lease`), and passes.
fn check_pipelines(config_map: &Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = config_map["data"].as_object().expect("data");
    assert!(!data.is_empty());
    for (name, text) in data {
        let text = text.as_str().expect("text");
        assert!(text.contains("state = \"oss://") && text.contains("lease = "), "{name}: state in the bucket");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let out = imgport().args(["pipeline", "check"]).arg(&path).output().expect("runs");
        assert!(out.status.success(), "{name}:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn systemd_units_verify_and_retry_only_what_a_rerun_finishes() {
    require("systemd-analyze");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_imgport");
    let service = std::fs::read_to_string(example("imgport-pipeline@.service")).expect("service");
    let timer = std::fs::read_to_string(example("imgport-pipeline@.timer")).expect("timer");
    // An instance as installed, the binary where the test can put it.
    assert!(service.contains("ExecStart=/usr/local/bin/imgport pipeline run /etc/imgport/pipelines/%i.toml --json"));
    std::fs::write(dir.path().join("imgport-pipeline@golden.service"), service.replace("/usr/local/bin/imgport", bin))
        .expect("write");
    std::fs::write(dir.path().join("imgport-pipeline@golden.timer"), &timer).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("imgport-pipeline@golden.timer"))
        .arg(dir.path().join("imgport-pipeline@golden.service"))
        .output()
        .expect("systemd-analyze runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify:\n{err}");

    let settings = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let get = |s: &[(String, String)], k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let t = settings(&timer);
    assert_eq!(get(&t, "Persistent").as_deref(), Some("true"));
    assert!(get(&t, "RandomizedDelaySec").is_some());
    assert_eq!(get(&t, "OnCalendar").as_deref(), Some("*-*-* 02:00:00"));
    let s = settings(&service);
    assert_eq!(get(&s, "Type").as_deref(), Some("oneshot"));
    assert_eq!(get(&s, "Restart").as_deref(), Some("on-failure"));
    let prevent: Vec<i64> = get(&s, "RestartPreventExitStatus")
        .expect("RestartPreventExitStatus")
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect();
    assert_eq!(prevent, PERMANENT);
}

#[test]
fn cron_lines_take_a_lock_and_run_one_pipeline_each() {
    let text = std::fs::read_to_string(example("crontab")).expect("crontab");
    let jobs: Vec<&str> =
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('=')).collect();
    assert!(jobs.len() >= 2, "{jobs:?}");
    let mut locks = BTreeSet::new();
    for job in jobs {
        let f: Vec<&str> = job.split_whitespace().collect();
        // /etc/cron.d format: five time fields, the user, the command.
        for (field, max) in f[..5].iter().zip([59, 23, 31, 12, 7]) {
            assert!(*field == "*" || field.parse::<u32>().is_ok_and(|n| n <= max), "{job}");
        }
        assert_eq!(f[5], "imgport", "{job}");
        assert_eq!((f[6], f[7]), ("flock", "-n"), "{job}");
        assert!(locks.insert(f[8]), "a lock per pipeline: {job}");
        assert_eq!(&f[9..12], ["imgport", "pipeline", "run"], "{job}");
        assert!(f[12].ends_with(".toml") && f[13] == "--json", "{job}");
    }
}

#[test]
fn github_workflow_runs_a_job_per_pipeline_one_at_a_time_each() {
    let docs = yaml("github-actions.yml");
    let w = &docs[0];
    assert!(w["on"]["schedule"][0]["cron"].is_string(), "{w}");
    assert!(w["on"].get("workflow_dispatch").is_some(), "{w}");
    let job = &w["jobs"]["run"];
    only_fields(
        "job",
        job,
        &["runs-on", "timeout-minutes", "strategy", "concurrency", "env", "steps", "permissions", "container"],
    );
    assert!(job["strategy"]["matrix"]["pipeline"].as_array().is_some_and(|p| !p.is_empty()), "{job}");
    assert_eq!(job["strategy"]["fail-fast"], false);
    assert!(job["timeout-minutes"].as_i64().is_some_and(|m| m <= 360), "hosted jobs stop at 6 h");
    assert_eq!(job["concurrency"]["group"], "imgport-${{ matrix.pipeline }}");
    assert_eq!(job["concurrency"]["cancel-in-progress"], false, "a run in progress is never cancelled");
    let run_step = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("pipeline run")))
        .expect("a step running the pipeline");
    for var in ["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"] {
        assert_eq!(run_step["env"][var], format!("${{{{ secrets.{var} }}}}"), "{run_step}");
        assert!(run_step["run"].as_str().unwrap().contains(&format!("-e {var}")), "passed into the container");
    }
    assert!(run_step["run"].as_str().unwrap().contains("\"pipelines/${{ matrix.pipeline }}.toml\" --json"));
}

const POD_SPEC: &[&str] = &[
    "restartPolicy",
    "securityContext",
    "containers",
    "volumes",
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "activeDeadlineSeconds",
    "terminationGracePeriodSeconds",
];
const CONTAINER: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "securityContext",
    "resources",
    "volumeMounts",
    "workingDir",
    "imagePullPolicy",
];

#[test]
fn kubernetes_cronjob_forbids_overlap_and_fails_the_job_on_permanent_exit_codes() {
    let docs = yaml("kubernetes-cronjob.yaml");
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").expect("ConfigMap");
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").expect("CronJob");
    assert_eq!(cron["apiVersion"], "batch/v1");
    let spec = &cron["spec"];
    only_fields(
        "CronJob.spec",
        spec,
        &[
            "schedule",
            "timeZone",
            "concurrencyPolicy",
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
            "suspend",
            "jobTemplate",
        ],
    );
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    let job = &spec["jobTemplate"]["spec"];
    only_fields(
        "Job.spec",
        job,
        &[
            "backoffLimit",
            "activeDeadlineSeconds",
            "podFailurePolicy",
            "template",
            "ttlSecondsAfterFinished",
            "parallelism",
            "completions",
        ],
    );
    let rules = job["podFailurePolicy"]["rules"].as_array().expect("podFailurePolicy.rules");
    let fail = rules.iter().find(|r| r["action"] == "FailJob").expect("a FailJob rule");
    only_fields("rule", fail, &["action", "onExitCodes", "onPodConditions"]);
    only_fields("onExitCodes", &fail["onExitCodes"], &["containerName", "operator", "values"]);
    assert_eq!(fail["onExitCodes"]["operator"], "In");
    assert_eq!(ints(&fail["onExitCodes"]["values"]), PERMANENT);
    assert!(
        rules.iter().all(|r| ["FailJob", "Ignore", "Count", "FailIndex"].contains(&r["action"].as_str().unwrap_or(""))),
        "{rules:?}"
    );
    assert!(job["backoffLimit"].as_i64().is_some_and(|b| b > 0), "the other codes are retried");

    let pod = &job["template"]["spec"];
    only_fields("PodSpec", pod, POD_SPEC);
    assert_eq!(pod["restartPolicy"], "Never", "podFailurePolicy requires restartPolicy: Never");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    only_fields("Container", c, CONTAINER);
    assert_eq!(fail["onExitCodes"]["containerName"], c["name"]);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "the image's user");
    assert!(c["envFrom"][0]["secretRef"]["name"].is_string(), "credentials from a Secret: {c}");

    // The pipeline file: from the ConfigMap, mounted where the args look for it.
    let args: Vec<&str> = c["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(&args[..2], ["pipeline", "run"]);
    let file = Path::new(args[2]);
    let volume_of = |mount: &Path| {
        let m = c["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| Some(Path::new(m["mountPath"].as_str().unwrap_or(""))) == mount.parent().map(Path::new))
            .expect("a mount holding the pipeline file")
            .clone();
        pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == m["name"]).expect("the volume").clone()
    };
    let volume = volume_of(file);
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert!(
        config_map["data"].get(file.file_name().unwrap().to_str().unwrap()).is_some(),
        "the ConfigMap holds {file:?}"
    );
    // HOME is writable under a read-only root filesystem.
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let home = volume_of(Path::new("/home/nonroot/x"));
    assert_eq!(home["emptyDir"], json!({}));

    check_pipelines(config_map);
}

/// Argo's retry expression (expr-lang) for an exit code, evaluated as Python: `||` is `or`, `in [...]` is the same.
fn retried(expression: &str, code: i64) -> bool {
    let py =
        expression.replace("asInt(lastRetry.exitCode)", &code.to_string()).replace("||", " or ").replace("&&", " and ");
    let out = Command::new("python3").args(["-c", &format!("print(bool({py}))")]).output().expect("python3 runs");
    assert!(out.status.success(), "{expression}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

#[test]
fn argo_cron_workflow_fans_out_per_region_under_a_semaphore_and_retries_what_resumes() {
    let docs = yaml("argo-cronworkflow.yaml");
    let cron = docs.iter().find(|d| d["kind"] == "CronWorkflow").expect("CronWorkflow");
    assert_eq!(cron["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let wf = &cron["spec"]["workflowSpec"];
    let templates = wf["templates"].as_array().expect("templates");
    let entry = templates.iter().find(|t| t["name"] == wf["entrypoint"]).expect("the entrypoint");
    let step = &entry["steps"][0][0];
    let regions = step["withItems"].as_array().expect("withItems");
    assert!(regions.len() >= 2, "a fan-out: {step}");
    let per_region = templates.iter().find(|t| t["name"] == step["template"]).expect("the per-region template");
    assert_eq!(step["arguments"]["parameters"][0]["value"], "{{item}}");

    // The semaphore: a ConfigMap key holding a number.
    let sem = &per_region["synchronization"]["semaphore"]["configMapKeyRef"];
    let sem_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == sem["name"])
        .expect("the semaphore's ConfigMap");
    let limit: u32 =
        sem_map["data"][sem["key"].as_str().expect("key")].as_str().expect("a value").parse().expect("a number");
    assert!(limit >= 1 && (limit as usize) < regions.len(), "it limits the fan-out");

    // Retries: every retryable code, none of the permanent ones.
    let rs = &per_region["retryStrategy"];
    only_fields("retryStrategy", rs, &["limit", "retryPolicy", "expression", "backoff", "affinity"]);
    assert!(["Always", "OnFailure", "OnError", "OnTransientError"].contains(&rs["retryPolicy"].as_str().unwrap_or("")));
    let expression = rs["expression"].as_str().expect("expression");
    for code in [5, 7, 8, 75, 130, 137, 143] {
        assert!(retried(expression, code), "{code} is retried: {expression}");
    }
    for code in PERMANENT.into_iter().chain([0, 1]) {
        assert!(!retried(expression, code), "{code} is not retried: {expression}");
    }

    // Each region's pipeline file is in the mounted ConfigMap.
    let c = &per_region["container"];
    only_fields("Container", c, CONTAINER);
    let args: Vec<&str> = c["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(&args[..2], ["pipeline", "run"]);
    let pipelines = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap" && wf["volumes"].to_string().contains(d["metadata"]["name"].as_str().unwrap())
        })
        .expect("the pipelines' ConfigMap");
    for region in regions {
        let file = args[2].replace("{{inputs.parameters.region}}", region.as_str().expect("region"));
        let name = Path::new(&file).file_name().unwrap().to_str().unwrap().to_string();
        let text = pipelines["data"][&name].as_str().unwrap_or_else(|| panic!("{name} in the ConfigMap"));
        assert!(text.contains(&format!("region = \"{}\"", region.as_str().unwrap())), "{name}");
    }
    assert!(c["envFrom"][0]["secretRef"]["name"].is_string(), "credentials from a Secret: {c}");
    check_pipelines(pipelines);
}
