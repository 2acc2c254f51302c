//! Full-text search: how text becomes the tokens an index and its queries agree on
//! (`tokenizer`).

pub mod tokenizer;

pub use tokenizer::{BaseTokenizer, Language, TokenBuffers, Tokenizer, TokenizerConfig};
