//! The repos tests and the demo serve.

use std::path::Path;

use super::repo::{FileSpec, RepoSpec};
use crate::{bf16_weights, random_bytes, repetitive_text};

pub const MODEL: &str = "zest-test/tiny-model";
pub const PRIVATE_MODEL: &str = "zest-test/private-model";
pub const DATASET: &str = "zest-test/tiny-dataset";

/// A small model, a private model and a dataset: plain and Xet files, nested folders, a
/// name with spaces and parentheses, an empty file, and a Xet file shared by two repos.
pub fn standard() -> Vec<RepoSpec> {
    let weights = bf16_weights(6 << 20, 1);
    vec![
        RepoSpec::model(
            MODEL,
            vec![
                FileSpec::plain(
                    ".gitattributes",
                    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
                ),
                FileSpec::plain(
                    "config.json",
                    r#"{"architectures":["TinyForCausalLM"],"hidden_size":64}"#,
                ),
                FileSpec::plain("README.md", repetitive_text(3000)),
                FileSpec::plain("empty.txt", ""),
                FileSpec::xet("model.safetensors", weights.clone()),
                FileSpec::xet(
                    "nested/deeper/weights (copy 1).bin",
                    bf16_weights(1 << 20, 2),
                ),
                FileSpec::xet("tokenizer/tokenizer.json", repetitive_text(300_000)),
                FileSpec::plain("tokenizer/special tokens map.json", r#"{"eos":"</s>"}"#),
            ],
        ),
        RepoSpec::model(
            PRIVATE_MODEL,
            vec![
                FileSpec::plain("config.json", r#"{"private":true}"#),
                FileSpec::xet("model.safetensors", random_bytes(2 << 20, 3)),
            ],
        )
        .private(),
        RepoSpec::dataset(
            DATASET,
            vec![
                FileSpec::plain("README.md", "# tiny dataset\n"),
                FileSpec::plain("data/labels.csv", "id,label\n1,a\n2,b\n"),
                FileSpec::xet(
                    "data/train-00000-of-00001.parquet",
                    random_bytes(3 << 20, 4),
                ),
                // The same bytes as the model's weights: one xorb set, two repos.
                FileSpec::xet("data/weights-copy.safetensors", weights),
            ],
        ),
    ]
}

/// A ~1 GiB model in several files, generated once into `dir`.
pub fn bench(dir: &Path, total_bytes: u64) -> std::io::Result<Vec<RepoSpec>> {
    std::fs::create_dir_all(dir)?;
    let shards = 4u64;
    let per = total_bytes / shards;
    let mut files = vec![
        FileSpec::plain("config.json", r#"{"architectures":["BenchForCausalLM"]}"#),
        FileSpec::plain("README.md", repetitive_text(2000)),
    ];
    for i in 0..shards {
        let name = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards);
        let p = dir.join(&name);
        if std::fs::metadata(&p).map(|m| m.len()).ok() != Some(per) {
            std::fs::write(&p, bf16_weights(per as usize, 100 + i))?;
        }
        files.push(FileSpec::xet_file(&name, p));
    }
    Ok(vec![RepoSpec::model("zest-bench/model-1g", files)])
}

pub const MODEL_V1: &str = "zest-test/model-v1";
pub const MODEL_V2: &str = "zest-test/model-v2";

/// Two versions of a model whose weights differ only at the end: the second shares most
/// of its xorb chunks with the first, as a fine-tune or a new revision does.
pub fn revisions() -> Vec<RepoSpec> {
    let v1 = bf16_weights(8 << 20, 7);
    let mut v2 = v1.clone();
    let tail = v2.len() - (512 << 10);
    v2.truncate(tail);
    v2.extend_from_slice(&random_bytes(1 << 20, 8));
    vec![
        RepoSpec::model(
            MODEL_V1,
            vec![
                FileSpec::plain("config.json", r#"{"v":1}"#),
                FileSpec::xet("model.safetensors", v1),
            ],
        ),
        RepoSpec::model(
            MODEL_V2,
            vec![
                FileSpec::plain("config.json", r#"{"v":2}"#),
                FileSpec::xet("model.safetensors", v2),
            ],
        ),
    ]
}

pub const LOADABLE: &str = "zest-test/tiny-loadable";

/// The weights tensor of [`loadable`]: `w`, unsigned bytes.
pub fn loadable_weights() -> Vec<u8> {
    random_bytes(3 << 20, 11)
}

/// A repo a real library can load: a GPT-2 config, a word-level tokenizer (`tokenizers`'
/// own JSON format) and a safetensors file holding one tensor, stored in Xet.
pub fn loadable() -> Vec<RepoSpec> {
    let data = loadable_weights();
    let header = format!(
        r#"{{"w":{{"dtype":"U8","shape":[{}],"data_offsets":[0,{}]}}}}"#,
        data.len(),
        data.len()
    );
    let mut st = Vec::with_capacity(8 + header.len() + data.len());
    st.extend_from_slice(&(header.len() as u64).to_le_bytes());
    st.extend_from_slice(header.as_bytes());
    st.extend_from_slice(&data);
    vec![RepoSpec::model(
        LOADABLE,
        vec![
            FileSpec::plain(
                "config.json",
                r#"{"model_type":"gpt2","vocab_size":4,"n_positions":16,"n_embd":8,"n_layer":1,"n_head":1}"#,
            ),
            FileSpec::plain(
                "tokenizer_config.json",
                r#"{"tokenizer_class":"PreTrainedTokenizerFast","unk_token":"[UNK]"}"#,
            ),
            FileSpec::plain(
                "tokenizer.json",
                r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{"id":0,"content":"[UNK]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"zest":2,"world":3},"unk_token":"[UNK]"}}"#,
            ),
            FileSpec::xet("model.safetensors", st),
        ],
    )]
}
