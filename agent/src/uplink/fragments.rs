//! How the agent's messages go on the wire: each as WebSocket fragments of at most
//! [`FRAGMENT_BYTES`] (RFC 6455, section 5.4), which the collector reads back whole.
//!
//! Why: a WebSocket reader's buffer grows to the largest frame it has read and keeps that
//! size for the life of the connection (tungstenite's does). A frame of 50 containers'
//! stats is about 36 KiB, so a collector reading whole frames held that much per agent
//! while the agent was silent between sweeps. In fragments of 4 KiB, the collector's read
//! buffer no longer grows with the agent's messages: 10,000 agents × 50 containers went
//! from 1.25 GiB to 970 MiB (BENCHMARKS.md).

use futures::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

/// The most payload bytes one fragment carries; half the collector's read buffer.
pub const FRAGMENT_BYTES: usize = 4096;

/// `message` as the frames to write: a text or binary message longer than
/// [`FRAGMENT_BYTES`] becomes a data frame and continuation frames, the last one final;
/// anything else is itself. The fragments share the message's bytes.
pub fn fragments(message: Message) -> Vec<Message> {
    let data = match &message {
        Message::Text(_) => Data::Text,
        Message::Binary(_) => Data::Binary,
        _ => return vec![message],
    };
    if message.len() <= FRAGMENT_BYTES {
        return vec![message];
    }
    let payload = message.into_data();
    let count = payload.len().div_ceil(FRAGMENT_BYTES);
    (0..count)
        .map(|i| {
            let start = i * FRAGMENT_BYTES;
            let part = payload.slice(start..(start + FRAGMENT_BYTES).min(payload.len()));
            let opcode = OpCode::Data(if i == 0 { data } else { Data::Continue });
            Message::Frame(Frame::message(part, opcode, i + 1 == count))
        })
        .collect()
}

/// Writes `message` to `sink` in [`fragments`] and flushes once, after the last one.
///
/// # Errors
/// What the sink returns: the connection is broken or closed.
pub async fn send<S>(sink: &mut S, message: Message) -> Result<(), tungstenite::Error>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    for frame in fragments(message) {
        sink.feed(frame).await?;
    }
    sink.flush().await
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::{WebSocketStream, tungstenite::protocol::WebSocketConfig};

    use super::*;

    /// Text of `len` bytes with multi-byte characters, so that fragment boundaries fall
    /// inside characters.
    fn text(len: usize) -> String {
        "aé€😀"
            .chars()
            .cycle()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= len).then_some(c)
            })
            .collect()
    }

    #[test]
    fn a_long_message_is_cut_into_final_terminated_fragments() {
        let message = text(3 * FRAGMENT_BYTES + 10);
        let frames = fragments(Message::text(message.clone()));
        assert_eq!(frames.len(), 4);
        let mut joined = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let Message::Frame(frame) = frame else {
                panic!("{frame:?}")
            };
            let header = frame.header();
            let expected = if i == 0 { Data::Text } else { Data::Continue };
            assert_eq!(header.opcode, OpCode::Data(expected));
            assert_eq!(header.is_final, i == 3);
            assert!(frame.payload().len() <= FRAGMENT_BYTES);
            joined.extend_from_slice(frame.payload());
        }
        assert_eq!(joined, message.as_bytes());
        let short = Message::text(text(FRAGMENT_BYTES));
        assert_eq!(fragments(short.clone()), vec![short]);
        assert_eq!(fragments(Message::Ping(vec![1].into())).len(), 1);
    }

    /// Over a real socket, a reader with the collector's settings (an 8 KiB read buffer)
    /// receives each message whole, in order, with a ping between them.
    #[tokio::test]
    async fn a_reader_receives_fragmented_messages_whole() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut writer = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let mut reader = WebSocketStream::from_raw_socket(server, Role::Server, Some(config)).await;
        let messages = [text(100), text(40_000), text(FRAGMENT_BYTES + 1)];
        let sent = messages.clone();
        let sending = tokio::spawn(async move {
            for message in sent {
                send(&mut writer, Message::text(message)).await.unwrap();
                writer
                    .send(Message::Ping(Default::default()))
                    .await
                    .unwrap();
            }
            writer
        });
        let mut received = Vec::new();
        while received.len() < messages.len() {
            match reader.next().await.unwrap().unwrap() {
                Message::Text(text) => received.push(text.as_str().to_owned()),
                Message::Ping(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(received, messages);
        drop(sending.await.unwrap());
    }
}
