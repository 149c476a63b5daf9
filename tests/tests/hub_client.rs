//! zest's Hub and CAS clients (`xet::remote`) against the test hub.

use xet::XetHash;
use xet::remote::{CasClient, HubClient, RemoteError, RepoRef, RepoType};
use zest_tests::Scratch;
use zest_tests::harness::peak_rss;
use zest_tests::hub::fixtures::{self, DATASET, MODEL, PRIVATE_MODEL};
use zest_tests::hub::{FaultSettings, HubConfig, TEST_TOKEN, TestHub};

#[test]
fn hub_and_cas_clients_speak_the_hub_protocol() {
    let scratch = Scratch::new("hub-client");
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("hub");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = HubClient::new(&hub.endpoint, None).expect("client");
        let model = RepoRef::new(RepoType::Model, MODEL).expect("repo");
        let commit = &hub.repo(MODEL).commit;

        let info = client.repo_info(&model, "main").await.expect("repo info");
        assert_eq!(info.sha.as_deref(), Some(commit.as_str()));
        // The hub pages by 3: eight files and three folders take four pages.
        let files = client.list_files(&model, commit).await.expect("tree");
        assert_eq!(files.len(), 8);
        assert!(
            files
                .iter()
                .any(|f| f.path == "nested/deeper/weights (copy 1).bin" && f.xet_hash.is_some())
        );

        // HEAD on a Xet file stops at the cross-origin redirect and reads its headers.
        let meta = client
            .file_meta(&model, "main", "model.safetensors")
            .await
            .expect("xet meta");
        let expected = &hub.repo(MODEL).files["model.safetensors"];
        assert_eq!(&meta.commit, commit);
        assert_eq!(
            Some(meta.etag.as_str()),
            expected.lfs.as_ref().map(|l| l.sha256.as_str())
        );
        assert_eq!(meta.size, Some(expected.size));
        let xet = meta.xet.expect("xet data");
        assert_eq!(Some(&xet.file_hash), expected.xet_hash.as_ref());
        assert!(
            xet.refresh_route
                .ends_with(&format!("/xet-read-token/{commit}"))
        );
        assert!(meta.location.starts_with(&hub.cas_url), "{}", meta.location);
        // A plain file: its git blob id and length.
        let plain = client
            .file_meta(&model, commit, "tokenizer/special tokens map.json")
            .await
            .expect("plain meta");
        assert_eq!(
            plain.etag,
            hub.repo(MODEL).files["tokenizer/special tokens map.json"].blob_id
        );
        assert!(plain.xet.is_none());

        // Errors say what happened.
        let missing = client
            .file_meta(&model, "main", "nope.bin")
            .await
            .unwrap_err();
        assert!(
            matches!(missing, RemoteError::EntryNotFound { .. }),
            "{missing}"
        );
        let rev = client.repo_info(&model, "v9").await.unwrap_err();
        assert!(matches!(rev, RemoteError::RevisionNotFound { .. }), "{rev}");
        let private = RepoRef::new(RepoType::Model, PRIVATE_MODEL).expect("repo");
        let anon = client.repo_info(&private, "main").await.unwrap_err();
        assert!(anon.to_string().contains("HF_TOKEN"), "{anon}");
        let authed = HubClient::new(&hub.endpoint, Some(TEST_TOKEN.into())).expect("client");
        authed
            .repo_info(&private, "main")
            .await
            .expect("private with token");
        let dataset = RepoRef::new(RepoType::Dataset, DATASET).expect("repo");
        assert_eq!(
            client
                .list_files(&dataset, "main")
                .await
                .expect("dataset tree")
                .len(),
            4
        );

        // The CAS: token exchange, reconstruction through v2 and, where v2 is missing, v1.
        let cas = CasClient::new(client.clone(), model.clone(), xet.refresh_route.clone());
        let hash: XetHash = xet.file_hash.parse().expect("hash");
        let v2 = cas.reconstruction(&hash).await.expect("v2 reconstruction");
        hub.set_faults(&FaultSettings {
            no_v2: 1,
            ..Default::default()
        });
        let v1 = cas.reconstruction(&hash).await.expect("v1 reconstruction");
        assert_eq!(hub.faults.armed(), 0);
        assert_eq!(v1.terms, v2.terms);
        assert_eq!(v2.unpacked_len(), expected.size);
        // A wrong user token is refused when exchanging for a CAS token.
        let bad = HubClient::new(&hub.endpoint, Some("hf_bad".into())).expect("client");
        let denied = CasClient::new(bad, model, xet.refresh_route)
            .token(false)
            .await
            .unwrap_err();
        assert!(matches!(denied, RemoteError::AuthDenied { .. }), "{denied}");
    });
}

/// Issue 16, part 3: a listing that loops back on itself ends in a clear error after a few
/// requests (the probe's loop made 24 000), and a 200 MB listing is refused as it arrives
/// instead of being held (the probe saw 950 MB of RSS).
#[test]
fn hostile_tree_listings_end_in_clear_errors() {
    let scratch = Scratch::new("hub-client-hostile");
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("hub");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = HubClient::new(&hub.endpoint, None).expect("client");
        let model = RepoRef::new(RepoType::Model, MODEL).expect("repo");
        let commit = hub.repo(MODEL).commit.clone();

        hub.set_faults(&FaultSettings {
            tree_loop: 1000,
            ..Default::default()
        });
        let e = client.list_files(&model, &commit).await.unwrap_err();
        assert!(e.to_string().contains("pagination loop"), "{e}");
        let asked = 1000
            - hub
                .faults
                .tree_loop
                .load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            asked <= 3,
            "{asked} listing requests before the loop was seen"
        );

        hub.set_faults(&FaultSettings {
            tree_huge: 1,
            ..Default::default()
        });
        let before = peak_rss(std::process::id());
        let e = client.list_files(&model, &commit).await.unwrap_err();
        let grew = peak_rss(std::process::id()).saturating_sub(before);
        assert!(e.to_string().contains("answer larger than"), "{e}");
        eprintln!("a 200 MB listing refused; peak RSS grew {} MiB", grew >> 20);
        assert!(grew < 160 << 20, "the refused listing cost {grew} bytes");
        hub.set_faults(&FaultSettings::default());
        assert_eq!(
            client
                .list_files(&model, &commit)
                .await
                .expect("tree")
                .len(),
            8
        );
    });
}
