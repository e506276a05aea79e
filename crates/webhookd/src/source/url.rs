//! `--source URL`, parsed once: a [`SourceUrl`] that exists names a broker, and everything
//! webhookd needs to consume from it (SPEC §11).

use std::fmt;

use url::Url;

/// Where a source's messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUrl {
    /// A NATS JetStream durable pull consumer on `stream`, filtered to `subject`.
    Nats { server: String, stream: String, subject: String, consumer: String },
    /// A RabbitMQ queue; `uri` is the AMQP connection URI (with the vhost, without the query).
    Amqp { uri: String, vhost: String, queue: String },
}

impl SourceUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value)
            .map_err(|e| format!("{} is not a URL ({e}); {USAGE}", redact(value)))?;
        match url.scheme() {
            "nats" => Self::nats(&url),
            "amqp" | "amqps" => Self::amqp(&url),
            other => Err(format!("{} has the scheme {other:?}; {USAGE}", redact(value))),
        }
    }

    fn nats(url: &Url) -> Result<Self, String> {
        let host =
            url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| missing(url, "a host"))?;
        let stream = single_segment(url).ok_or_else(|| missing(url, "the stream as its path"))?;
        let server = match (url.username(), url.password()) {
            ("", _) => format!("nats://{host}:{}", url.port().unwrap_or(4222)),
            (user, Some(password)) => {
                format!("nats://{user}:{password}@{host}:{}", url.port().unwrap_or(4222))
            }
            (token, None) => format!("nats://{token}@{host}:{}", url.port().unwrap_or(4222)),
        };
        Ok(SourceUrl::Nats {
            server,
            stream,
            subject: query(url, "subject")?,
            consumer: query(url, "consumer")?,
        })
    }

    fn amqp(url: &Url) -> Result<Self, String> {
        url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| missing(url, "a host"))?;
        let queue = query(url, "queue")?;
        // The vhost is the path's one segment, percent-encoded (`%2f` is RabbitMQ's `/`); an
        // empty path is the default vhost.
        let path = url.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(missing(url, "at most one path segment (the vhost; write `/` as %2f)"));
        }
        let vhost = percent_decode(path);
        let mut uri = url.clone();
        uri.set_query(None);
        Ok(SourceUrl::Amqp { uri: uri.to_string(), vhost, queue })
    }

    /// A short name for logs, metrics and `/readyz`, without credentials: `nats:STREAM/CONSUMER`
    /// or `amqp:VHOST/QUEUE` (`amqp:QUEUE` on the default vhost).
    pub fn name(&self) -> String {
        match self {
            SourceUrl::Nats { stream, consumer, .. } => format!("nats:{stream}/{consumer}"),
            // RabbitMQ's default vhost, `/`, is left out.
            SourceUrl::Amqp { vhost, queue, .. } if vhost.is_empty() || vhost == "/" => {
                format!("amqp:{queue}")
            }
            SourceUrl::Amqp { vhost, queue, .. } => format!("amqp:{vhost}/{queue}"),
        }
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

const USAGE: &str = "give nats://HOST:PORT/STREAM?subject=SUBJECT&consumer=NAME or \
                     amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME";

fn single_segment(url: &Url) -> Option<String> {
    let path = url.path().trim_matches('/');
    (!path.is_empty() && !path.contains('/')).then(|| percent_decode(path))
}

fn query(url: &Url, key: &str) -> Result<String, String> {
    url.query_pairs()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| missing(url, &format!("?{key}=…")))
}

fn missing(url: &Url, what: &str) -> String {
    format!("{} needs {what}; {USAGE}", redact(url.as_str()))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// The URL without its password, for messages.
fn redact(value: &str) -> String {
    crate::app::redact(value)
}

#[cfg(test)]
mod tests {
    use super::SourceUrl;

    #[test]
    fn a_nats_url_names_its_stream_subject_and_consumer() {
        let source =
            SourceUrl::parse("nats://127.0.0.1:4222/CALLS?subject=calls.>&consumer=webhookd")
                .unwrap();
        assert_eq!(
            source,
            SourceUrl::Nats {
                server: "nats://127.0.0.1:4222".into(),
                stream: "CALLS".into(),
                subject: "calls.>".into(),
                consumer: "webhookd".into(),
            }
        );
        assert_eq!(source.name(), "nats:CALLS/webhookd");
    }

    #[test]
    fn an_amqp_url_names_its_vhost_and_queue_and_keeps_its_credentials() {
        let source = SourceUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f?queue=calls").unwrap();
        assert_eq!(
            source,
            SourceUrl::Amqp {
                uri: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                vhost: "/".into(),
                queue: "calls".into(),
            }
        );
        assert_eq!(source.name(), "amqp:calls");
    }

    #[test]
    fn a_url_missing_a_part_is_refused_with_the_shape_to_give() {
        for bad in [
            "nats://127.0.0.1:4222/CALLS?subject=calls.>",
            "nats://127.0.0.1:4222/?subject=a&consumer=b",
            "amqp://guest:secret@127.0.0.1:5672/%2f",
            "kafka://127.0.0.1/x",
            "not a url",
        ] {
            let error = SourceUrl::parse(bad).unwrap_err();
            assert!(error.contains("nats://HOST:PORT/STREAM"), "{bad}: {error}");
            assert!(!error.contains("secret"), "{bad}: {error}");
        }
    }
}
