//! Outbound host allow-lists: `scheme://host[:port]`, `scheme://*.domain`,
//! `*.domain` (any scheme) or `scheme://*` (any host: for plugins of
//! self-hosted servers, whose instances then name the host). A request must
//! match the plugin manifest's list and the backend instance's grant.

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    /// Exact host, or a suffix starting with '.' for `*.domain`.
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not scheme://host[:port] or *.domain");
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) if s == "http" || s == "https" => (Some(s.to_string()), r),
            Some(_) => return Err(bad()),
            None if text.starts_with("*.") => (None, text),
            None => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad());
        }
        let host = match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => suffix.to_ascii_lowercase(),
            // `scheme://*`: any host (empty pattern host).
            Some("") if scheme.is_some() => String::new(),
            Some(_) => return Err(bad()),
            None => host.to_ascii_lowercase(),
        };
        Ok(Self { scheme, host, port })
    }

    /// Why an operator may not grant this pattern to a backend instance:
    /// plain HTTP (or any scheme) beyond loopback unless the instance says
    /// `insecure_http`, or a link-local or cloud metadata address, which
    /// would let a plugin reach the host's own credentials. IPv6 literals do
    /// not parse as patterns at all.
    pub fn grant_problem(&self, insecure_http: bool) -> Option<String> {
        let host = self.host.as_str();
        let link_local = host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_link_local());
        if link_local || host == "metadata.google.internal" || host.ends_with(".metadata.google.internal") {
            return Some("link-local and cloud metadata addresses cannot be granted".into());
        }
        if self.scheme.as_deref() != Some("https") && !self.is_loopback() && !insecure_http {
            return Some("only https:// may be granted beyond loopback (127.0.0.0/8, localhost), unless the instance sets transport.insecureHttp".into());
        }
        None
    }

    /// Patterns name hosts or IPv4 addresses (the grammar has no IPv6).
    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Traffic to this pattern may leave the machine unencrypted.
    pub fn is_plain_http_beyond_loopback(&self) -> bool {
        self.scheme.as_deref() != Some("https") && !self.is_loopback()
    }

    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let host = host.to_ascii_lowercase();
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == url.scheme());
        let port_ok = self.port.is_none_or(|p| Some(p) == url.port_or_known_default());
        let host_ok = self.host.is_empty() || if self.host.starts_with('.') { host.ends_with(&self.host) } else { host == self.host };
        scheme_ok && port_ok && host_ok
    }
}

/// A parsed list of patterns.
#[derive(Debug, Clone, Default)]
pub struct HostAllowList(Vec<HostPattern>);

impl HostAllowList {
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries.iter().map(|e| HostPattern::parse(e)).collect::<Result<_, _>>().map(Self)
    }

    pub fn allows(&self, url: &Url) -> bool {
        self.0.iter().any(|p| p.matches(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_https_beyond_loopback_and_never_metadata() {
        let problem = |p: &str| HostPattern::parse(p).unwrap().grant_problem(false);
        for ok in ["https://lns.example.com", "https://*.example.com", "https://*", "http://127.0.0.1:8080", "http://127.8.0.1", "http://localhost"] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        for refused in ["http://*", "http://lns.example.com", "*.example.com", "https://169.254.169.254", "http://169.254.169.254", "https://169.254.1.1:8443", "https://metadata.google.internal"] {
            assert!(problem(refused).is_some(), "{refused}");
        }
        // An instance that says so may use plain HTTP, never metadata.
        let insecure = |p: &str| HostPattern::parse(p).unwrap().grant_problem(true);
        assert_eq!(insecure("http://gw.example.com:8080"), None);
        assert!(insecure("http://169.254.169.254").is_some());
    }

    fn allows(pattern: &str, url: &str) -> bool {
        HostPattern::parse(pattern).unwrap().matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        assert!(allows("http://127.0.0.1:8080", "http://127.0.0.1:8080/api"));
        assert!(!allows("http://127.0.0.1:8080", "http://127.0.0.1:8081/api"));
        assert!(!allows("https://127.0.0.1:8080", "http://127.0.0.1:8080/api"));
        assert!(allows("https://lrc.example.com", "https://lrc.example.com/x"));
        assert!(!allows("https://lrc.example.com", "https://lrc.example.com.evil.org/x"));
        assert!(allows("*.thingpark.com", "https://eu1.thingpark.com/x"));
        assert!(!allows("*.thingpark.com", "https://thingpark.com.evil/x"));
        assert!(allows("https://*", "https://ns.example.org:8080/api"));
        assert!(!allows("https://*", "http://ns.example.org/api"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "ftp://x", "example.com", "http://", "http://a:notaport", "*x.com", "http://u@h", "*", "http://*x"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
