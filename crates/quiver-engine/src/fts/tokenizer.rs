//! Text to tokens, as a full-text index sees it: a base tokenizer splits the text, then
//! filters, in this order, drop tokens longer than a limit, lowercase, drop stop words, stem
//! (Snowball, `rust-stemmers`) and fold Latin letters to ASCII (`deunicode`). Stop words are
//! NLTK's lists (`stop-words`), matched before stemming, on the lowercased word the list
//! names (LanceDB stems first, so a stop word whose stem differs, such as "does" → "doe", slips through).

use std::borrow::Cow;
use std::str::FromStr;

use ahash::AHashSet;
use rust_stemmers::{Algorithm, Stemmer};

use crate::error::{Error, Result};

/// How text is split before the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseTokenizer {
    /// Maximal runs of letters and digits (any script): punctuation and spaces split.
    Simple,
    /// Maximal runs of non-whitespace characters.
    Whitespace,
    /// The whole text as one token.
    Raw,
    /// Every run of `ngram_min..=ngram_max` characters of the text (only those at its start
    /// with `prefix_only`), spaces and punctuation included.
    Ngram,
}

impl BaseTokenizer {
    /// The name `FromStr` takes.
    pub fn name(self) -> &'static str {
        match self {
            BaseTokenizer::Simple => "simple",
            BaseTokenizer::Whitespace => "whitespace",
            BaseTokenizer::Raw => "raw",
            BaseTokenizer::Ngram => "ngram",
        }
    }
}

impl FromStr for BaseTokenizer {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "simple" => Ok(BaseTokenizer::Simple),
            "whitespace" => Ok(BaseTokenizer::Whitespace),
            "raw" => Ok(BaseTokenizer::Raw),
            "ngram" => Ok(BaseTokenizer::Ngram),
            other => Err(Error::invalid(format!(
                "unknown baseTokenizer '{other}': use 'simple', 'whitespace', 'raw' or 'ngram'"
            ))),
        }
    }
}

/// Languages with both a Snowball stemmer and a stop-word list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Arabic,
    Danish,
    Dutch,
    English,
    French,
    German,
    Greek,
    Hungarian,
    Italian,
    Norwegian,
    Portuguese,
    Romanian,
    Russian,
    Spanish,
    Swedish,
    Tamil,
    Turkish,
}

/// Every language, with its name and ISO 639-1 code.
const LANGUAGES: [(Language, &str, &str); 17] = [
    (Language::Arabic, "Arabic", "ar"),
    (Language::Danish, "Danish", "da"),
    (Language::Dutch, "Dutch", "nl"),
    (Language::English, "English", "en"),
    (Language::French, "French", "fr"),
    (Language::German, "German", "de"),
    (Language::Greek, "Greek", "el"),
    (Language::Hungarian, "Hungarian", "hu"),
    (Language::Italian, "Italian", "it"),
    (Language::Norwegian, "Norwegian", "no"),
    (Language::Portuguese, "Portuguese", "pt"),
    (Language::Romanian, "Romanian", "ro"),
    (Language::Russian, "Russian", "ru"),
    (Language::Spanish, "Spanish", "es"),
    (Language::Swedish, "Swedish", "sv"),
    (Language::Tamil, "Tamil", "ta"),
    (Language::Turkish, "Turkish", "tr"),
];

impl Language {
    /// Its English name, as `FromStr` takes it.
    pub fn name(self) -> &'static str {
        LANGUAGES
            .iter()
            .find(|(l, _, _)| *l == self)
            .map_or("English", |(_, name, _)| name)
    }

    fn code(self) -> &'static str {
        LANGUAGES
            .iter()
            .find(|(l, _, _)| *l == self)
            .map_or("en", |(_, _, code)| code)
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Language::Arabic => Algorithm::Arabic,
            Language::Danish => Algorithm::Danish,
            Language::Dutch => Algorithm::Dutch,
            Language::English => Algorithm::English,
            Language::French => Algorithm::French,
            Language::German => Algorithm::German,
            Language::Greek => Algorithm::Greek,
            Language::Hungarian => Algorithm::Hungarian,
            Language::Italian => Algorithm::Italian,
            Language::Norwegian => Algorithm::Norwegian,
            Language::Portuguese => Algorithm::Portuguese,
            Language::Romanian => Algorithm::Romanian,
            Language::Russian => Algorithm::Russian,
            Language::Spanish => Algorithm::Spanish,
            Language::Swedish => Algorithm::Swedish,
            Language::Tamil => Algorithm::Tamil,
            Language::Turkish => Algorithm::Turkish,
        }
    }

    /// The language's stop words (NLTK's list).
    fn stop_words(self) -> &'static [&'static str] {
        stop_words::lookup(self.code()).unwrap_or(&[])
    }
}

impl FromStr for Language {
    type Err = Error;

    /// A language by its English name, any case ("English", "french").
    fn from_str(s: &str) -> Result<Self> {
        LANGUAGES
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(l, _, _)| *l)
            .ok_or_else(|| {
                let names: Vec<&str> = LANGUAGES.iter().map(|(_, name, _)| *name).collect();
                Error::invalid(format!(
                    "unsupported language '{s}': use one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Longest n-gram a tokenizer may be asked for: every character of a text starts up to
/// `ngram_max − ngram_min + 1` n-grams, so this bounds the tokens per character.
pub const MAX_NGRAM_LENGTH: usize = 255;
/// Longest `max_token_length` accepted (longer tokens are never useful terms).
pub const MAX_TOKEN_LENGTH_LIMIT: usize = 65_536;

/// How text becomes tokens (LanceDB's `Index.fts()` options and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerConfig {
    pub base: BaseTokenizer,
    /// The stemmer's and stop-word list's language.
    pub language: Language,
    /// Tokens longer than this many bytes (UTF-8) are dropped; none when unset.
    pub max_token_length: Option<usize>,
    pub lowercase: bool,
    pub stem: bool,
    pub remove_stop_words: bool,
    /// With `remove_stop_words`, these words replace the language's list.
    pub custom_stop_words: Option<Vec<String>>,
    /// Latin letters with diacritics or ligatures folded to ASCII ("café" → "cafe",
    /// "straße" → "strasse"); other scripts are kept.
    pub ascii_folding: bool,
    pub ngram_min: usize,
    pub ngram_max: usize,
    pub prefix_only: bool,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            base: BaseTokenizer::Simple,
            language: Language::English,
            max_token_length: Some(40),
            lowercase: true,
            stem: true,
            remove_stop_words: true,
            custom_stop_words: None,
            ascii_folding: true,
            ngram_min: 3,
            ngram_max: 3,
            prefix_only: false,
        }
    }
}

/// A configured tokenizer: cheap to share between threads.
pub struct Tokenizer {
    config: TokenizerConfig,
    stemmer: Option<Stemmer>,
    stop_words: AHashSet<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("config", &self.config)
            .finish()
    }
}

/// Buffers a tokenizer reuses from token to token (one per thread).
#[derive(Default)]
pub struct TokenBuffers {
    lowered: String,
    stemmed: String,
    folded: String,
}

impl Tokenizer {
    pub fn new(config: TokenizerConfig) -> Result<Self> {
        if config.base == BaseTokenizer::Ngram {
            let (min, max) = (config.ngram_min, config.ngram_max);
            if min == 0 || min > max || max > MAX_NGRAM_LENGTH {
                return Err(Error::invalid(format!(
                    "ngramMinLength and ngramMaxLength must satisfy 1 ≤ min ≤ max ≤ {MAX_NGRAM_LENGTH} (got {min} and {max})"
                )));
            }
        }
        if let Some(limit) = config.max_token_length {
            if limit == 0 || limit > MAX_TOKEN_LENGTH_LIMIT {
                return Err(Error::invalid(format!(
                    "maxTokenLength must be between 1 and {MAX_TOKEN_LENGTH_LIMIT} (got {limit})"
                )));
            }
        }
        let stemmer = config
            .stem
            .then(|| Stemmer::create(config.language.algorithm()));
        let stop_words = if config.remove_stop_words {
            match &config.custom_stop_words {
                Some(words) => words
                    .iter()
                    .map(|w| {
                        if config.lowercase {
                            w.to_lowercase()
                        } else {
                            w.clone()
                        }
                    })
                    .collect(),
                None => config
                    .language
                    .stop_words()
                    .iter()
                    .map(|w| (*w).to_string())
                    .collect(),
            }
        } else {
            AHashSet::new()
        };
        Ok(Tokenizer {
            config,
            stemmer,
            stop_words,
        })
    }

    /// Calls `emit(token, position)` for each token of `text`, in order. A position counts
    /// the base tokenizer's tokens (an n-gram's is its first character), so the words a
    /// filter drops leave gaps that phrase queries see.
    pub fn tokenize<F: FnMut(&str, u32) + ?Sized>(
        &self,
        text: &str,
        buffers: &mut TokenBuffers,
        emit: &mut F,
    ) {
        self.base_tokens(text, &mut |raw, position| {
            if let Some(token) = self.normalize(raw, buffers) {
                emit(token, position);
            }
        });
    }

    /// Calls `emit(raw, position)` for each token the base tokenizer makes of `text`, before
    /// the filters (`normalize` applies them).
    pub fn base_tokens<F: FnMut(&str, u32) + ?Sized>(&self, text: &str, emit: &mut F) {
        let mut position = 0u32;
        match self.config.base {
            BaseTokenizer::Simple => {
                for word in text.split(|c: char| !c.is_alphanumeric()) {
                    if !word.is_empty() {
                        emit(word, position);
                        position = position.saturating_add(1);
                    }
                }
            }
            BaseTokenizer::Whitespace => {
                for word in text.split_whitespace() {
                    emit(word, position);
                    position = position.saturating_add(1);
                }
            }
            BaseTokenizer::Raw => {
                if !text.is_empty() {
                    emit(text, 0);
                }
            }
            BaseTokenizer::Ngram => {
                let (min, max) = (self.config.ngram_min, self.config.ngram_max);
                let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
                let chars = starts.len();
                let last_start = if self.config.prefix_only {
                    chars.min(1)
                } else {
                    chars
                };
                for s in 0..last_start {
                    for len in min..=max {
                        if s + len > chars {
                            break;
                        }
                        let end = starts.get(s + len).copied().unwrap_or(text.len());
                        emit(&text[starts[s]..end], s as u32);
                    }
                }
            }
        }
    }

    /// The tokens of `text`, in order.
    pub fn tokens(&self, text: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        self.tokenize(text, &mut TokenBuffers::default(), &mut |t, p| {
            out.push((t.to_string(), p))
        });
        out
    }

    /// One base token through the filters: the token it becomes, or `None` when a filter
    /// drops it. Depends on `raw` alone, so callers may cache it per distinct token.
    pub fn normalize<'b>(&self, raw: &'b str, buffers: &'b mut TokenBuffers) -> Option<&'b str> {
        let TokenBuffers {
            lowered,
            stemmed,
            folded,
        } = buffers;
        if self.config.max_token_length.is_some_and(|l| raw.len() > l) {
            return None;
        }
        let word: &'b str = if !self.config.lowercase {
            raw
        } else if raw.is_ascii() {
            // Most words: a byte check and, when needed, a byte-wise copy.
            if !raw.bytes().any(|b| b.is_ascii_uppercase()) {
                raw
            } else {
                lowered.clear();
                lowered.push_str(raw);
                lowered.make_ascii_lowercase();
                lowered
            }
        } else if raw.chars().any(char::is_uppercase) {
            lowered.clear();
            lowered.extend(raw.chars().flat_map(char::to_lowercase));
            lowered
        } else {
            raw
        };
        if !self.stop_words.is_empty() && self.stop_words.contains(word) {
            return None;
        }
        let stem: &'b str = match self.stemmer.as_ref().map(|s| s.stem(word)) {
            None => word,
            Some(Cow::Borrowed(same)) => same,
            Some(Cow::Owned(changed)) => {
                *stemmed = changed;
                stemmed
            }
        };
        if self.config.ascii_folding && !stem.is_ascii() {
            folded.clear();
            for c in stem.chars() {
                match fold(c) {
                    Some(ascii) => folded.push_str(ascii),
                    None => folded.push(c),
                }
            }
            Some(folded)
        } else {
            Some(stem)
        }
    }
}

/// The ASCII form of a Latin letter with diacritics or a ligature, or `None` to keep `c`
/// (ASCII, other scripts, symbols: folding is not transliteration).
fn fold(c: char) -> Option<&'static str> {
    let latin = matches!(
        u32::from(c),
        0x00C0..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF | 0xFB00..=0xFB06
    );
    if !latin {
        return None;
    }
    deunicode::deunicode_char(c).filter(|s| !s.is_empty() && s.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain() -> TokenizerConfig {
        TokenizerConfig {
            stem: false,
            remove_stop_words: false,
            ascii_folding: false,
            ..TokenizerConfig::default()
        }
    }

    fn words(config: TokenizerConfig, text: &str) -> Vec<String> {
        let tokenizer = Tokenizer::new(config).unwrap();
        tokenizer.tokens(text).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn simple_splits_on_anything_but_letters_and_digits() {
        assert_eq!(
            words(plain(), "Hello, World! don't x86_64 naïve 東京"),
            ["hello", "world", "don", "t", "x86", "64", "naïve", "東京"]
        );
        assert_eq!(
            words(
                TokenizerConfig {
                    base: BaseTokenizer::Whitespace,
                    ..plain()
                },
                " a-b  C.d\te "
            ),
            ["a-b", "c.d", "e"]
        );
        assert_eq!(
            words(
                TokenizerConfig {
                    base: BaseTokenizer::Raw,
                    lowercase: false,
                    ..plain()
                },
                "Keep It Whole"
            ),
            ["Keep It Whole"]
        );
    }

    #[test]
    fn defaults_drop_stop_words_then_stem_and_fold() {
        let tokenizer = Tokenizer::new(TokenizerConfig::default()).unwrap();
        let tokens = tokenizer.tokens("The runners were running to the Café");
        // "the", "were", "to" are stop words; their positions stay counted.
        assert_eq!(
            tokens,
            vec![
                ("runner".to_string(), 1),
                ("run".to_string(), 3),
                ("cafe".to_string(), 6)
            ]
        );
    }

    #[test]
    fn stop_words_are_matched_before_stemming() {
        // "does" stems to "doe", which no list names: removed only before stemming.
        let keep = TokenizerConfig {
            remove_stop_words: false,
            ..TokenizerConfig::default()
        };
        assert_eq!(words(keep, "does"), ["doe"]);
        assert!(words(TokenizerConfig::default(), "does").is_empty());
    }

    #[test]
    fn custom_stop_words_replace_the_list() {
        let config = TokenizerConfig {
            custom_stop_words: Some(vec!["Running".into()]),
            stem: false,
            ..TokenizerConfig::default()
        };
        assert_eq!(words(config, "the running man"), ["the", "man"]);
    }

    #[test]
    fn long_tokens_are_dropped_by_bytes() {
        let config = TokenizerConfig {
            max_token_length: Some(5),
            ..plain()
        };
        assert_eq!(words(config, "short lengthy ééé"), ["short"]);
    }

    #[test]
    fn folding_keeps_other_scripts() {
        let config = TokenizerConfig {
            ascii_folding: true,
            ..plain()
        };
        assert_eq!(
            words(config, "Straße Ærø façade Москва"),
            ["strasse", "aero", "facade", "москва"]
        );
    }

    #[test]
    fn ngrams_cover_the_text_by_characters() {
        let config = TokenizerConfig {
            base: BaseTokenizer::Ngram,
            ngram_min: 2,
            ngram_max: 3,
            ..plain()
        };
        let tokenizer = Tokenizer::new(config.clone()).unwrap();
        assert_eq!(
            tokenizer.tokens("éab"),
            vec![
                ("éa".to_string(), 0),
                ("éab".to_string(), 0),
                ("ab".to_string(), 1)
            ]
        );
        let prefix = Tokenizer::new(TokenizerConfig {
            prefix_only: true,
            ..config
        })
        .unwrap();
        assert_eq!(
            prefix.tokens("abcd"),
            vec![("ab".to_string(), 0), ("abc".to_string(), 0)]
        );
    }

    #[test]
    fn bad_configs_are_invalid_arguments() {
        for config in [
            TokenizerConfig {
                base: BaseTokenizer::Ngram,
                ngram_min: 0,
                ..plain()
            },
            TokenizerConfig {
                base: BaseTokenizer::Ngram,
                ngram_min: 4,
                ngram_max: 3,
                ..plain()
            },
            TokenizerConfig {
                base: BaseTokenizer::Ngram,
                ngram_max: MAX_NGRAM_LENGTH + 1,
                ..plain()
            },
            TokenizerConfig {
                max_token_length: Some(0),
                ..plain()
            },
        ] {
            assert!(matches!(
                Tokenizer::new(config),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!("klingon".parse::<Language>().is_err());
        assert_eq!("french".parse::<Language>().ok(), Some(Language::French));
        assert!("icu".parse::<BaseTokenizer>().is_err());
    }

    #[test]
    fn every_language_has_a_stemmer_and_stop_words() {
        for (language, name, _) in LANGUAGES {
            assert!(!language.stop_words().is_empty(), "{name}");
            assert_eq!(name.parse::<Language>().ok(), Some(language));
            Stemmer::create(language.algorithm()).stem("word");
        }
    }

    proptest! {
        #[test]
        fn any_text_tokenizes_with_every_base(text in "\\PC{0,80}", min in 1usize..4, extra in 0usize..3) {
            for base in [BaseTokenizer::Simple, BaseTokenizer::Whitespace, BaseTokenizer::Raw, BaseTokenizer::Ngram] {
                let tokenizer = Tokenizer::new(TokenizerConfig {
                    base,
                    ngram_min: min,
                    ngram_max: min + extra,
                    ..TokenizerConfig::default()
                }).unwrap();
                let tokens = tokenizer.tokens(&text);
                let chars = text.chars().count() as u32;
                prop_assert!(tokens.iter().all(|(_, p)| *p <= chars));
                prop_assert!(tokens.windows(2).all(|w| w[0].1 <= w[1].1));
            }
        }
    }
}
