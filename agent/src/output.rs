//! The stdout sink: every record as one JSON object per line, for debugging and for piping
//! into other tools. Lines are flushed whenever the queue runs dry, so a reader sees each
//! record promptly without a write per record under load.

use dockermon_proto::Record;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Writes records until every sender is gone. An error means the reader went away.
pub async fn write_json_lines<W: AsyncWrite + Unpin>(
    mut records: mpsc::Receiver<Record>,
    writer: W,
) -> std::io::Result<()> {
    let mut out = BufWriter::new(writer);
    let mut line = Vec::with_capacity(1024);
    while let Some(record) = records.recv().await {
        line.clear();
        serde_json::to_writer(&mut line, &record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line).await?;
        if records.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use dockermon_proto::{DiskUsage, Record};

    use super::*;

    #[tokio::test]
    async fn one_json_object_per_line() {
        let (tx, rx) = mpsc::channel(4);
        for time_ns in [1, 2] {
            tx.send(Record::Usage(DiskUsage {
                time_ns,
                ..Default::default()
            }))
            .await
            .unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        write_json_lines(rx, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, time_ns) in lines.iter().zip([1, 2]) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["type"], "usage");
            assert_eq!(value["time_ns"], time_ns);
        }
    }
}
