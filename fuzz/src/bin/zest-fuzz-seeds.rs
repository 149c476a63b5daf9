//! Writes the starting corpus of every fuzz target into `fuzz/corpus/<target>/seed-*`:
//! small valid inputs of each format, made with zest's own writers and from the shapes the
//! Hub, the CAS, trackers and peers send, so the fuzzers start from inputs that reach deep.
//!
//!     cargo run -p zest-fuzz --bin zest-fuzz-seeds [CORPUS_DIR]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use xet::XetHash;
use xet::reconstruction::{
    ChunkRange, HttpRange, RangeDescriptor, ReconstructionV2, Term, XorbFetch,
};
use xet::shard::{FileInfo, FileTerm, Shard, ShardForm, XorbChunkEntry, XorbInfo};
use xet::xorb::{CompressionChoice, Xorb, XorbBuilder};
use zest_proto::peer;
use zestd::engine::journal::{Checkpoint, ChunkRecord, Journal};

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let (xorb_hash, xorb) = sample_xorb();
    let all: Vec<(&str, Seeds)> = vec![
        ("xorb", xorb_seeds(&xorb)),
        ("shard", shard_seeds(xorb_hash, &xorb)),
        ("reconstruction", reconstruction_seeds(xorb_hash)),
        ("hub_json", hub_seeds()),
        ("tracker", tracker_seeds()),
        ("peer_message", peer_seeds(xorb_hash)),
        ("config", config_seeds()),
        ("state", state_seeds(xorb_hash)?),
        ("endpoint", endpoint_seeds()),
    ];
    for (target, seeds) in all {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        for (name, bytes) in seeds {
            std::fs::write(d.join(format!("seed-{name}")), bytes)?;
        }
    }
    println!("seeds written under {}", dir.display());
    Ok(())
}

fn sample_xorb() -> (XetHash, Vec<u8>) {
    let mut b = XorbBuilder::new(CompressionChoice::Smallest);
    let chunks: [Vec<u8>; 3] = [
        b"zest ".repeat(40),
        (0..=255u8).collect(),
        (0..300u32).map(|i| (i * 7 % 13) as u8).collect(),
    ];
    for c in &chunks {
        b.add_chunk(c).expect("small chunks fit a xorb");
    }
    b.finish().expect("a xorb of three chunks")
}

fn xorb_seeds(xorb: &[u8]) -> Seeds {
    let x = Xorb::parse(xorb).expect("our own xorb parses");
    let region = x.data.to_vec();
    let first_chunk = x.footer.chunk_boundary_offsets[0] as usize;
    let with_piece = |piece: u8, r: &[u8]| [&[piece][..], r].concat();
    vec![
        ("whole", xorb.to_vec()),
        ("region-in-7-byte-pieces", with_piece(6, &region)),
        ("region-whole", with_piece(255, &region)),
        ("first-chunk", with_piece(31, &region[..first_chunk])),
    ]
}

fn shard_seeds(xorb_hash: XetHash, xorb: &[u8]) -> Seeds {
    let x = Xorb::parse(xorb).expect("our own xorb parses");
    let unpacked = *x.footer.unpacked_chunk_offsets.last().unwrap_or(&0);
    let mut start = 0;
    let chunks = x
        .footer
        .chunk_hashes
        .iter()
        .zip(&x.footer.unpacked_chunk_offsets)
        .map(|(h, &end)| {
            let e = XorbChunkEntry {
                chunk_hash: *h,
                byte_range_start: start,
                unpacked_bytes: end - start,
                flags: 0,
            };
            start = end;
            e
        })
        .collect();
    let shard = Shard {
        files: vec![FileInfo {
            file_hash: xet::hash::chunk_hash(b"a file"),
            terms: vec![FileTerm {
                xorb_hash,
                xorb_flags: 0,
                unpacked_bytes: unpacked,
                chunk_start: 0,
                chunk_end: x.footer.num_chunks() as u32,
            }],
            verification: Some(vec![xet::merkle::verification_hash(&x.footer.chunk_hashes)]),
            sha256: Some(xet::hash::chunk_hash(b"sha")),
        }],
        xorbs: vec![XorbInfo {
            xorb_hash,
            xorb_flags: 0,
            num_bytes_in_xorb: unpacked,
            num_bytes_on_disk: xorb.len() as u32,
            chunks,
        }],
        footer: None,
    };
    let mut out = Vec::new();
    for (name, form) in [
        ("upload", ShardForm::Upload),
        ("stored", ShardForm::Stored),
        ("stored-without-lookups", ShardForm::StoredWithoutLookups),
    ] {
        out.push((
            name,
            shard.serialize(form).expect("our own shard serializes"),
        ));
    }
    out
}

fn reconstruction_seeds(xorb: XetHash) -> Seeds {
    let v2 = ReconstructionV2 {
        offset_into_first_range: 0,
        terms: vec![
            Term {
                hash: xorb,
                unpacked_length: 1000,
                range: ChunkRange::new(0, 2),
            },
            Term {
                hash: xorb,
                unpacked_length: 556,
                range: ChunkRange::new(2, 3),
            },
        ],
        xorbs: HashMap::from([(
            xorb,
            vec![XorbFetch {
                url: "https://transfer.xethub.hf.co/xorbs/default/x?X-Amz-Signature=s".into(),
                ranges: vec![RangeDescriptor {
                    chunks: ChunkRange::new(0, 3),
                    bytes: HttpRange { start: 0, end: 700 },
                }],
            }],
        )]),
    };
    let v2_json = serde_json::to_vec(&v2).expect("serializes");
    let v1_json = format!(
        r#"{{"offset_into_first_range":0,"terms":[{{"hash":"{xorb}","unpacked_length":1556,"range":{{"start":0,"end":3}}}}],"fetch_info":{{"{xorb}":[{{"range":{{"start":0,"end":3}},"url":"https://cdn/x","url_range":{{"start":0,"end":700}}}}]}}}}"#
    );
    vec![
        ("v1", [&[0u8][..], v1_json.as_bytes()].concat()),
        ("v2", [&[1u8][..], &v2_json].concat()),
    ]
}

fn hub_seeds() -> Seeds {
    vec![
        (
            "tree",
            br#"[{"type":"file","oid":"5f8c","size":1519,"path":"config.json"},{"type":"directory","oid":"aa","size":0,"path":"onnx"},{"type":"file","oid":"9e1a","size":90868376,"path":"onnx/model.safetensors","lfs":{"oid":"2b1e9b4e2b9f","size":90868376,"pointerSize":135},"xetHash":"f1b7f3a9"}]"#.to_vec(),
        ),
        (
            "repo-info",
            br#"{"_id":"x","id":"org/model","sha":"0123456789abcdef0123456789abcdef01234567","private":false,"gated":"manual"}"#.to_vec(),
        ),
        (
            "xet-token",
            br#"{"accessToken":"xet_abc","exp":1893456000,"casUrl":"https://cas-server.xethub.hf.co"}"#.to_vec(),
        ),
        (
            "link",
            br#"<https://huggingface.co/api/models/org/model/tree/main?cursor=abc>; rel="next""#.to_vec(),
        ),
        ("repo-name", b"sentence-transformers/all-MiniLM-L6-v2".to_vec()),
        ("cache-folder", b"models--org--model".to_vec()),
    ]
}

fn tracker_seeds() -> Seeds {
    let peers = [127u8, 0, 0, 1, 0x12, 0x8c, 10, 0, 0, 2, 0x1a, 0xe1];
    let http = [
        &b"d8:completei1e10:incompletei0e8:intervali1800e12:min intervali60e5:peers12:"[..],
        &peers,
        b"e",
    ]
    .concat();
    let mut udp = Vec::new();
    for w in [1800u32, 0, 1] {
        udp.extend_from_slice(&w.to_be_bytes());
    }
    udp.extend_from_slice(&peers);
    vec![
        ("http", http.clone()),
        ("http-crlf", [&http[..], b"\r\n"].concat()),
        ("failure", b"d14:failure reason12:unregisterede".to_vec()),
        (
            "peers6-list",
            b"d8:intervali900e5:peersld2:ip9:127.0.0.14:porti6881eeee".to_vec(),
        ),
        ("udp-announce", udp),
    ]
}

fn frame(m: &impl Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    [&(body.len() as u32).to_be_bytes()[..], &body].concat()
}

fn peer_seeds(file: XetHash) -> Seeds {
    use peer::{request, response};
    let f = file.as_bytes().to_vec();
    let req = |k| peer::Request { kind: Some(k) };
    let resp = |k| peer::Response { kind: Some(k) };
    vec![
        (
            "hello",
            frame(&peer::Hello {
                version: 1,
                capabilities: vec!["have".into(), "manifest".into(), "get".into()],
                agent: "zest/0.1".into(),
                fleet_proof: vec![7; 32],
            }),
        ),
        (
            "requests",
            [
                frame(&req(request::Kind::Have(peer::HaveRequest {
                    files: vec![f.clone()],
                }))),
                frame(&req(request::Kind::Get(peer::GetRequest {
                    file: f.clone(),
                    start: 0,
                    end: 3,
                }))),
                frame(&req(request::Kind::Manifest(peer::ManifestRequest {
                    file: f.clone(),
                    start: 0,
                    end: 3,
                }))),
            ]
            .concat(),
        ),
        (
            "have-reply",
            frame(&resp(response::Kind::Have(peer::HaveReply {
                files: vec![peer::FileHave {
                    file: f.clone(),
                    complete: false,
                    total_chunks: 10,
                    held: vec![0, 3, 5, 7],
                    fetching: vec![3, 5],
                    quiet_ms: Some(1500),
                    relayed: Some(peer::RelayedClaims {
                        claims: vec![peer::RelayedClaim {
                            node: "0123456789abcdef".into(),
                            start: 7,
                            end: 10,
                            hops: 1,
                            done: false,
                        }],
                    }),
                }],
            }))),
        ),
        (
            "watch-updates",
            [
                frame(&req(request::Kind::Watch(peer::WatchRequest {
                    file: f.clone(),
                }))),
                frame(&resp(response::Kind::Update(peer::HaveUpdate {
                    have: Some(peer::FileHave {
                        file: f.clone(),
                        complete: false,
                        total_chunks: 10,
                        held: vec![0, 3],
                        fetching: vec![3, 5],
                        quiet_ms: Some(20),
                        relayed: None,
                    }),
                    delta: false,
                }))),
                frame(&resp(response::Kind::Update(peer::HaveUpdate {
                    have: Some(peer::FileHave {
                        file: f.clone(),
                        complete: false,
                        total_chunks: 10,
                        held: vec![3, 5],
                        fetching: vec![],
                        quiet_ms: Some(0),
                        relayed: Some(peer::RelayedClaims {
                            claims: vec![peer::RelayedClaim {
                                node: "fedcba9876543210".into(),
                                start: 5,
                                end: 10,
                                hops: 2,
                                done: true,
                            }],
                        }),
                    }),
                    delta: true,
                }))),
            ]
            .concat(),
        ),
        (
            "manifest-and-chunk",
            [
                frame(&resp(response::Kind::Manifest(peer::ManifestReply {
                    chunks: (0..3)
                        .map(|i| peer::ChunkClaim {
                            index: i,
                            hash: f.clone(),
                            size: 100 + i,
                        })
                        .collect(),
                }))),
                frame(&resp(response::Kind::Chunk(peer::ChunkData {
                    index: 0,
                    data: b"zest".repeat(25),
                }))),
                frame(&resp(response::Kind::Error(peer::Error {
                    code: "gone".into(),
                    message: "the file left this node's cache".into(),
                }))),
            ]
            .concat(),
        ),
    ]
}

fn config_seeds() -> Seeds {
    vec![(
        "full",
        br#"socket = "/run/zest/zestd.sock"
state_dir = "/var/lib/zest"
cache_dir = "~/.cache/huggingface/hub"
endpoint = "https://huggingface.co"
fetch_concurrency = 24
listen = "0.0.0.0:4747"
peers = ["10.0.0.2:4747"]
trackers = ["udp://127.0.0.1:6969/announce"]
private_trackers = ["http://127.0.0.1:6969/announce"]
dht = false
dht_port = 4747
mdns = true
fleet_key_file = "/etc/zest/fleet.key"
seed_public = true
max_peers = 64
hub_listen = "127.0.0.1:4748"
xet_socket = "off"
max_upload_rate = "20MiB"
max_download_rate = "400Mbit"
metrics_listen = "[::1]:9464"
"#
        .to_vec(),
    )]
}

fn state_seeds(file: XetHash) -> std::io::Result<Seeds> {
    let dir = std::env::temp_dir().join(format!("zest-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("journal");
    let (mut j, _, _) = Journal::open(&path, &file, 1556)?;
    j.append(
        &[ChunkRecord {
            index: 0,
            size: 1000,
            offset: 0,
            hash: file,
        }],
        &[Checkpoint {
            xorb: file,
            chunk: 1,
            byte_offset: 400,
        }],
    )?;
    j.append(
        &[ChunkRecord {
            index: 1,
            size: 556,
            offset: 1000,
            hash: file,
        }],
        &[],
    )?;
    drop(j);
    let bytes = std::fs::read(&path)?;
    std::fs::remove_dir_all(&dir)?;
    // The records follow the header (magic, file hash, size).
    let records = bytes.get(48..).unwrap_or_default().to_vec();
    let manifest = [file.as_bytes().as_slice(), &1000u32.to_le_bytes()].concat();
    Ok(vec![
        ("journal-records", records),
        ("index-manifest", manifest),
        (
            "pull-record",
            br#"{"repo_type":"model","repo_id":"org/model","revision":"main","include":["*.json"],"exclude":[],"endpoint":"http://127.0.0.1:1","had_token":false,"resumes":2,"stopped":{"kind":"network","message":"m","unix":1}}"#.to_vec(),
        ),
    ])
}

fn endpoint_seeds() -> Seeds {
    let cas = zestd::endpoint::rewrite::encode_base("https://cas-server.xethub.hf.co");
    let h = "d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb";
    vec![
        (
            "token",
            b"GET\n/api/models/org/model/xet-read-token/main\n127.0.0.1:4748\n\n".to_vec(),
        ),
        (
            "reconstruction",
            format!("GET\n/cas/{cas}/v2/reconstructions/{h}\nlocalhost:4748\nbytes=0-99\n1000")
                .into_bytes(),
        ),
        (
            "file-range",
            b"GET\n/file/abc\n[::1]:4748\nbytes=-500\n1556".to_vec(),
        ),
        (
            "resolve",
            b"HEAD\n/org/model/resolve/main/config.json\nevil.example:4748\nbytes=5-\n10".to_vec(),
        ),
    ]
}
