//! The boolean skeleton of an expression, split off the token stream before `sqlparser` sees
//! it, so that no input can make a recursive walk run out of stack.
//!
//! `sqlparser` builds `a OR b OR c …` as a left-deep binary tree: a 100,000-term OR chain
//! generated from an allow-list becomes a tree 100,000 levels deep, and every recursive walk
//! over it — planning, `Display`, `span()`, even `Drop` — overflows the stack and kills the
//! process. So the text is tokenized once, and the top-level `OR` / `AND` / leading `NOT`
//! structure is found here by scanning tokens (brackets matched once, in a loop), giving n-ary
//! nodes. Only the terms between the connectives go to `sqlparser`, each after a token-count
//! bound shows its tree cannot be deeper than [`MAX_TERM_DEPTH`]; parenthesised groups recurse
//! here at most [`MAX_DEPTH`] levels.

use sqlparser::ast as sql;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

use crate::error::{FilterError, FilterErrorKind as Kind};

/// Deepest nesting of an expression: parentheses, operators and function calls, each a level
/// (an AND / OR chain of any length is one level). Programs that generate filters stay far
/// below it; hand-written SQL never comes close.
pub const MAX_DEPTH: usize = 256;

/// Upper bound on the depth of one term's `sqlparser` tree, measured conservatively in tokens
/// (every tree node consumes at least one token of its own). Above [`MAX_DEPTH`] so that the
/// precise check on the planned tree decides for ordinary terms; it only stops texts built to
/// be deep, such as 10,000 chained `+`.
const MAX_TERM_DEPTH: usize = 8 * MAX_DEPTH;

type SyntaxResult<T> = std::result::Result<T, FilterError>;

/// An expression's boolean skeleton.
#[derive(Debug)]
pub(crate) enum Syntax {
    /// Two or more operands.
    Or(Vec<Syntax>),
    /// Two or more operands (`BETWEEN … AND …` stays inside its term).
    And(Vec<Syntax>),
    /// `NOT x`; a run of NOTs keeps only its parity.
    Not(Box<Syntax>, Span),
    /// Anything else, parsed by `sqlparser`, with the bound on its tree's depth.
    Term(Box<sql::Expr>, usize),
}

fn position(location: Location) -> Option<(u64, u64)> {
    (location.line > 0).then_some((location.line, location.column))
}

fn error_at(kind: Kind, message: impl Into<String>, span: Span) -> FilterError {
    FilterError::new(kind, message).at(position(span.start))
}

fn too_complex(span: Span) -> FilterError {
    error_at(
        Kind::TooComplex,
        format!(
            "the expression is nested more than {MAX_DEPTH} levels deep; write long lists as \
             `col IN (a, b, …)` or as flat `… OR …` / `… AND …` chains (which may be any length)"
        ),
        span,
    )
}

/// Parses `text` into its skeleton; terms are parsed by `sqlparser`.
pub(crate) fn parse(text: &str) -> SyntaxResult<Syntax> {
    if text.trim().is_empty() {
        return Err(FilterError::new(Kind::Syntax, "the expression is empty"));
    }
    let dialect = GenericDialect {};
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| {
            FilterError::new(Kind::Syntax, strip_position(&e.message)).at(position(e.location))
        })?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    if tokens.is_empty() {
        return Err(FilterError::new(
            Kind::Syntax,
            "the expression is empty (it holds only comments)",
        ));
    }
    let end = end_span(text);
    let groups = match_groups(&tokens, end)?;
    let splitter = Splitter {
        tokens: &tokens,
        groups: &groups,
        end,
    };
    splitter.or(0, tokens.len(), 0)
}

/// Where each opening bracket (`(`, `[`, `{`, `CASE`) closes.
fn match_groups(tokens: &[TokenWithSpan], end: Span) -> SyntaxResult<Vec<usize>> {
    let mut close = vec![usize::MAX; tokens.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if closer_of(&t.token).is_some() {
            open.push(i);
        } else if is_closer(&t.token) {
            let Some(o) = open.pop() else {
                return Err(error_at(
                    Kind::Syntax,
                    format!("unmatched '{}'", t.token),
                    t.span,
                ));
            };
            if !closes(&tokens[o].token, &t.token) {
                return Err(error_at(
                    Kind::Syntax,
                    format!("'{}' closes '{}'", t.token, tokens[o].token),
                    t.span,
                ));
            }
            close[o] = i;
        }
    }
    if let Some(&o) = open.last() {
        let what = closer_of(&tokens[o].token).unwrap_or("?");
        return Err(error_at(
            Kind::Syntax,
            format!("'{}' is never closed (expected '{what}')", tokens[o].token),
            if o + 1 == tokens.len() {
                end
            } else {
                tokens[o].span
            },
        ));
    }
    Ok(close)
}

fn keyword(token: &Token) -> Option<Keyword> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

fn closer_of(token: &Token) -> Option<&'static str> {
    match token {
        Token::LParen => Some(")"),
        Token::LBracket => Some("]"),
        Token::LBrace => Some("}"),
        t if keyword(t) == Some(Keyword::CASE) => Some("END"),
        _ => None,
    }
}

fn is_closer(token: &Token) -> bool {
    matches!(token, Token::RParen | Token::RBracket | Token::RBrace)
        || keyword(token) == Some(Keyword::END)
}

fn closes(open: &Token, close: &Token) -> bool {
    match open {
        Token::LParen => *close == Token::RParen,
        Token::LBracket => *close == Token::RBracket,
        Token::LBrace => *close == Token::RBrace,
        _ => keyword(close) == Some(Keyword::END),
    }
}

fn end_span(text: &str) -> Span {
    let lines = text.split('\n').count() as u64;
    let last = text.rsplit('\n').next().unwrap_or_default();
    let at = Location::new(lines, last.chars().count() as u64 + 1);
    Span::new(at, at)
}

/// Drops sqlparser's " at Line: 1, Column: 7" suffix (the position is kept separately).
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at Line: ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `(line, column)` from sqlparser's "… at Line: 1, Column: 7" suffix.
fn message_position(message: &str) -> Option<(u64, u64)> {
    let rest = &message[message.rfind("Line: ")? + 6..];
    let (line, rest) = rest.split_once(',')?;
    let column = rest.trim().strip_prefix("Column: ")?;
    let digits: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, digits.parse().ok()?))
}

struct Splitter<'a> {
    tokens: &'a [TokenWithSpan],
    /// For each opening bracket, the index of its closer.
    groups: &'a [usize],
    end: Span,
}

impl Splitter<'_> {
    fn span_at(&self, i: usize) -> Span {
        self.tokens.get(i).map_or(self.end, |t| t.span)
    }

    /// Splits `from..to` at its top-level tokens for which `is_separator` holds, skipping
    /// bracketed groups in one step each.
    fn split(
        &self,
        from: usize,
        to: usize,
        mut is_separator: impl FnMut(&Token) -> bool,
    ) -> Vec<(usize, usize)> {
        let mut parts = Vec::new();
        let (mut start, mut i) = (from, from);
        while i < to {
            let token = &self.tokens[i].token;
            if closer_of(token).is_some() {
                i = self.groups[i] + 1;
                continue;
            }
            if is_separator(token) {
                parts.push((start, i));
                start = i + 1;
            }
            i += 1;
        }
        parts.push((start, to));
        parts
    }

    fn operand_missing(&self, at: usize, connective: &str) -> FilterError {
        error_at(
            Kind::Syntax,
            format!("expected an expression next to {connective}"),
            self.span_at(at),
        )
    }

    fn or(&self, from: usize, to: usize, depth: usize) -> SyntaxResult<Syntax> {
        if depth > MAX_DEPTH {
            return Err(too_complex(self.span_at(from)));
        }
        let parts = self.split(from, to, |t| keyword(t) == Some(Keyword::OR));
        if parts.len() == 1 {
            return self.and(from, to, depth);
        }
        let mut items = Vec::with_capacity(parts.len());
        for (a, b) in parts {
            if a == b {
                return Err(self.operand_missing(a.min(self.tokens.len()), "OR"));
            }
            items.push(self.and(a, b, depth)?);
        }
        Ok(Syntax::Or(items))
    }

    fn and(&self, from: usize, to: usize, depth: usize) -> SyntaxResult<Syntax> {
        // `x BETWEEN a AND b`: that AND belongs to the BETWEEN.
        let mut between = 0usize;
        let parts = self.split(from, to, |t| match keyword(t) {
            Some(Keyword::BETWEEN) => {
                between += 1;
                false
            }
            Some(Keyword::AND) if between > 0 => {
                between -= 1;
                false
            }
            Some(Keyword::AND) => true,
            _ => false,
        });
        if parts.len() == 1 {
            return self.not(from, to, depth);
        }
        let mut items = Vec::with_capacity(parts.len());
        for (a, b) in parts {
            if a == b {
                return Err(self.operand_missing(a.min(self.tokens.len()), "AND"));
            }
            items.push(self.not(a, b, depth)?);
        }
        Ok(Syntax::And(items))
    }

    fn not(&self, mut from: usize, to: usize, depth: usize) -> SyntaxResult<Syntax> {
        let first = from;
        while from < to && keyword(&self.tokens[from].token) == Some(Keyword::NOT) {
            from += 1;
        }
        let nots = from - first;
        if nots > 0 && from == to {
            return Err(self.operand_missing(to, "NOT"));
        }
        let operand = self.atom(from, to, depth)?;
        Ok(if nots % 2 == 1 {
            Syntax::Not(Box::new(operand), self.tokens[first].span)
        } else if nots > 0 {
            // NOT NOT x is x in three-valued logic, but x must still be boolean.
            Syntax::Not(
                Box::new(Syntax::Not(Box::new(operand), self.tokens[first].span)),
                self.tokens[first].span,
            )
        } else {
            operand
        })
    }

    fn atom(&self, from: usize, to: usize, depth: usize) -> SyntaxResult<Syntax> {
        if self.tokens[from].token == Token::LParen && self.groups[from] == to - 1 && to - from > 2
        {
            return stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                self.or(from + 1, to - 1, depth + 1)
            });
        }
        self.term(from, to)
    }

    /// One term, parsed by `sqlparser` once its depth is known to be bounded.
    fn term(&self, from: usize, to: usize) -> SyntaxResult<Syntax> {
        let tokens = &self.tokens[from..to];
        let bound = depth_bound(tokens, &self.groups[from..to], from);
        if bound > MAX_TERM_DEPTH {
            return Err(too_complex(tokens[0].span));
        }
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(MAX_DEPTH)
            .with_tokens_with_locations(tokens.to_vec());
        let end = self.span_at(to);
        let syntax = |e: ParserError| match e {
            ParserError::RecursionLimitExceeded => too_complex(tokens[0].span),
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => {
                // Errors at the end of the term ("expected an expression, found EOF") carry
                // no position: point at whatever follows it.
                let at = message_position(&m).or_else(|| position(end.start));
                FilterError::new(Kind::Syntax, strip_position(&m)).at(at)
            }
        };
        // sqlparser needs a few KiB of stack per level of recursion.
        let stack = term_stack(bound);
        let expr = stacker::maybe_grow(stack, 2 * stack, || parser.parse_expr()).map_err(syntax)?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(error_at(
                Kind::Syntax,
                format!(
                    "unexpected '{}' after a complete expression (combine conditions with AND / OR)",
                    next.token
                ),
                next.span,
            ));
        }
        Ok(Syntax::Term(Box::new(expr), bound))
    }
}

/// Stack to keep free before parsing, planning or walking a term whose depth is bounded by
/// `bound` (a generous 16 KiB a level: sqlparser's frames measure about 5 KiB).
pub(crate) fn term_stack(bound: usize) -> usize {
    256 * 1024 + bound * 16 * 1024
}

/// An upper bound on the depth of the tree `sqlparser` builds from `tokens`: within one bracket
/// level, items between commas are siblings, and an item's subtree is at most as deep as its
/// token count plus its deepest bracketed group (every node consumes a token of its own).
/// Computed in one pass with an explicit stack.
fn depth_bound(tokens: &[TokenWithSpan], groups: &[usize], offset: usize) -> usize {
    struct Level {
        close: usize,
        /// Tokens of the current comma-separated item, plus its deepest inner group.
        item: usize,
        inner: usize,
        deepest: usize,
    }
    let mut levels = vec![Level {
        close: usize::MAX,
        item: 0,
        inner: 0,
        deepest: 0,
    }];
    for (i, t) in tokens.iter().enumerate() {
        let Some(level) = levels.last_mut() else {
            break;
        };
        if i + offset == level.close {
            let depth = level.deepest.max(level.item + level.inner) + 1;
            levels.pop();
            if let Some(parent) = levels.last_mut() {
                parent.item += 1;
                parent.inner = parent.inner.max(depth);
            }
            continue;
        }
        if t.token == Token::Comma {
            level.deepest = level.deepest.max(level.item + level.inner);
            level.item = 0;
            level.inner = 0;
            continue;
        }
        level.item += 1;
        if closer_of(&t.token).is_some() {
            levels.push(Level {
                close: groups[i],
                item: 0,
                inner: 0,
                deepest: 0,
            });
        }
    }
    levels
        .iter()
        .map(|l| l.deepest.max(l.item + l.inner))
        .max()
        .unwrap_or(0)
}
