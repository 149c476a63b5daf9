//! Shards, as the CAS returns them for dedup queries and as uploads carry them.

use xet::shard::Shard;

pub fn run(data: &[u8]) {
    let Ok(shard) = Shard::parse(data) else {
        return;
    };
    // What parses serializes, in the form it came in, to a shard that parses to the same
    // content. Writing puts files and xorbs in xet-core's order and derives the footer's
    // totals and offsets from the content (xet-core does not check them when reading), so
    // the content is compared as a set and the bytes after one round.
    let form = shard.form();
    let bytes = match shard.serialize(form) {
        Ok(b) => b,
        Err(e) => panic!("a parsed shard does not serialize ({form:?}): {e}"),
    };
    match Shard::parse(&bytes) {
        Ok(again) => {
            assert_eq!(sorted(&again.files), sorted(&shard.files), "files changed");
            assert_eq!(sorted(&again.xorbs), sorted(&shard.xorbs), "xorbs changed");
            assert_eq!(again.form(), form);
            match again.serialize(form) {
                Ok(twice) => assert_eq!(twice, bytes, "a second round trip changed the bytes"),
                Err(e) => panic!("a round-tripped shard does not serialize: {e}"),
            }
        }
        Err(e) => panic!("a serialized shard does not parse: {e}"),
    }
}

fn sorted<T: std::fmt::Debug>(items: &[T]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    v.sort();
    v
}
