//! The config file (`zestd --config`), and the values in it zestd parses further.

use std::path::Path;

use zestd::config::{FileConfig, parse_listen};
use zestd::rate::parse_rate;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = FileConfig::parse(&text, Path::new("/etc/zest/zestd.toml")) {
        for l in [&c.listen, &c.hub_listen, &c.metrics_listen, &c.xet_socket]
            .into_iter()
            .flatten()
        {
            let _ = parse_listen(l);
        }
        for r in [&c.max_upload_rate, &c.max_download_rate]
            .into_iter()
            .flatten()
        {
            let _ = parse_rate(r);
        }
    }
    // Rates arrive from the command line and `zestctl limits` too.
    if let Ok(Some(rate)) = parse_rate(&text) {
        assert!(
            rate > 0,
            "a cap of 0 bytes per second would stop all traffic"
        );
    }
}
