//! The few places where MySQL and SQLite SQL differ, as statement tails.

use super::Backend;

/// Appended to an `INSERT … VALUES …`: skip rows whose key already exists.
/// MySQL's `INSERT IGNORE` would also swallow data errors, so it is not used.
pub(super) fn ignore_duplicates(backend: Backend, first_key_column: &str) -> String {
    match backend {
        Backend::MySql => {
            format!(" ON DUPLICATE KEY UPDATE {first_key_column} = {first_key_column}")
        }
        Backend::Sqlite => " ON CONFLICT DO NOTHING".to_owned(),
    }
}

/// `table` in a `FROM`, read by its primary key. MySQL's optimizer estimates a long
/// `IN` list on the key's first column from index statistics, and once a table holds days
/// of rows per key it prefers a secondary index on the range instead, which reads every row
/// of the range for each statement. SQLite ranks equality on a key column above a range
/// without statistics, and has no hint for a `WITHOUT ROWID` table's primary key.
pub(super) fn by_primary_key(backend: Backend, table: &str) -> String {
    match backend {
        Backend::MySql => format!("{table} FORCE INDEX (PRIMARY)"),
        Backend::Sqlite => table.to_owned(),
    }
}

/// Appended to an `INSERT`: on a key conflict, overwrite `columns` with the new values.
pub(super) fn upsert(backend: Backend, key: &[&str], columns: &[&str]) -> String {
    match backend {
        Backend::MySql => {
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect();
            format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
        }
        Backend::Sqlite => {
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            format!(
                " ON CONFLICT({}) DO UPDATE SET {}",
                key.join(", "),
                sets.join(", ")
            )
        }
    }
}

/// `DELETE` of at most `limit` rows of `table` matching `condition` (which may bind values).
/// Neither dialect can do it the other's way: SQLite is built without `DELETE … LIMIT`, and
/// MySQL cannot select from the table it deletes from. `key` is the table's primary key.
pub(super) fn delete_limited(
    backend: Backend,
    table: &str,
    key: &[&str],
    condition: &str,
    limit: u32,
) -> String {
    match backend {
        Backend::MySql => format!("DELETE FROM {table} WHERE {condition} LIMIT {limit}"),
        Backend::Sqlite => {
            let key = key.join(", ");
            format!(
                "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {limit})"
            )
        }
    }
}
