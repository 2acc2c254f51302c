//! Full-text search: how text becomes tokens (`tokenizer`), the posting-list byte layout
//! (`codec`), index segments (`segment`), building and merging them (`build`), the FTS index
//! kind (`index`) and BM25 queries over it (`query`).

pub mod build;
pub mod codec;
pub mod index;
pub mod query;
pub mod segment;
pub mod tokenizer;

pub use index::{FtsIndex, FtsParams, FTS};
pub use tokenizer::{BaseTokenizer, Language, TokenBuffers, Tokenizer, TokenizerConfig};
