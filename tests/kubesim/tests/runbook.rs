//! Runs `tests/runbook.sh` (the runbook replayed with kubectl only) against an in-process Sim.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubesim::{Profile, Sim, SimConfig};

/// Hang guard for the whole script.
const GUARD: Duration = Duration::from_secs(300);

#[test]
fn runbook_replays_with_kubectl() {
    let sim = Sim::start(
        SimConfig::new()
            .cluster("hub", Profile::openshift("4.20"))
            .cluster("spoke", Profile::openshift("4.19"))
            .controller_delay(Duration::from_millis(100)),
    )
    .expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let env_file = dir.path().join("kubesim.env");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    kubesim::sim::write_private(&env_file, &sim.env_file()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("runbook.sh");
    let out_path = dir.path().join("stdout");
    let smoke_dir = dir.path().join("smoke-repo");
    std::fs::create_dir_all(&smoke_dir).unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = Command::new("bash")
        .arg(&script)
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBESIM_ENV", &env_file)
        .env("KUBECTL", common::kubectl_path())
        .env("HOME", dir.path())
        .env("HUB_CONTEXT", "hub")
        .env("SPOKE_CONTEXT", "spoke")
        .env("SMOKE_DIR", &smoke_dir)
        .env("WAIT_SECONDS", "120")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let status =
        status.unwrap_or_else(|| panic!("runbook.sh did not finish within {GUARD:?}\n{report}"));
    assert!(status.success(), "runbook.sh failed ({status})\n{report}");
    assert!(stdout.contains("hub: OK"), "{report}");
    assert!(stdout.contains("spoke: OK"), "{report}");
}
