//! Deadlines on every request to the Hub, the CAS and the CDN (issue 16, part 3), in a
//! binary of their own: the test waits two minutes on purpose, and the process-wide memory
//! checks of `hub_client.rs` must not see its four hubs.

use xet::remote::{CasClient, HubClient, RemoteError, RepoRef, RepoType};
use zest_tests::Scratch;
use zest_tests::hub::fixtures::{self, MODEL};
use zest_tests::hub::{FaultSettings, HubConfig, TestHub};

/// How long `f` took, and what it gave.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (std::time::Duration, T) {
    let t = std::time::Instant::now();
    let v = f.await;
    (t.elapsed(), v)
}

/// A URL that never changes, for streaming one range in a test.
struct FixedUrl(String);

impl xet::remote::UrlSource for FixedUrl {
    async fn url(&self, _expired: Option<&str>) -> Result<String, RemoteError> {
        Ok(self.0.clone())
    }
}

/// Issue 16, part 3: a Hub that never answers, one that answers 503 with `Retry-After: 60`,
/// one that trickles its answers a byte a second, and a CDN that trickles a xorb range each
/// end in a clear error within about two minutes, with the default deadlines (the probe saw
/// 420–489 s for the first two and an 11-minute hang for the others). The four run at once,
/// each against its own hub, so the test takes two minutes, not eight.
#[test]
fn a_dead_or_crawling_hub_ends_in_a_clear_error_within_two_minutes() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;
    let scratch = Scratch::new("hub-client-deadlines");
    let start_hub = |name: &str| {
        TestHub::start(HubConfig::new(
            scratch.path().join(name),
            fixtures::standard(),
        ))
        .expect("hub")
    };
    let (silent, retry_after, trickle, cdn) = (
        start_hub("silent"),
        start_hub("retry-after"),
        start_hub("trickle"),
        start_hub("cdn"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let model = RepoRef::new(RepoType::Model, MODEL).expect("repo");
    let limit = Duration::from_secs(150);
    rt.block_on(async {
        // The CDN case needs a real fetch URL, got before its fault is armed.
        let cdn_client = HubClient::new(&cdn.endpoint, None).expect("client");
        let meta = cdn_client
            .file_meta(&model, "main", "model.safetensors")
            .await
            .expect("meta");
        let xet = meta.xet.expect("xet file");
        let cas = CasClient::new(cdn_client, model.clone(), xet.refresh_route);
        let recon = cas
            .reconstruction(&xet.file_hash.parse().expect("hash"))
            .await
            .expect("reconstruction");
        let fetch = recon.xorbs.values().next().expect("a xorb")[0].clone();
        let range = fetch.ranges[0].bytes;
        assert!(
            range.len() > 20 << 10,
            "the range must outlast a stall window"
        );

        for (hub, faults) in [
            (
                &silent,
                FaultSettings {
                    hub_silent: 1000,
                    ..Default::default()
                },
            ),
            (
                &retry_after,
                FaultSettings {
                    hub_retry_after: 1000,
                    ..Default::default()
                },
            ),
            (
                &trickle,
                FaultSettings {
                    hub_trickle: 1000,
                    ..Default::default()
                },
            ),
            (
                &cdn,
                FaultSettings {
                    fetch_trickle: 1000,
                    ..Default::default()
                },
            ),
        ] {
            hub.set_faults(&faults);
        }
        let silent_client = HubClient::new(&silent.endpoint, None).expect("client");
        let retry_client = HubClient::new(&retry_after.endpoint, None).expect("client");
        let trickle_client = HubClient::new(&trickle.endpoint, None).expect("client");
        let commit = trickle.repo(MODEL).commit.clone();
        let (s, r, t, c) = tokio::join!(
            timed(async {
                silent_client
                    .repo_info(&model, "main")
                    .await
                    .unwrap_err()
                    .to_string()
            }),
            timed(async {
                retry_client
                    .repo_info(&model, "main")
                    .await
                    .unwrap_err()
                    .to_string()
            }),
            timed(async {
                trickle_client
                    .list_files(&model, &commit)
                    .await
                    .unwrap_err()
                    .to_string()
            }),
            timed(async {
                let mut sink = |_: &[u8]| Ok::<(), RemoteError>(());
                cas.stream_range(&FixedUrl(fetch.url.clone()), range, &mut sink)
                    .await
                    .unwrap_err()
                    .to_string()
            }),
        );
        for (what, (took, e)) in [
            ("silent hub", &s),
            ("503 + Retry-After: 60", &r),
            ("trickling hub", &t),
            ("trickling CDN", &c),
        ] {
            eprintln!("{what}: failed after {:.1} s: {e}", took.as_secs_f64());
            assert!(*took < limit, "{what} took {took:?}: {e}");
            assert!(e.contains("gave up on"), "{what}: {e}");
        }
        assert!(s.1.contains("no answer within 30 s"), "{}", s.1);
        assert!(
            s.0 >= Duration::from_secs(90),
            "the silent hub was given up on early: {:?}",
            s.0
        );
        assert!(r.1.contains("503"), "{}", r.1);
        // Retry-After was honoured, capped: a few requests, not a retry storm.
        let asked = 1000 - retry_after.faults.hub_retry_after.load(SeqCst);
        assert!((3..=5).contains(&asked), "{asked} requests to the 503 hub");
        assert!(t.1.contains("stalled"), "{}", t.1);
        assert!(c.1.contains("stalled"), "{}", c.1);
    });
}
