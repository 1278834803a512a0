//! A small API client for the CLI.

use anyhow::bail;
use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_string(), token: token.to_string() }
    }

    async fn finish(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{status}: {}", body.get("error").and_then(Value::as_str).unwrap_or("no detail"));
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Self::finish(self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        Self::finish(req.send().await?).await
    }

    pub async fn multipart(&self, path: &str, form: reqwest::multipart::Form) -> anyhow::Result<Value> {
        Self::finish(self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).multipart(form).send().await?).await
    }
}
