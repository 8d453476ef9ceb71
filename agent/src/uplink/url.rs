//! The collector's address: `wss://host[:port]`, port 3812 by default; `host[:port]` alone
//! means the same. Only `wss`: the agent never talks to a collector without TLS. Several,
//! comma-separated, are replicas of one collector ([`Collectors`]).

use std::fmt;

use dockermon_proto::transport::DEFAULT_AGENT_PORT;
use rustls::pki_types::ServerName;

use super::identity::IdentityError;

/// The addresses of one collector's replicas, in the order given; an agent reports to one
/// at a time and moves on to the next when it cannot connect (`Uplink`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collectors(Vec<CollectorUrl>);

impl Collectors {
    /// `wss://a:3812,wss://b:3812` (or a list's entries); at least one, no duplicates.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut urls: Vec<CollectorUrl> = Vec::new();
        for entry in entries.iter().flat_map(|e| e.as_ref().split(',')) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let url = CollectorUrl::parse(entry)?;
            if urls.contains(&url) {
                return Err(format!("{entry:?} is given twice"));
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err("no collector address: give wss://HOST[:PORT]".into());
        }
        Ok(Collectors(urls))
    }

    pub fn one(url: CollectorUrl) -> Self {
        Collectors(vec![url])
    }

    /// Never empty.
    pub fn urls(&self) -> &[CollectorUrl] {
        &self.0
    }
}

impl fmt::Display for Collectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{url}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl {
    host: String,
    port: u16,
}

impl CollectorUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = match text.split_once("://") {
            Some(("wss", rest)) => rest,
            Some(_) => {
                return Err(format!("{text:?}: use wss://HOST[:PORT] (TLS is required)"));
            }
            None => text,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: unclosed [ in the address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?}: the host is missing"));
        }
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?,
            None => DEFAULT_AGENT_PORT,
        };
        Ok(CollectorUrl {
            host: host.to_owned(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn address(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The name the collector's certificate must carry.
    pub fn server_name(&self) -> Result<ServerName<'static>, IdentityError> {
        ServerName::try_from(self.host.clone()).map_err(|_| {
            IdentityError::Protocol(format!("{:?} is not a valid server name", self.host))
        })
    }

    /// A hint for an unreachable collector at a loopback address from inside a container,
    /// whose loopback is its own; empty otherwise.
    pub fn loopback_hint(&self) -> &'static str {
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback && std::path::Path::new("/.dockerenv").exists() {
            " (this agent runs in a container, where localhost is the container itself: run it with --network host, or use an address of the collector's machine)"
        } else {
            ""
        }
    }

    /// The WebSocket URL of the agent endpoint.
    pub fn agent_endpoint(&self) -> String {
        format!("{self}{}", dockermon_proto::transport::AGENT_PATH)
    }
}

impl fmt::Display for CollectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "wss://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "wss://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = CollectorUrl::parse("wss://collector.example").unwrap();
        assert_eq!(url.address(), ("collector.example", 3812));
        assert_eq!(
            url.agent_endpoint(),
            "wss://collector.example:3812/v1/agent"
        );
        assert_eq!(
            CollectorUrl::parse("wss://10.0.0.1:4000/")
                .unwrap()
                .address(),
            ("10.0.0.1", 4000)
        );
        assert_eq!(
            CollectorUrl::parse("wss://[::1]:4000").unwrap().to_string(),
            "wss://[::1]:4000"
        );
        // Without a scheme, wss is meant.
        assert_eq!(
            CollectorUrl::parse("127.0.0.1:3812").unwrap().to_string(),
            "wss://127.0.0.1:3812"
        );
        for bad in [
            "ws://collector",
            "https://collector",
            "wss://",
            "wss://host:port",
        ] {
            assert!(CollectorUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn replicas_are_several_addresses_in_order() {
        let collectors = Collectors::parse(&["wss://a:3812, b:4000", "wss://[::1]"]).unwrap();
        assert_eq!(
            collectors.to_string(),
            "wss://a:3812,wss://b:4000,wss://[::1]:3812"
        );
        assert_eq!(collectors.urls().len(), 3);
        for (bad, reason) in [
            (&[""][..], "no collector address"),
            (&[" , "][..], "no collector address"),
            (&["wss://a", "a:3812"][..], "given twice"),
            (&["wss://a,ws://b"][..], "TLS is required"),
        ] {
            let error = Collectors::parse(bad).unwrap_err();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
    }
}
