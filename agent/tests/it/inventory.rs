//! The inventory: a full snapshot at start, change sets from events, bounded labels.

use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use serde_json::Value;

use crate::support::{WAIT, full_inventories, of_type, start_agent};

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item[key] == value)
}

#[tokio::test]
async fn snapshot_then_changes_then_removals() {
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("inv"));
    let volume = cleanup.volume(&unique_name("inv-vol"));
    let later_volume = cleanup.volume(&unique_name("inv-vol-later"));
    dockermon_e2e::docker::ensure_test_image().await.unwrap();

    // 100 labels, one of them huge: what a hostile container could carry.
    let mut args: Vec<String> = ["run", "-d", "--name", &name, "-p", "127.0.0.1::8080", "-v"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("{volume}:/data"));
    for (key, value) in [
        ("com.docker.compose.project", "shop"),
        ("com.docker.compose.service", "web"),
        ("com.docker.compose.container-number", "2"),
    ] {
        args.extend(["--label".into(), format!("{key}={value}")]);
    }
    for i in 0..100 {
        args.extend(["--label".into(), format!("zz.label.{i:03}=v")]);
    }
    args.extend(["--label".into(), format!("aa.huge={}", "x".repeat(5000))]);
    args.extend([TEST_IMAGE.into(), "sleep".into(), "3600".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&args).await.unwrap();

    let agent = start_agent(&["--usage-interval", "off"]).await;
    let snapshot = full_inventories(&agent.records()).next().cloned().unwrap();
    let container = find(&snapshot["containers"], "id", &id)
        .expect("container in snapshot")
        .clone();
    assert_eq!(container["name"], name.as_str());
    assert_eq!(container["state"], "running");
    assert_eq!(container["image"], TEST_IMAGE);
    assert_eq!(container["compose"]["project"], "shop");
    assert_eq!(container["compose"]["service"], "web");
    assert_eq!(container["compose"]["number"], 2);
    let labels = container["labels"].as_object().unwrap();
    assert_eq!(labels.len(), dockermon_proto::limits::MAX_LABELS);
    assert_eq!(
        labels["aa.huge"].as_str().unwrap().len(),
        dockermon_proto::limits::MAX_LABEL_VALUE_BYTES
    );
    assert_eq!(container["ports"][0]["private_port"], 8080);
    assert_eq!(container["ports"][0]["host_ip"], "127.0.0.1");
    assert!(container["ports"][0]["public_port"].as_u64().unwrap() > 0);
    assert_eq!(container["mounts"][0]["name"], volume.as_str());
    assert_eq!(container["mounts"][0]["destination"], "/data");
    assert!(
        container["networks"][0]["ip_address"]
            .as_str()
            .unwrap()
            .contains('.')
    );
    assert!(find(&snapshot["volumes"], "name", &volume).is_some());
    assert!(snapshot["images"].as_array().unwrap().iter().any(|i| {
        i["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == TEST_IMAGE)
    }));

    // Changes arrive as change sets, driven by events.
    docker(&["volume", "create", &later_volume]).await.unwrap();
    docker(&["stop", "-t", "1", &name]).await.unwrap();
    let change = |records: &[Value], pick: &dyn Fn(&Value) -> bool| -> Option<Value> {
        of_type(records, "inventory")
            .filter(|r| r["full"] == false)
            .find(|r| pick(r))
            .cloned()
    };
    agent
        .wait_for(WAIT, "the new volume", |records| {
            change(records, &|r| {
                find(&r["volumes"], "name", &later_volume).is_some()
            })
        })
        .await
        .unwrap();
    let stopped = agent
        .wait_for(WAIT, "the container's exit", |records| {
            change(records, &|r| {
                find(&r["containers"], "id", &id).is_some_and(|c| c["state"] == "exited")
            })
        })
        .await
        .unwrap();
    let stopped = find(&stopped["containers"], "id", &id).unwrap();
    assert_eq!(
        stopped["exit_code"], 137,
        "sleep ignores SIGTERM and is killed"
    );

    docker(&["rm", &name]).await.unwrap();
    docker(&["volume", "rm", &later_volume]).await.unwrap();
    let removed = |kind: &'static str, id: String| {
        move |r: &Value| {
            r["removed"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|o| o["kind"] == kind && o["id"] == id.as_str())
            })
        }
    };
    agent
        .wait_for(WAIT, "the container's removal", |records| {
            change(records, &removed("container", id.clone()))
        })
        .await
        .unwrap();
    agent
        .wait_for(WAIT, "the volume's removal", |records| {
            change(records, &removed("volume", later_volume.clone()))
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn one_change_is_reported_once() {
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("once"));
    let agent = start_agent(&["--usage-interval", "off"]).await;
    let id = docker(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    docker(&["stop", "-t", "1", &name]).await.unwrap();
    // Events are handled in order: once the exit is reported, so is everything before it.
    let records = agent
        .wait_for(WAIT, "the container's exit", |records| {
            of_type(records, "inventory")
                .any(|r| find(&r["containers"], "id", &id).is_some_and(|c| c["state"] == "exited"))
                .then(|| records.to_vec())
        })
        .await
        .unwrap();
    let running: Vec<&Value> = of_type(&records, "inventory")
        .filter_map(|r| find(&r["containers"], "id", &id))
        .filter(|c| c["state"] == "running")
        .collect();
    assert_eq!(
        running.len(),
        1,
        "create, connect and start: one running state sent"
    );
}
