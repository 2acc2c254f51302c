//! Full-text search bindings: `tokenize()`.

use std::panic::AssertUnwindSafe;

use napi_derive::napi;
use quiver_engine::fts::{Tokenizer, TokenizerConfig};

use crate::errors::{coded, to_js_error};

/// How text becomes tokens (every field optional; LanceDB's `Index.fts()` defaults).
#[napi(object)]
pub struct NativeTokenizerOptions {
    /// `simple`, `whitespace`, `raw` or `ngram`.
    pub base_tokenizer: Option<String>,
    pub language: Option<String>,
    pub max_token_length: Option<u32>,
    pub lowercase: Option<bool>,
    pub stem: Option<bool>,
    pub remove_stop_words: Option<bool>,
    pub custom_stop_words: Option<Vec<String>>,
    pub ascii_folding: Option<bool>,
    pub ngram_min_length: Option<u32>,
    pub ngram_max_length: Option<u32>,
    pub prefix_only: Option<bool>,
}

#[napi(object)]
pub struct NativeToken {
    pub text: String,
    pub position: u32,
}

/// The engine's tokenizer configuration for `options` (defaults for what it leaves out).
pub(crate) fn tokenizer_config(
    options: Option<NativeTokenizerOptions>,
) -> quiver_engine::Result<TokenizerConfig> {
    let mut config = TokenizerConfig::default();
    let Some(o) = options else {
        return Ok(config);
    };
    if let Some(base) = o.base_tokenizer {
        config.base = base.parse()?;
    }
    if let Some(language) = o.language {
        config.language = language.parse()?;
    }
    if let Some(limit) = o.max_token_length {
        config.max_token_length = Some(limit as usize);
    }
    config.lowercase = o.lowercase.unwrap_or(config.lowercase);
    config.stem = o.stem.unwrap_or(config.stem);
    config.remove_stop_words = o.remove_stop_words.unwrap_or(config.remove_stop_words);
    config.custom_stop_words = o.custom_stop_words;
    config.ascii_folding = o.ascii_folding.unwrap_or(config.ascii_folding);
    config.ngram_min = o.ngram_min_length.map_or(config.ngram_min, |n| n as usize);
    config.ngram_max = o.ngram_max_length.map_or(config.ngram_max, |n| n as usize);
    config.prefix_only = o.prefix_only.unwrap_or(config.prefix_only);
    Ok(config)
}

/// The tokens an FTS index with these options makes of `text`, in order, with their
/// positions.
#[napi]
pub fn tokenize(
    text: String,
    options: Option<NativeTokenizerOptions>,
) -> napi::Result<Vec<NativeToken>> {
    let run = || -> quiver_engine::Result<Vec<NativeToken>> {
        let tokenizer = Tokenizer::new(tokenizer_config(options)?)?;
        Ok(tokenizer
            .tokens(&text)
            .into_iter()
            .map(|(text, position)| NativeToken { text, position })
            .collect())
    };
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .map_err(|_| coded("Internal", "tokenizing failed unexpectedly"))?
        .map_err(to_js_error)
}
