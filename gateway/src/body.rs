//! HTTP bodies as the gateway holds them: one boxed body type for everything it sends, and
//! the one bounded reader for everything it reads whole.

use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds the gateway limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The peer's stream broke (the message is the transport's).
    #[error("{0}")]
    Read(String),
}

/// A whole body, up to `max` bytes. Past the limit it stops reading: what is left stays in
/// `body` (to drain or drop).
pub async fn read_limited<B>(body: &mut B, max: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(BodyError::TooLarge { limit: max });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_up_to_the_limit_and_no_further() {
        let mut body = full(vec![b'x'; 10]);
        assert_eq!(read_limited(&mut body, 10).await.unwrap().len(), 10);
        let mut body = full(vec![b'x'; 11]);
        assert!(matches!(
            read_limited(&mut body, 10).await,
            Err(BodyError::TooLarge { limit: 10 })
        ));
    }
}
