//! Cluster membership through etcd's v3 JSON gateway
//! (`/v3/cluster/member/{list,add,promote,remove}`), so the operator can
//! grow and shrink a cluster with etcd's own API.
//!
//! The gateway speaks protobuf's JSON mapping: uint64 IDs are strings,
//! fields with default values (`false`, `""`, empty lists) are left out,
//! and errors are `{"error": "...", "message": "...", "code": N}` with
//! a non-2xx status.

use serde::Deserialize;
use serde_json::json;

use super::Client;
use crate::{Error, Result};

/// One member as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member ID etcd assigned.
    #[serde(rename = "ID", deserialize_with = "uint64")]
    pub id: u64,
    /// The member's `--name`; empty while an added member has not started.
    #[serde(default)]
    pub name: String,
    /// URLs the other members reach it on.
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on; empty while it has not started.
    #[serde(default, rename = "clientURLs")]
    pub client_urls: Vec<String>,
    /// A learner replicates but does not vote until promoted.
    #[serde(default)]
    pub is_learner: bool,
}

/// A uint64 in protobuf's JSON mapping: a string, or (from other
/// encoders) a number.
fn uint64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    match Id::deserialize(d)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct ListReply {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct AddReply {
    member: Member,
}

#[derive(Deserialize)]
struct GatewayError {
    message: Option<String>,
    error: Option<String>,
    code: Option<i64>,
}

impl Client {
    /// The cluster's members (`MemberList`).
    pub async fn member_list(&self) -> Result<Vec<Member>> {
        let reply: ListReply = self.member_call("list", json!({})).await?;
        Ok(reply.members)
    }

    /// Adds a member with these peer URLs (`MemberAdd`), as a learner when
    /// `learner`; returns it as etcd registered it (with its new ID and no
    /// name yet). The new member must then be started with
    /// `--initial-cluster-state existing`.
    pub async fn member_add(&self, peer_urls: &[String], learner: bool) -> Result<Member> {
        let reply: AddReply = self
            .member_call("add", json!({"peerURLs": peer_urls, "isLearner": learner}))
            .await?;
        Ok(reply.member)
    }

    /// Promotes a learner to a voting member (`MemberPromote`). etcd
    /// refuses while the learner is not in sync with the leader
    /// ("etcdserver: can only promote a learner member which is in sync
    /// with leader"): retry later.
    pub async fn member_promote(&self, id: u64) -> Result<()> {
        self.member_call::<serde_json::Value>("promote", json!({"ID": id.to_string()}))
            .await
            .map(drop)
    }

    /// Removes a member (`MemberRemove`).
    pub async fn member_remove(&self, id: u64) -> Result<()> {
        self.member_call::<serde_json::Value>("remove", json!({"ID": id.to_string()}))
            .await
            .map(drop)
    }

    /// POSTs to `/v3/cluster/member/{op}`; a non-2xx reply becomes
    /// [`Error::Server`] with etcd's own message.
    async fn member_call<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        body: serde_json::Value,
    ) -> Result<T> {
        let path = format!("/v3/cluster/member/{op}");
        let r = self.post_json(&path, body.to_string()).await?;
        if !r.is_ok() {
            return Err(gateway_error(&path, r.status, &r.body));
        }
        parse(&path, &r.body)
    }
}

/// A 2xx reply's body: not JSON is a protocol error, JSON of another shape
/// an unexpected reply.
fn parse<T: serde::de::DeserializeOwned>(path: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::Protocol(format!("{path}: reply is not JSON: {e}"))
        } else {
            Error::UnexpectedReply(format!("{path}: {e}"))
        }
    })
}

/// `{"error": ..., "message": ..., "code": N}` as an [`Error::Server`]
/// that keeps etcd's text; any other body is quoted (shortened).
fn gateway_error(path: &str, status: u16, body: &str) -> Error {
    let parsed: Option<GatewayError> = serde_json::from_str(body).ok();
    match parsed
        .as_ref()
        .and_then(|p| p.message.clone().or(p.error.clone()))
    {
        Some(message) => {
            let code = parsed
                .and_then(|p| p.code)
                .map(|c| format!(", code {c}"))
                .unwrap_or_default();
            Error::Server(format!("etcd {path}: {message} (HTTP {status}{code})"))
        }
        None => {
            let body: String = body.trim().chars().take(200).collect();
            Error::Server(format!("etcd {path}: HTTP {status}: {body}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_member_list() {
        // etcd 3.4's gateway: IDs as strings, a learner added but not
        // started (no name, no client URLs), false and empty fields left out.
        let body = r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","raft_term":"2"},"members":[{"ID":"3127549311357172278","peerURLs":["http://127.0.0.1:23999"],"isLearner":true},{"ID":"18446744073709551615","name":"n1","peerURLs":["http://127.0.0.1:23800"],"clientURLs":["http://127.0.0.1:23790"]}]}"#;
        let ms = parse::<ListReply>("list", body).unwrap().members;
        assert_eq!(
            ms,
            vec![
                Member {
                    id: 3127549311357172278,
                    name: String::new(),
                    peer_urls: vec!["http://127.0.0.1:23999".into()],
                    client_urls: vec![],
                    is_learner: true,
                },
                Member {
                    id: u64::MAX,
                    name: "n1".into(),
                    peer_urls: vec!["http://127.0.0.1:23800".into()],
                    client_urls: vec!["http://127.0.0.1:23790".into()],
                    is_learner: false,
                },
            ]
        );
    }

    #[test]
    fn member_fields_are_checked() {
        // A numeric ID is accepted too.
        let m: Member = parse("m", r#"{"ID": 42, "name": "a\u00e9\n"}"#).unwrap();
        assert_eq!((m.id, m.name.as_str()), (42, "aé\n"));
        for bad in [
            r#"{"name":"x"}"#,
            r#"{"ID":"-1"}"#,
            r#"{"ID":"1","isLearner":"yes"}"#,
            r#"{"ID":"1","peerURLs":"http://x"}"#,
            r#"{"ID":"1","peerURLs":[1]}"#,
            r#"[]"#,
        ] {
            let e = parse::<Member>("m", bad).unwrap_err();
            assert_eq!(e.label(), "unexpected_reply", "{bad}");
        }
        assert_eq!(parse::<Member>("m", "{").unwrap_err().label(), "protocol");
    }

    #[test]
    fn gateway_errors_keep_etcds_text() {
        let body = r#"{"error":"etcdserver: can only promote a learner member which is in sync with leader","message":"etcdserver: can only promote a learner member which is in sync with leader","code":9}"#;
        let e = gateway_error("/v3/cluster/member/promote", 412, body);
        assert_eq!(e.label(), "server_error");
        assert_eq!(
            e.to_string(),
            "server error: etcd /v3/cluster/member/promote: etcdserver: can only promote a \
             learner member which is in sync with leader (HTTP 412, code 9)"
        );
        let e = gateway_error("/v3/cluster/member/list", 502, "Bad Gateway\n");
        assert_eq!(
            e.to_string(),
            "server error: etcd /v3/cluster/member/list: HTTP 502: Bad Gateway"
        );
    }

    #[tokio::test]
    async fn member_calls_over_http() {
        use crate::conn::fake::{Behaviour, serve};
        use std::time::Duration;
        let t = Duration::from_millis(400);
        let body = r#"{"header":{},"member":{"ID":"7","peerURLs":["http://127.0.0.1:1"],"isLearner":true},"members":[]}"#;
        let a = serve(Behaviour::Reply(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ))
        .await;
        let c = Client::new(&format!("http://{a}"), t, None).unwrap();
        let m = c
            .member_add(&["http://127.0.0.1:1".into()], true)
            .await
            .unwrap();
        assert_eq!((m.id, m.is_learner, m.name.as_str()), (7, true, ""));

        let body = r#"{"error":"etcdserver: member not found","message":"etcdserver: member not found","code":5}"#;
        let a = serve(Behaviour::Reply(
            format!(
                "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ))
        .await;
        let c = Client::new(&format!("http://{a}"), t, None).unwrap();
        let e = c.member_remove(9).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("etcdserver: member not found (HTTP 404, code 5)"),
            "{e}"
        );

        let a = serve(Behaviour::Reply(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nnope!".to_vec(),
        ))
        .await;
        let c = Client::new(&format!("http://{a}"), t, None).unwrap();
        assert_eq!(c.member_list().await.unwrap_err().label(), "protocol");
    }
}
