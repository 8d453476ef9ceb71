//! DockerHost and ProfileSession resources without Kubernetes, end to end: `apply -f`
//! against a running collector's MySQL database, its controller bringing a real agent to
//! the spec, a profile session running on a real container, `get -o yaml` round trips, and
//! refusals that name the field.

use serde_json::Value;

use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::WAIT;
use dockermon_e2e::wait::eventually;

use crate::support::{ADMIN_PASSWORD, Setup, call, sign_in};

/// `get KIND NAME -o json` through the shell, parsed; `None` while it fails.
pub(crate) async fn get(setup: &Setup, kind: &str, name: &str) -> Option<Value> {
    let text = setup
        .collector
        .cli(&["get", kind, name, "-o", "json"])
        .await
        .ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Writes `text` to a file in the setup's directory and applies it; what `apply` printed.
pub(crate) async fn apply(setup: &Setup, file: &str, text: &str) -> Result<String, String> {
    let path = setup.dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    let output = setup
        .collector
        .command(&["apply", "-f", path.to_str().unwrap()])
        .await
        .unwrap();
    if output.code == Some(0) {
        Ok(output.stdout.trim().to_owned())
    } else {
        Err(output.stderr)
    }
}

#[tokio::test]
async fn applied_resources_drive_a_real_agent_and_profile_a_real_container() {
    let setup = Setup::new().await;
    let _agent = setup.agent("res-host").await;
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("res-spin"));
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        TEST_IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .await
    .unwrap();

    // The enrolled host got its DockerHost, and its status says the agent is connected.
    let host = eventually(WAIT, "the host's DockerHost connected", || async {
        let host = get(&setup, "dockerhosts", "res-host").await?;
        (condition(&host, "Connected")?["status"] == "True").then_some(host)
    })
    .await
    .unwrap();
    assert_eq!(host["metadata"]["generation"], 1);
    assert!(
        host["status"]["dockerVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{host}"
    );

    // A new spec reaches the agent, which acknowledges it (Ready, observedGeneration 2).
    let spec = "\
apiVersion: dockermon.io/v1alpha1
kind: DockerHost
metadata:
  name: res-host
spec:
  statsInterval: 5s
  diskUsageInterval: 'off'
  allowedActions: [start, restart]
";
    assert_eq!(
        apply(&setup, "host.yaml", spec).await.unwrap(),
        "dockerhost.dockermon.io/res-host configured"
    );
    let host = eventually(WAIT, "the agent acknowledged generation 2", || async {
        let host = get(&setup, "dockerhosts", "res-host").await?;
        let ready = condition(&host, "Ready")?;
        (host["status"]["observedGeneration"] == 2 && ready["status"] == "True").then_some(host)
    })
    .await
    .unwrap();
    assert_eq!(condition(&host, "Ready").unwrap()["reason"], "SpecApplied");

    // Applying the same document, or what `get -o yaml` printed, changes nothing.
    assert_eq!(
        apply(&setup, "host.yaml", spec).await.unwrap(),
        "dockerhost.dockermon.io/res-host unchanged"
    );
    let printed = setup
        .collector
        .cli(&["get", "dockerhosts", "res-host", "-o", "yaml"])
        .await
        .unwrap();
    assert_eq!(
        apply(&setup, "printed.yaml", &printed).await.unwrap(),
        "dockerhost.dockermon.io/res-host unchanged"
    );
    // `-f -` reads the documents from standard input.
    let fed = setup
        .collector
        .command_fed(
            &["apply", "-f", "-"],
            Some(&setup.dir.path().join("printed.yaml")),
        )
        .await
        .unwrap();
    assert_eq!(
        (fed.code, fed.stdout.trim()),
        (Some(0), "dockerhost.dockermon.io/res-host unchanged"),
        "{}",
        fed.stderr
    );
    assert_eq!(
        get(&setup, "dh", "res-host").await.unwrap()["metadata"]["generation"],
        2
    );

    // An action outside spec.allowedActions is refused by the collector.
    let admin = sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let key = eventually(WAIT, "the container in the API", || async {
        let (_, page) = call(
            &setup,
            "GET",
            &format!("/api/v1/containers?name={name}"),
            Some(&admin),
            None,
        )
        .await;
        page["items"][0]["id"].as_i64()
    })
    .await
    .unwrap();
    let (status, body) = call(
        &setup,
        "POST",
        &format!("/api/v1/containers/{key}/actions/stop"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.allowedActions"),
        "{body}"
    );

    // A ProfileSession runs on the real container to completion, with its summary.
    let session = format!(
        "apiVersion: dockermon.io/v1alpha1\nkind: ProfileSession\nmetadata: {{name: spin-cpu}}\n\
         spec: {{host: res-host, container: {name}, duration: 3s}}\n"
    );
    assert_eq!(
        apply(&setup, "session.yaml", &session).await.unwrap(),
        "profilesession.dockermon.io/spin-cpu created"
    );
    let done = eventually(WAIT, "the profile session finished", || async {
        let session = get(&setup, "profilesessions", "spin-cpu").await?;
        let phase = session["status"]["phase"].as_str()?;
        (phase == "Succeeded" || phase == "Failed").then_some(session)
    })
    .await
    .unwrap();
    let status = &done["status"];
    assert_eq!(
        (status["phase"].as_str(), status["reason"].as_str()),
        (Some("Succeeded"), Some("Completed")),
        "{done}"
    );
    assert!(status["samples"].as_i64().unwrap() >= 2, "{done}");
    assert!(
        status["summary"]["cpuPercentMax"].as_f64().unwrap() > 50.0,
        "a spinning container: {done}"
    );
    let (code, profile) = call(
        &setup,
        "GET",
        &format!("/api/v1/profiles/{}", status["profileId"]),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (code, &profile["samples"]),
        (200, &status["samples"]),
        "{profile}"
    );
    // Its spec cannot change.
    let changed = session.replace("duration: 3s", "duration: 5s");
    let refused = apply(&setup, "session.yaml", &changed).await.unwrap_err();
    assert!(refused.contains("cannot change"), "{refused}");

    // Invalid documents are refused before anything is stored, naming the field.
    let invalid = format!(
        "{spec}---\napiVersion: dockermon.io/v1alpha1\nkind: ProfileSession\n\
                           metadata: {{name: bad}}\nspec: {{host: res-host, container: x, duration: 2h}}\n"
    );
    let refused = apply(&setup, "invalid.yaml", &invalid).await.unwrap_err();
    assert!(
        refused.contains("document 2: spec.duration: 2h is out of range (1s to 1h)"),
        "{refused}"
    );
    assert!(
        get(&setup, "ps", "bad").await.is_none(),
        "nothing of a refused file is stored"
    );

    // Deleting the DockerHost revokes the host: its agent is refused from then on.
    let deleted = setup
        .collector
        .cli(&["delete", "dockerhost", "res-host"])
        .await
        .unwrap();
    assert_eq!(deleted, "dockerhost.dockermon.io/res-host deleted");
    eventually(WAIT, "the host gone from the API", || async {
        let (_, hosts) = call(&setup, "GET", "/api/v1/hosts", Some(&admin), None).await;
        let names: Vec<&str> = hosts["items"]
            .as_array()?
            .iter()
            .filter_map(|h| h["name"].as_str())
            .collect();
        (!names.contains(&"res-host")).then_some(())
    })
    .await
    .unwrap();
    assert!(
        get(&setup, "dockerhosts", "res-host").await.is_none(),
        "it does not come back"
    );
}
