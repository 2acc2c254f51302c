//! Full-text search bindings: `tokenize()`, index options and query trees.

use std::panic::AssertUnwindSafe;

use napi_derive::napi;
use quiver_engine::fts::query::{FtsQuery, Fuzziness, Occur, Operator};
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

/// One node of a full-text query tree, as JS flattens it: children come before their parent
/// (a node names them by index), the root is the last node.
#[napi(object)]
pub struct NativeFtsNode {
    /// `match`, `phrase`, `boost`, `multi_match` or `boolean`.
    pub kind: String,
    /// `match`, `phrase`: the column (none: every column with an FTS index).
    pub column: Option<String>,
    /// `multi_match`: the columns.
    pub columns: Option<Vec<String>>,
    pub text: Option<String>,
    pub boost: Option<f64>,
    /// `"auto"` or a number of edits.
    pub fuzziness: Option<String>,
    pub max_expansions: Option<u32>,
    /// `"OR"` or `"AND"`.
    pub operator: Option<String>,
    pub prefix_length: Option<u32>,
    pub slop: Option<u32>,
    pub negative_boost: Option<f64>,
    pub boosts: Option<Vec<f64>>,
    /// `boost`: [positive, negative]; `boolean`: the clauses' queries.
    pub children: Option<Vec<u32>>,
    /// `boolean`: `"MUST"`, `"SHOULD"` or `"MUST_NOT"` per child.
    pub occurs: Option<Vec<String>>,
}

/// Options of a full-text search.
#[napi(object)]
pub struct NativeTextSearchOptions {
    pub nodes: Vec<NativeFtsNode>,
    pub k: u32,
    pub offset: Option<u32>,
    pub columns: Option<Vec<String>>,
    pub with_row_id: Option<bool>,
    /// SQL filter, applied before ranking unless `postfilter`.
    pub filter: Option<String>,
    pub postfilter: Option<bool>,
}

fn invalid(message: String) -> quiver_engine::Error {
    quiver_engine::Error::InvalidArgument(message)
}

/// The engine's query for a flattened tree.
pub(crate) fn fts_query(nodes: Vec<NativeFtsNode>) -> quiver_engine::Result<FtsQuery> {
    let count = nodes.len();
    if count == 0 {
        return Err(invalid("a full-text query needs at least one node".into()));
    }
    let mut built: Vec<Option<FtsQuery>> = Vec::with_capacity(count);
    for (i, node) in nodes.into_iter().enumerate() {
        let mut take = |c: u32| -> quiver_engine::Result<FtsQuery> {
            let c = c as usize;
            if c >= i {
                return Err(invalid(format!(
                    "full-text query node {i} names child {c}, which does not come before it"
                )));
            }
            built[c]
                .take()
                .ok_or_else(|| invalid(format!("full-text query node {c} is used twice")))
        };
        let children = node.children.clone().unwrap_or_default();
        let text = || node.text.clone().unwrap_or_default();
        let operator = match node.operator.as_deref() {
            None | Some("OR") | Some("or") => Operator::Or,
            Some("AND") | Some("and") => Operator::And,
            Some(other) => {
                return Err(invalid(format!(
                    "operator must be \"OR\" or \"AND\", not {other:?}"
                )))
            }
        };
        let query = match node.kind.as_str() {
            "match" => FtsQuery::Match {
                column: node.column.clone().unwrap_or_default(),
                text: text(),
                boost: node.boost.unwrap_or(1.0) as f32,
                fuzziness: match node.fuzziness.as_deref() {
                    None | Some("auto") => Fuzziness::Auto,
                    Some(n) => Fuzziness::Edits(n.parse().map_err(|_| {
                        invalid(format!(
                            "fuzziness must be \"auto\" or 0 to 2 edits, not {n}"
                        ))
                    })?),
                },
                max_expansions: node.max_expansions.unwrap_or(50) as usize,
                operator,
                prefix_length: node.prefix_length.unwrap_or(0) as usize,
            },
            "phrase" => FtsQuery::Phrase {
                column: node.column.clone().unwrap_or_default(),
                text: text(),
                slop: node.slop.unwrap_or(0),
            },
            "boost" => {
                let [positive, negative] = children[..] else {
                    return Err(invalid(
                        "a boost query has a positive and a negative query".into(),
                    ));
                };
                FtsQuery::Boost {
                    positive: Box::new(take(positive)?),
                    negative: Box::new(take(negative)?),
                    negative_boost: node.negative_boost.unwrap_or(0.5) as f32,
                }
            }
            "multi_match" => FtsQuery::MultiMatch {
                text: text(),
                columns: node.columns.clone().unwrap_or_default(),
                boosts: node
                    .boosts
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| b as f32)
                    .collect(),
                operator,
            },
            "boolean" => {
                let occurs = node.occurs.clone().unwrap_or_default();
                if occurs.len() != children.len() {
                    return Err(invalid(
                        "a boolean query names one occurrence per clause".into(),
                    ));
                }
                let mut clauses = Vec::with_capacity(children.len());
                for (&c, occur) in children.iter().zip(&occurs) {
                    let occur = match occur.as_str() {
                        "MUST" => Occur::Must,
                        "SHOULD" => Occur::Should,
                        "MUST_NOT" => Occur::MustNot,
                        other => {
                            return Err(invalid(format!(
                                "occur must be MUST, SHOULD or MUST_NOT, not {other:?}"
                            )))
                        }
                    };
                    clauses.push((occur, take(c)?));
                }
                FtsQuery::Boolean(clauses)
            }
            other => return Err(invalid(format!("unknown full-text query kind {other:?}"))),
        };
        built.push(Some(query));
    }
    built
        .pop()
        .flatten()
        .ok_or_else(|| invalid("the full-text query's root is missing".into()))
}
