//! TLS and mutual TLS through the binaries: `shoal certs` makes a CA and certificates; the
//! coordinator and a parameter server require client certificates from that CA; workers, the
//! parameter server and the CLI connect with theirs and a parameter-server job trains. A worker
//! and a client holding a certificate from another CA are refused, and so are clients that do
//! not speak TLS or present no certificate.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use shoal_common::proto::job_service_client::JobServiceClient;
use shoal_common::proto::{JobState, ListWorkersRequest, SubmitJobRequest};
use shoal_tests::{
    Coordinator, DIGITS_JOB, Proc, bin, code, shoal, start_worker_with, state_of, stderr, wait_terminal,
};

const JOIN: &str = "join-token-for-the-tls-test";

fn certs(dir: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin("shoal")).args(["certs", "--dir"]).arg(dir).output()?;
    anyhow::ensure!(out.status.success(), "shoal certs: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

async fn tls_client(
    url: &str,
    ca: &Path,
    cert: Option<(&Path, &str)>,
) -> anyhow::Result<JobServiceClient<tonic::transport::Channel>> {
    let (c, k) = match cert {
        Some((dir, name)) => (p(dir, &format!("{name}.pem")), p(dir, &format!("{name}-key.pem"))),
        None => (String::new(), String::new()),
    };
    let tls = shoal_common::tls::ClientTls::new(&p(ca, "ca.pem"), &c, &k, "").map_err(anyhow::Error::msg)?;
    let channel = tls.endpoint(url).map_err(anyhow::Error::msg)?.connect().await?;
    Ok(JobServiceClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_certified_peers_and_refuses_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (good, other) = (dir.path().join("certs"), dir.path().join("other-ca"));
    certs(&good)?;
    certs(&other)?;
    let tls_args = [
        "--tls-cert",
        &p(&good, "node.pem"),
        "--tls-key",
        &p(&good, "node-key.pem"),
        "--tls-client-ca",
        &p(&good, "ca.pem"),
        "--join-token",
        JOIN,
    ];
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &tls_args)?;
    let url = format!("https://{}", coordinator.addr);
    assert!(coordinator.proc.log_text().contains("TLS on"), "{}", coordinator.proc.log_text());
    let mut client = tls_client(&url, &good, Some((&good, "client"))).await?;

    let node_env = |certs: &Path| {
        vec![
            ("SHOAL_TLS_CA", p(&good, "ca.pem")),
            ("SHOAL_TLS_CERT", p(certs, "node.pem")),
            ("SHOAL_TLS_KEY", p(certs, "node-key.pem")),
            ("SHOAL_JOIN_TOKEN", JOIN.to_owned()),
        ]
    };
    let env = node_env(&good);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _workers: Vec<_> =
        (0..2).map(|i| start_worker_with(dir.path(), &url, 1, &format!("w{i}"), &env)).collect::<Result<_, _>>()?;
    // A worker whose certificate comes from another CA (it trusts the right one, so it would
    // happily talk to the coordinator).
    let env = node_env(&other);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stranger = start_worker_with(dir.path(), &url, 1, "stranger", &env)?;
    // A parameter server: TLS + client certificates on its own endpoint, and the join token.
    let ps_log = dir.path().join("ps.log");
    let ps = Proc {
        child: Command::new(bin("shoal-param-server"))
            .args(["--coordinator", &url, "--hostname", "ps0", "--tls-ca", &p(&good, "ca.pem")])
            .args(["--tls-cert", &p(&good, "node.pem"), "--tls-key", &p(&good, "node-key.pem")])
            .args(["--tls-client-ca", &p(&good, "ca.pem")])
            .env("SHOAL_JOIN_TOKEN", JOIN)
            .env_remove("SHOAL_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&ps_log)?))
            .spawn()?,
        log: ps_log,
    };
    shoal_tests::wait_registered(&mut client, 2, 1, Duration::from_secs(30)).await?;

    // A parameter-server job and a ring job: worker-to-server traffic over TLS with the token,
    // worker-to-worker links with the attempt's key.
    let ps_job = DIGITS_JOB.replace("lr = 0.05\nmomentum = 0.9", "lr = 0.1");
    let ps_job = format!("sync = \"ps\"\n{ps_job}\n[parallelism]\ndata = 2\n[ps]\nshards = 1\nmode = \"sync\"\n");
    let ring_job = format!("{DIGITS_JOB}\n[parallelism]\ndata = 2\n");
    for text in [ps_job, ring_job] {
        let spec = shoal_common::spec::parse_toml(&text)?;
        let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
        let done = wait_terminal(&mut client, &job, Duration::from_secs(120)).await?;
        assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
        let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
        assert!(accuracy >= 0.85, "accuracy {accuracy}");
    }

    // The stranger never joined: its handshake is refused, so it keeps failing to connect.
    let workers = client.list_workers(ListWorkersRequest {}).await?.into_inner().workers;
    let names: Vec<String> = workers.iter().filter_map(|w| w.info.as_ref().map(|i| i.hostname.clone())).collect();
    assert!(!names.contains(&"stranger".to_owned()), "{names:?}");
    assert!(stranger.log_text().contains("cannot reach the coordinator"), "{}", stranger.log_text());
    drop(ps);

    // The CLI with the client certificate works; without TLS, without a certificate, or trusting
    // another CA it is refused.
    let ca = p(&good, "ca.pem");
    let (cert, key) = (p(&good, "client.pem"), p(&good, "client-key.pem"));
    let ok = shoal(&url, &["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key, "workers"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let plain = shoal(&format!("http://{}", coordinator.addr), &["workers"]);
    assert_eq!(code(&plain), 3, "{}", stderr(&plain));
    let no_cert = shoal(&url, &["--tls-ca", &ca, "workers"]);
    assert_ne!(code(&no_cert), 0, "{}", stderr(&no_cert));
    let wrong_ca = shoal(&url, &["--tls-ca", &p(&other, "ca.pem"), "workers"]);
    assert_eq!(code(&wrong_ca), 3, "{}", stderr(&wrong_ca));
    assert!(tls_client(&url, &other, Some((&other, "client"))).await.is_err(), "the other CA's client");
    let half = shoal(&url, &["--tls-ca", &ca, "--tls-cert", &cert, "workers"]);
    assert_eq!(code(&half), 2, "a certificate without its key is a usage error: {}", stderr(&half));
    assert!(stderr(&half).contains("tls-key"), "{}", stderr(&half));
    Ok(())
}

#[test]
fn a_coordinator_with_broken_tls_settings_names_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("shoal-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--tls-client-ca", "/nonexistent/ca.pem", "--database"])
        .arg(dir.path().join("c.db"))
        .env_remove("SHOAL_CONFIG")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_client_ca"), "{err}");
    // A non-loopback address is fine with TLS, refused without.
    let out = Command::new(bin("shoal-coordinator"))
        .args(["--listen", "0.0.0.0:0", "--database"])
        .arg(dir.path().join("c.db"))
        .env_remove("SHOAL_CONFIG")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS is off"));
    Ok(())
}
