//! `apply -f`, `get` and `delete` on the resources in a deployment's database, with
//! kubectl's words and output shapes.

use std::io::Read;

use anyhow::Context;
use dockermon_agent::say;
use dockermon_proto::now_ns;

use super::output;
use crate::config::{ApplyArgs, DatabaseConfig, DeleteArgs, GetArgs};
use crate::resources::objects::{self, Deleted};
use crate::resources::{Kind, parse_documents};
use crate::store::Store;

/// The largest file `apply` reads.
const MAX_APPLY_BYTES: u64 = 4 << 20;

pub(super) async fn apply(database: &DatabaseConfig, args: &ApplyArgs) -> anyhow::Result<()> {
    let mut text = String::new();
    let read = if args.file.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_APPLY_BYTES + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(&args.file)
            .and_then(|file| file.take(MAX_APPLY_BYTES + 1).read_to_string(&mut text))
    };
    read.with_context(|| format!("cannot read {}", args.file.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_APPLY_BYTES,
        "{} is larger than {} MiB",
        args.file.display(),
        MAX_APPLY_BYTES >> 20
    );
    // Every document is checked before any is stored.
    let documents = parse_documents(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.file.display()))?;
    anyhow::ensure!(
        !documents.is_empty(),
        "{} holds no document",
        args.file.display()
    );
    let store = Store::open_existing(&database.url).await?;
    for document in &documents {
        let (applied, _) = objects::apply(&store, document, now_ns())
            .await
            .with_context(|| {
                format!(
                    "{} {} not applied",
                    document.kind().plural(),
                    document.key()
                )
            })?;
        output(format_args!(
            "{}.dockermon.io/{} {}",
            document.kind().as_str().to_ascii_lowercase(),
            document.metadata().name.as_deref().unwrap_or(""),
            applied.as_str()
        ))?;
    }
    Ok(())
}

pub(super) async fn get(database: &DatabaseConfig, args: &GetArgs) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    let namespace = match (kind.namespaced(), args.all_namespaces) {
        (false, _) => Some(""),
        (true, true) => None,
        (true, false) => Some(args.namespace.as_str()),
    };
    let store = Store::open_existing(&database.url).await?;
    let mut rows = store.resources(kind.as_str(), namespace).await?;
    if let Some(name) = &args.name {
        rows.retain(|row| &row.name == name);
        anyhow::ensure!(
            !rows.is_empty(),
            "{}.dockermon.io {name:?} not found",
            kind.plural()
        );
    }
    let objects: Vec<serde_json::Value> = rows.iter().map(objects::to_object).collect();
    // One object alone for a named get, a List otherwise, as kubectl prints them.
    let document = match (&args.name, objects.as_slice()) {
        (Some(_), [object]) => object.clone(),
        _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
    };
    match args.output.as_deref() {
        None | Some("wide") => {
            if rows.is_empty() {
                say!("No resources found.");
                return Ok(());
            }
            output(format_args!(
                "{}",
                objects::table(kind, &rows, now_ns()).trim_end()
            ))
        }
        Some("yaml") => output(format_args!(
            "{}",
            serde_yaml::to_string(&document)?.trim_end()
        )),
        Some("json") => output(format_args!("{}", serde_json::to_string_pretty(&document)?)),
        Some(other) => anyhow::bail!("-o {other}: use yaml or json"),
    }
}

pub(super) async fn delete(database: &DatabaseConfig, args: &DeleteArgs) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    let namespace = if kind.namespaced() {
        args.namespace.as_str()
    } else {
        ""
    };
    let store = Store::open_existing(&database.url).await?;
    let what = format!(
        "{}.dockermon.io/{}",
        kind.as_str().to_ascii_lowercase(),
        args.name
    );
    match objects::delete(&store, kind, namespace, &args.name, now_ns()).await? {
        Deleted::Deleted => output(format_args!("{what} deleted")),
        Deleted::Deleting => output(format_args!(
            "{what} deleting (the collector stops its profile, then removes it)"
        )),
        Deleted::NotFound => anyhow::bail!("{what} not found"),
    }
}

fn parse_kind(text: &str) -> anyhow::Result<Kind> {
    Kind::parse(text).with_context(|| {
        format!("{text:?} is not a resource kind: use dockerhosts (dh) or profilesessions (ps)")
    })
}
