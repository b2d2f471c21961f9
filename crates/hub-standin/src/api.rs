//! The Hub's routes, answered from a [`Hub`]. Status codes, headers and JSON shapes follow
//! what `huggingface_hub` reads (and what the real Hub answers): `X-Error-Code` of
//! `RepoNotFound` / `GatedRepo` / `RevisionNotFound` / `EntryNotFound`, 401 for a repo the
//! caller may not see (whether it exists or not), 302 to a CDN for LFS files.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{decode, Request, Response};
use crate::store::{hex, wants_lfs, Hub, Kind, Repo, StoredFile};

pub fn handle(hub: &mut Hub, req: &Request) -> Response {
    let mut line = format!("{} {}", req.method, req.path);
    if let Some(range) = req.header("range") {
        line.push_str(&format!(" Range: {range}"));
    }
    hub.log.push(line);
    let base = format!("http://{}", req.header("host").unwrap_or("127.0.0.1"));
    let cdn = hub.cdn_base.clone().unwrap_or_else(|| base.clone());
    if let Some(token) = req.token() {
        if !hub.tokens.contains_key(token) {
            return Response::error(401, None, "Invalid credentials in Authorization header");
        }
    }
    let user = req.token().and_then(|t| hub.tokens.get(t)).cloned();
    let segs: Vec<&str> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method.as_str();
    match (method, segs.as_slice()) {
        ("POST", ["api", "repos", "create"]) => create_repo(hub, req, user.as_deref(), &base),
        ("POST", ["api", "validate-yaml"]) => {
            Response::json(200, &json!({"errors": [], "warnings": []}))
        }
        ("GET", ["api", kind, owner, name, rest @ ..]) if Kind::from_plural(kind).is_some() => {
            let kind = Kind::from_plural(kind).expect("checked");
            let id = format!("{owner}/{name}");
            match rest {
                [] => repo_info(hub, kind, &id, "main", req, user.as_deref()),
                ["revision", rev @ ..] => {
                    let rev = decode(&rev.join("/"));
                    repo_info(hub, kind, &id, &rev, req, user.as_deref())
                }
                ["tree", rev, path @ ..] => {
                    let path = decode(&path.join("/"));
                    tree(hub, kind, &id, &decode(rev), &path, req, user.as_deref())
                }
                ["refs"] => refs(hub, kind, &id, user.as_deref()),
                _ => Response::error(404, None, "Not found"),
            }
        }
        ("POST", ["api", kind, owner, name, action, rest @ ..])
            if Kind::from_plural(kind).is_some() =>
        {
            let kind = Kind::from_plural(kind).expect("checked");
            let id = format!("{owner}/{name}");
            let rev = decode(&rest.join("/"));
            match *action {
                "preupload" => preupload(hub, kind, &id, &rev, req, user.as_deref()),
                "commit" => commit(hub, kind, &id, &rev, req, user.as_deref(), &base),
                "branch" => create_branch(hub, kind, &id, &rev, req, user.as_deref()),
                _ => Response::error(404, None, "Not found"),
            }
        }
        ("GET" | "HEAD", ["lfs-cdn", oid]) => lfs_download(hub, oid, req),
        ("PUT", ["lfs-upload", oid]) => lfs_upload(hub, oid, req),
        ("POST", ["lfs-verify"]) => lfs_verify(hub, req),
        ("POST", path) if path.ends_with(&["info", "lfs", "objects", "batch"]) => {
            let (kind, repo) = match path {
                ["datasets", owner, name, ..] => (Kind::Dataset, format!("{owner}/{name}")),
                [owner, name, ..] => (Kind::Model, format!("{owner}/{name}")),
                _ => return Response::error(404, None, "Not found"),
            };
            let Some(id) = repo.strip_suffix(".git") else {
                return Response::error(404, None, "Not found");
            };
            lfs_batch(hub, kind, id, req, user.as_deref(), &cdn)
        }
        ("GET" | "HEAD", path) => {
            let (kind, rest) = match path {
                ["datasets", rest @ ..] => (Kind::Dataset, rest),
                rest => (Kind::Model, rest),
            };
            match rest {
                [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => {
                    let id = format!("{owner}/{name}");
                    let file = decode(&file.join("/"));
                    resolve(
                        hub,
                        kind,
                        &id,
                        &decode(rev),
                        &file,
                        req,
                        user.as_deref(),
                        &cdn,
                    )
                }
                _ => Response::error(404, None, "Not found"),
            }
        }
        _ => Response::error(404, None, "Not found"),
    }
}

fn not_found_repo(user: Option<&str>) -> Response {
    let message = "Repository not found";
    if user.is_none() {
        // The Hub does not say whether a repo exists to someone not logged in.
        Response::error(401, Some("RepoNotFound"), message)
    } else {
        Response::error(404, Some("RepoNotFound"), message)
    }
}

/// The repo if `user` may read it; otherwise the answer the Hub gives.
fn readable<'a>(
    hub: &'a Hub,
    kind: Kind,
    id: &str,
    user: Option<&str>,
) -> Result<&'a Repo, Response> {
    match hub.repos.get(&(kind, id.to_string())) {
        Some(repo) if !repo.private || user == Some(repo.owner.as_str()) => Ok(repo),
        _ => Err(not_found_repo(user)),
    }
}

fn writable<'a>(
    hub: &'a mut Hub,
    kind: Kind,
    id: &str,
    user: Option<&str>,
) -> Result<&'a mut Repo, Response> {
    let Some(user) = user else {
        return Err(Response::error(
            401,
            None,
            "You must be authenticated to write to a repo",
        ));
    };
    match hub.repos.get_mut(&(kind, id.to_string())) {
        Some(repo) if repo.owner == user => Ok(repo),
        Some(repo) if !repo.private => Err(Response::error(
            403,
            None,
            "You don't have the rights to write to this repo",
        )),
        _ => Err(not_found_repo(Some(user))),
    }
}

fn revision_not_found(rev: &str) -> Response {
    Response::error(
        404,
        Some("RevisionNotFound"),
        &format!("Invalid rev id: {rev}"),
    )
}

fn repo_url(base: &str, kind: Kind, id: &str) -> String {
    match kind {
        Kind::Model => format!("{base}/{id}"),
        Kind::Dataset => format!("{base}/datasets/{id}"),
    }
}

fn repo_info(
    hub: &Hub,
    kind: Kind,
    id: &str,
    rev: &str,
    req: &Request,
    user: Option<&str>,
) -> Response {
    let repo = match readable(hub, kind, id, user) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(sha) = repo.resolve(rev) else {
        return revision_not_found(rev);
    };
    let commit = &repo.commits[&sha];
    let blobs = req.query("blobs").is_some_and(|v| v == "true" || v == "1");
    let siblings: Vec<Value> = commit
        .files
        .iter()
        .map(|(path, f)| {
            if blobs {
                let mut s = json!({"rfilename": path, "blobId": f.oid, "size": f.data.len()});
                if f.lfs {
                    s["lfs"] =
                        json!({"sha256": f.sha256, "size": f.data.len(), "pointerSize": 134});
                }
                s
            } else {
                json!({"rfilename": path})
            }
        })
        .collect();
    let (owner, _) = id.split_once('/').unwrap_or((id, ""));
    Response::json(
        200,
        &json!({
            "_id": &sha[..24],
            "id": id,
            "author": owner,
            "sha": sha,
            "lastModified": "2026-12-01T00:00:00.000Z",
            "private": repo.private,
            "gated": if repo.gated { json!("auto") } else { json!(false) },
            "disabled": false,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }),
    )
}

fn tree(
    hub: &Hub,
    kind: Kind,
    id: &str,
    rev: &str,
    path: &str,
    req: &Request,
    user: Option<&str>,
) -> Response {
    let repo = match readable(hub, kind, id, user) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(sha) = repo.resolve(rev) else {
        return revision_not_found(rev);
    };
    let recursive = req
        .query("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{}/", path.trim_end_matches('/'))
    };
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (p, f) in &repo.commits[&sha].files {
        let Some(rest) = p.strip_prefix(&prefix) else {
            continue;
        };
        // Folders along the way, as the Hub lists them.
        let parts: Vec<&str> = rest.split('/').collect();
        for depth in 1..parts.len() {
            if !recursive && depth > 1 {
                break;
            }
            dirs.insert(format!("{prefix}{}", parts[..depth].join("/")));
        }
        if !recursive && parts.len() > 1 {
            continue;
        }
        let mut e = json!({"type": "file", "oid": f.oid, "size": f.data.len(), "path": p});
        if f.lfs {
            e["lfs"] = json!({"oid": f.sha256, "size": f.data.len(), "pointerSize": 134});
        }
        entries.push(e);
    }
    if entries.is_empty() && dirs.is_empty() && !path.is_empty() {
        return Response::error(
            404,
            Some("EntryNotFound"),
            &format!("{path} does not exist on \"{rev}\""),
        );
    }
    let mut out: Vec<Value> = dirs
        .into_iter()
        .map(|d| {
            let oid = hex(&Sha256::digest(d.as_bytes()))[..40].to_string();
            json!({"type": "directory", "oid": oid, "size": 0, "path": d})
        })
        .collect();
    out.extend(entries);
    Response::json(200, &Value::Array(out))
}

fn refs(hub: &Hub, kind: Kind, id: &str, user: Option<&str>) -> Response {
    let repo = match readable(hub, kind, id, user) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let list = |names: &std::collections::BTreeMap<String, String>, prefix: &str| -> Vec<Value> {
        names
            .iter()
            .filter(|(n, _)| !n.starts_with("refs/"))
            .map(|(n, sha)| json!({"name": n, "ref": format!("{prefix}{n}"), "targetCommit": sha}))
            .collect()
    };
    let converts: Vec<Value> = repo
        .branches
        .iter()
        .filter_map(|(n, sha)| {
            n.strip_prefix("refs/convert/")
                .map(|c| json!({"name": c, "ref": n, "targetCommit": sha}))
        })
        .collect();
    Response::json(
        200,
        &json!({
            "branches": list(&repo.branches, "refs/heads/"),
            "tags": list(&repo.tags, "refs/tags/"),
            "converts": converts,
        }),
    )
}

/// Which bytes of `len` a `Range: bytes=A-B` header asks for; `Err` when none can be served.
fn byte_range(header: Option<&str>, len: usize) -> Result<Option<(usize, usize)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = if a.is_empty() {
        let n: usize = b.parse().map_err(|_| ())?;
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let start: usize = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<usize>()
                .map_err(|_| ())?
                .min(len.saturating_sub(1))
        };
        (start, end)
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The body of a file download, honouring `Range` and any cut the test asked for.
fn serve_bytes(
    hub: &mut Hub,
    data: &Arc<Vec<u8>>,
    cut_keys: &[&str],
    req: &Request,
    mut response: Response,
) -> Response {
    let len = data.len();
    let range = match byte_range(req.header("range"), len) {
        Ok(r) => r,
        Err(()) => {
            return Response::error(416, None, "Requested range not satisfiable")
                .header("Content-Range", format!("bytes */{len}"))
        }
    };
    response = response.header("Accept-Ranges", "bytes");
    let body = match range {
        Some((start, end)) => {
            response.status = 206;
            response = response.header("Content-Range", format!("bytes {start}-{end}/{len}"));
            data[start..=end].to_vec()
        }
        None => data.to_vec(),
    };
    response.body = body;
    if req.method == "GET" {
        for key in cut_keys {
            if let Some(n) = hub.cuts.remove(*key) {
                response.cut_after = Some(n);
                break;
            }
        }
    }
    response
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    hub: &mut Hub,
    kind: Kind,
    id: &str,
    rev: &str,
    file: &str,
    req: &Request,
    user: Option<&str>,
    base: &str,
) -> Response {
    let repo = match readable(hub, kind, id, user) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if repo.gated && user != Some(repo.owner.as_str()) {
        let message = format!(
            "Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."
        );
        match user {
            None => return Response::error(401, Some("GatedRepo"), &message),
            Some(u) if !repo.accepted.contains(u) => {
                return Response::error(403, Some("GatedRepo"), &message)
            }
            Some(_) => {}
        }
    }
    let Some(sha) = repo.resolve(rev) else {
        return revision_not_found(rev);
    };
    let Some(f) = repo.commits[&sha].files.get(file).cloned() else {
        return Response::error(
            404,
            Some("EntryNotFound"),
            &format!("{file} does not exist on \"{rev}\""),
        );
    };
    let response = Response::new(200)
        .header("X-Repo-Commit", sha.clone())
        .header("Content-Type", "application/octet-stream");
    if f.lfs {
        let mut r = response
            .header("ETag", format!("\"{}\"", f.oid))
            .header("X-Linked-Etag", format!("\"{}\"", f.sha256))
            .header("X-Linked-Size", f.data.len().to_string())
            .header("Location", format!("{base}/lfs-cdn/{}", f.sha256));
        r.status = 302;
        hub.lfs_objects
            .entry(f.sha256.clone())
            .or_insert_with(|| f.data.clone());
        r
    } else {
        let r = response.header("ETag", format!("\"{}\"", f.oid));
        serve_bytes(hub, &f.data, &[file], req, r)
    }
}

fn lfs_download(hub: &mut Hub, oid: &str, req: &Request) -> Response {
    let Some(data) = hub.lfs_objects.get(oid).cloned() else {
        return Response::error(404, None, "No such object");
    };
    let r = Response::new(200)
        .header("ETag", format!("\"{oid}\""))
        .header("Content-Type", "application/octet-stream");
    // A cut may be keyed by the file name the test knows, or by the oid.
    let names: Vec<String> = hub
        .repos
        .values()
        .flat_map(|r| r.commits.values())
        .flat_map(|c| c.files.iter())
        .filter(|(_, f)| f.sha256 == oid)
        .map(|(p, _)| p.clone())
        .collect();
    let mut keys: Vec<&str> = vec![oid];
    keys.extend(names.iter().map(|s| s.as_str()));
    serve_bytes(hub, &data, &keys, req, r)
}

fn body_json(req: &Request) -> Result<Value, Response> {
    serde_json::from_slice(&req.body)
        .map_err(|e| Response::error(400, None, &format!("Invalid JSON body: {e}")))
}

fn create_repo(hub: &mut Hub, req: &Request, user: Option<&str>, base: &str) -> Response {
    let Some(user) = user else {
        return Response::error(401, None, "You must be authenticated to create a repo");
    };
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body["name"].as_str() else {
        return Response::error(400, None, "\"name\" is required");
    };
    let namespace = body["organization"].as_str().unwrap_or(user);
    if namespace != user {
        return Response::error(
            403,
            None,
            &format!(
                "You don't have the rights to create a repo under the namespace \"{namespace}\""
            ),
        );
    }
    let kind = match body["type"].as_str() {
        None => Kind::Model,
        Some(t) => match Kind::from_type(t) {
            Some(k) => k,
            None => return Response::error(400, None, &format!("Unsupported repo type: {t}")),
        },
    };
    let private = body["private"].as_bool().unwrap_or(false)
        || body["visibility"].as_str() == Some("private");
    let id = format!("{namespace}/{name}");
    let url = repo_url(base, kind, &id);
    if hub.repos.contains_key(&(kind, id.clone())) {
        return Response::json(
            409,
            &json!({"error": format!("You already created this {} repo", match kind { Kind::Model => "model", Kind::Dataset => "dataset" }), "url": url}),
        );
    }
    hub.create_repo(kind, &id, private);
    Response::json(200, &json!({"url": url, "name": id, "id": id}))
}

fn create_branch(
    hub: &mut Hub,
    kind: Kind,
    id: &str,
    branch: &str,
    req: &Request,
    user: Option<&str>,
) -> Response {
    let start = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|b| b["startingPoint"].as_str().map(str::to_string))
        .unwrap_or_else(|| "main".into());
    let repo = match writable(hub, kind, id, user) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if repo.branches.contains_key(branch) {
        return Response::error(409, None, &format!("Reference already exists: {branch}"));
    }
    let Some(sha) = repo.resolve(&start) else {
        return revision_not_found(&start);
    };
    repo.branches.insert(branch.to_string(), sha);
    Response::json(200, &json!({}))
}

fn preupload(
    hub: &mut Hub,
    kind: Kind,
    id: &str,
    rev: &str,
    req: &Request,
    user: Option<&str>,
) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let repo = match writable(hub, kind, id, user) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !repo.branches.contains_key(rev) {
        return revision_not_found(rev);
    }
    let Some(files) = body["files"].as_array() else {
        return Response::error(400, None, "\"files\" must be a list");
    };
    let mut out = Vec::new();
    for f in files {
        let (Some(path), Some(size)) = (f["path"].as_str(), f["size"].as_u64()) else {
            return Response::error(400, None, "each file needs \"path\" and \"size\"");
        };
        let sample = base64::engine::general_purpose::STANDARD
            .decode(f["sample"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let mode = if wants_lfs(path, size as usize, &sample) {
            "lfs"
        } else {
            "regular"
        };
        out.push(json!({"path": path, "uploadMode": mode, "shouldIgnore": false}));
    }
    Response::json(200, &json!({"files": out, "commitOid": repo.branches[rev]}))
}

fn lfs_batch(
    hub: &mut Hub,
    kind: Kind,
    id: &str,
    req: &Request,
    user: Option<&str>,
    base: &str,
) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = writable(hub, kind, id, user) {
        return r;
    }
    if body["operation"].as_str() != Some("upload") {
        return Response::error(422, None, "only the upload operation is served");
    }
    let transfers: Vec<&str> = body["transfers"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_else(|| vec!["basic"]);
    if !transfers.contains(&"basic") {
        return Response::error(422, None, "the stand-in serves the basic transfer only");
    }
    let mut objects = Vec::new();
    for o in body["objects"].as_array().into_iter().flatten() {
        let (Some(oid), Some(size)) = (o["oid"].as_str(), o["size"].as_u64()) else {
            return Response::error(422, None, "each object needs \"oid\" and \"size\"");
        };
        if oid.len() != 64 || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            objects.push(json!({"oid": oid, "size": size, "error": {"code": 422, "message": "oid must be a sha256"}}));
        } else if hub.lfs_objects.contains_key(oid) {
            objects.push(json!({"oid": oid, "size": size}));
        } else {
            objects.push(json!({
                "oid": oid, "size": size, "authenticated": true,
                "actions": {
                    "upload": {"href": format!("{base}/lfs-upload/{oid}"), "header": {}},
                    "verify": {"href": format!("{base}/lfs-verify"), "header": {}},
                }
            }));
        }
    }
    Response::json(200, &json!({"transfer": "basic", "objects": objects}))
        .header("Content-Type", "application/vnd.git-lfs+json")
}

fn lfs_upload(hub: &mut Hub, oid: &str, req: &Request) -> Response {
    let actual = hex(&Sha256::digest(&req.body));
    if actual != oid {
        return Response::error(
            400,
            None,
            &format!("sha256 of the body is {actual}, not {oid}"),
        );
    }
    hub.lfs_objects
        .insert(oid.to_string(), Arc::new(req.body.clone()));
    Response::new(200)
}

fn lfs_verify(hub: &mut Hub, req: &Request) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let oid = body["oid"].as_str().unwrap_or_default();
    match hub.lfs_objects.get(oid) {
        Some(d) if Some(d.len() as u64) == body["size"].as_u64() => Response::json(200, &json!({})),
        _ => Response::error(404, None, &format!("Object {oid} not uploaded")),
    }
}

fn commit(
    hub: &mut Hub,
    kind: Kind,
    id: &str,
    rev: &str,
    req: &Request,
    user: Option<&str>,
    base: &str,
) -> Response {
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-ndjson"))
    {
        return Response::error(400, None, "The commit body must be application/x-ndjson");
    }
    match writable(hub, kind, id, user) {
        Ok(repo) if !repo.branches.contains_key(rev) => return revision_not_found(rev),
        Ok(_) => {}
        Err(r) => return r,
    }
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let mut summary = None;
    let mut files = Vec::new();
    let mut deleted = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let item: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Response::error(400, None, &format!("Invalid NDJSON line: {e}")),
        };
        let value = &item["value"];
        let path = value["path"].as_str().unwrap_or_default().to_string();
        match item["key"].as_str() {
            Some("header") => summary = value["summary"].as_str().map(str::to_string),
            Some("file") => {
                let content = value["content"].as_str().unwrap_or_default();
                let data = match value["encoding"].as_str() {
                    Some("base64") => {
                        match base64::engine::general_purpose::STANDARD.decode(content) {
                            Ok(d) => d,
                            Err(e) => {
                                return Response::error(
                                    400,
                                    None,
                                    &format!("{path}: bad base64: {e}"),
                                )
                            }
                        }
                    }
                    _ => content.as_bytes().to_vec(),
                };
                if wants_lfs(&path, data.len(), &data[..data.len().min(512)]) && !data.is_empty() {
                    return Response::error(
                        400,
                        None,
                        &format!("Your push was rejected because it contains binary files. {path} must be uploaded with LFS"),
                    );
                }
                files.push((path, StoredFile::new(data, false)));
            }
            Some("lfsFile") => {
                let oid = value["oid"].as_str().unwrap_or_default();
                let Some(data) = hub.lfs_objects.get(oid) else {
                    return Response::error(
                        422,
                        None,
                        &format!("Your push was rejected because an LFS pointer pointed to a file that does not exist ({path})"),
                    );
                };
                if value["size"]
                    .as_u64()
                    .is_some_and(|s| s != data.len() as u64)
                {
                    return Response::error(422, None, &format!("{path}: LFS size mismatch"));
                }
                files.push((path, StoredFile::new(data.to_vec(), true)));
            }
            Some("deletedFile") | Some("deletedFolder") => deleted.push(path),
            other => {
                return Response::error(400, None, &format!("Unknown commit operation: {other:?}"))
            }
        }
    }
    let Some(summary) = summary.filter(|s| !s.trim().is_empty()) else {
        return Response::error(400, None, "A commit needs a header line with a summary");
    };
    let Some(sha) = hub.commit(kind, id, rev, files, &deleted, &summary) else {
        return revision_not_found(rev);
    };
    Response::json(
        200,
        &json!({
            "success": true,
            "commitOid": sha,
            "commitUrl": format!("{}/commit/{sha}", repo_url(base, kind, id)),
            "hookOutput": "",
        }),
    )
}
