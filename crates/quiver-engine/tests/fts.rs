//! Full-text search as a user meets it: top-k equal to a straightforward BM25 over the same
//! tokens (OR and AND), through spilled builds, appended rows not yet indexed, deletions,
//! updates and `optimize`; phrases against a brute-force scan; fuzzy matches; typed errors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use quiver_engine::fts::query::{FtsQuery, Fuzziness, Occur, Operator};
use quiver_engine::fts::{FtsParams, TokenizerConfig};
use quiver_engine::query::text::{analyze_text_search, text_search, TextSearch};
use quiver_engine::table::indices::{
    create_index, index_stats, optimize_indices, CreateIndexOptions, IndexConfig,
};
use quiver_engine::{batches_stream, ConnectOptions, CreateMode, Database, Table, WriteParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A vocabulary of made-up words and a Zipf-like sampler over it.
struct Words {
    words: Vec<String>,
    /// Cumulative weights.
    cumulative: Vec<f64>,
}

impl Words {
    fn new(rng: &mut StdRng, n: usize) -> Self {
        let mut seen = HashSet::new();
        let mut words = Vec::new();
        while words.len() < n {
            let len = rng.random_range(2..9);
            let w: String = (0..len)
                .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
                .collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut acc = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                acc += 1.0 / (r as f64).powf(1.05);
                acc
            })
            .collect();
        Words { words, cumulative }
    }

    fn pick(&self, rng: &mut StdRng) -> &str {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c < x);
        &self.words[i.min(self.words.len() - 1)]
    }

    fn doc(&self, rng: &mut StdRng) -> String {
        let len = if rng.random_bool(0.2) {
            rng.random_range(40..200)
        } else {
            rng.random_range(1..30)
        };
        let mut out = String::new();
        for i in 0..len {
            if i > 0 {
                out.push(if rng.random_bool(0.1) { ',' } else { ' ' });
                out.push(' ');
            }
            let w = self.pick(rng);
            // Some capitals, so the lowercase filter matters.
            if rng.random_bool(0.05) {
                out.push_str(&w.to_uppercase());
            } else {
                out.push_str(w);
            }
        }
        out
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
    ]))
}

fn batch(ids: &[i64], texts: &[Option<String>]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(texts.to_vec())),
        ],
    )
    .expect("batch")
}

/// The settings under which tokens are exactly the lowercased words.
fn plain_params() -> FtsParams {
    FtsParams {
        tokenizer: TokenizerConfig {
            stem: false,
            remove_stop_words: false,
            ascii_folding: false,
            ..Default::default()
        },
        with_position: true,
        ..Default::default()
    }
}

/// Lowercased runs of letters and digits (the simple tokenizer without stemming or stop
/// words), written independently of the engine's.
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 40)
        .map(str::to_lowercase)
        .collect()
}

/// A straightforward BM25 over documents (id → text).
struct Reference {
    docs: HashMap<i64, Vec<String>>,
}

impl Reference {
    /// Scores of every document matching (OR: any token; AND: all), best first.
    fn search(&self, query: &str, and: bool, k: usize) -> Vec<(i64, f32)> {
        let n = self.docs.len() as f64;
        let total: usize = self.docs.values().map(Vec::len).sum();
        let avg = total as f64 / n;
        // Every query token scores, a repeated one once per occurrence (as Lucene's and
        // LanceDB's match queries do).
        let terms = words_of(query);
        let df: Vec<f64> = terms
            .iter()
            .map(|t| self.docs.values().filter(|d| d.contains(t)).count() as f64)
            .collect();
        let mut out = Vec::new();
        for (&id, doc) in &self.docs {
            let mut score = 0.0f64;
            let mut matched = 0;
            for (t, &df) in terms.iter().zip(&df) {
                let tf = doc.iter().filter(|w| *w == t).count() as f64;
                if tf == 0.0 {
                    continue;
                }
                matched += 1;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * doc.len() as f64 / avg));
            }
            if matched > 0 && (!and || matched == terms.len()) {
                out.push((id, score as f32));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }
}

/// Checks `got` against `want`: equal scores rank by rank, and equal sets but for ties at
/// the k-th score.
fn assert_same_top(got: &[(i64, f32)], want: &[(i64, f32)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: result count");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-3 * w.1.abs().max(1.0),
            "{what}: scores {got:?} vs {want:?}"
        );
    }
    if let Some(last) = want.last() {
        let strict = |l: &[(i64, f32)]| -> HashSet<i64> {
            l.iter()
                .filter(|(_, s)| *s > last.1 + 1e-3 * last.1.abs().max(1.0))
                .map(|(id, _)| *id)
                .collect()
        };
        assert_eq!(
            strict(got),
            strict(want),
            "{what}: rows above the k-th score"
        );
    }
}

/// A search for the ids of `query`'s top 10, unfiltered.
fn top_ids(query: FtsQuery) -> TextSearch {
    TextSearch {
        query,
        k: 10,
        offset: 0,
        columns: Some(vec!["id".into()]),
        with_row_id: false,
        filter: None,
        postfilter: false,
    }
}

async fn search(t: &Table, query: FtsQuery, k: usize, filter: Option<&str>) -> Vec<(i64, f32)> {
    let request = TextSearch {
        query,
        k,
        offset: 0,
        columns: Some(vec!["id".into()]),
        with_row_id: false,
        filter: filter.map(|f| t.parse_filter(f).expect("filter")),
        postfilter: false,
    };
    let batch = text_search(t, &request).await.expect("search");
    let ids = batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let scores = batch
        .column_by_name("_score")
        .expect("_score")
        .as_primitive::<Float32Type>()
        .values()
        .to_vec();
    let out: Vec<(i64, f32)> = ids.into_iter().zip(scores).collect();
    assert!(
        out.windows(2).all(|w| w[0].1 >= w[1].1),
        "best first: {out:?}"
    );
    out
}

fn matching(text: &str, operator: Operator) -> FtsQuery {
    FtsQuery::Match {
        column: "text".into(),
        text: text.into(),
        boost: 1.0,
        fuzziness: Fuzziness::Edits(0),
        max_expansions: 50,
        operator,
        prefix_length: 0,
    }
}

struct Corpus {
    words: Words,
    rng: StdRng,
}

impl Corpus {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let words = Words::new(&mut rng, 3000);
        Corpus { words, rng }
    }

    fn docs(&mut self, n: usize) -> Vec<Option<String>> {
        (0..n)
            .map(|i| (i % 97 != 13).then(|| self.words.doc(&mut self.rng)))
            .collect()
    }

    /// A query of 1 to 4 words, frequent and rare.
    fn query(&mut self) -> String {
        let n = self.rng.random_range(1..5);
        (0..n)
            .map(|_| {
                if self.rng.random_bool(0.3) {
                    let i = self.rng.random_range(0..self.words.words.len());
                    self.words.words[i].clone()
                } else {
                    self.words.pick(&mut self.rng).to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn make_table(db: &Database, name: &str, ids: &[i64], texts: &[Option<String>]) -> Table {
    db.create_table(
        name,
        schema(),
        batches_stream(vec![batch(ids, texts)]),
        CreateMode::Create,
        WriteParams {
            max_rows_per_file: 3000,
            ..Default::default()
        },
    )
    .await
    .expect("create")
}

fn reference(ids: &[i64], texts: &[Option<String>]) -> Reference {
    Reference {
        docs: ids
            .iter()
            .zip(texts)
            .filter_map(|(&id, t)| t.as_ref().map(|t| (id, words_of(t))))
            .collect(),
    }
}

async fn fts_index(t: &Table, params: FtsParams) {
    create_index(
        t,
        "text",
        CreateIndexOptions {
            config: Some(IndexConfig::Fts(params)),
            replace: true,
            ..Default::default()
        },
    )
    .await
    .expect("fts index");
}

/// A table `t` of `n` generated documents (ids 0..n) with a plain FTS index.
struct Indexed {
    db: Database,
    corpus: Corpus,
    texts: Vec<Option<String>>,
    ids: Vec<i64>,
    t: Table,
}

async fn indexed(seed: u64, n: usize) -> Indexed {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let mut corpus = Corpus::new(seed);
    let texts = corpus.docs(n);
    let ids: Vec<i64> = (0..texts.len() as i64).collect();
    let t = make_table(&db, "t", &ids, &texts).await;
    fts_index(&t, plain_params()).await;
    Indexed {
        db,
        corpus,
        texts,
        ids,
        t,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn top_k_equals_a_straightforward_bm25_for_or_and_and() {
    let Indexed {
        db,
        mut corpus,
        texts,
        ids,
        t,
    } = indexed(7, 8000).await;
    // A second table built with a tiny memory budget: many spilled segments merged.
    let spilled = make_table(&db, "spilled", &ids, &texts).await;
    fts_index(
        &spilled,
        FtsParams {
            memory_limit: 64 << 10,
            ..plain_params()
        },
    )
    .await;
    let reference = reference(&ids, &texts);
    for q in 0..300 {
        let text = corpus.query();
        for (operator, and) in [(Operator::Or, false), (Operator::And, true)] {
            let want = reference.search(&text, and, 10);
            let got = search(&t, matching(&text, operator), 10, None).await;
            assert_same_top(&got, &want, &format!("query {q} {text:?} {operator:?}"));
            if q % 10 == 0 {
                let got = search(&spilled, matching(&text, operator), 10, None).await;
                assert_same_top(&got, &want, &format!("spilled {q} {text:?} {operator:?}"));
            }
        }
    }
    // A large k reaches every match.
    let text = corpus.query();
    let want = reference.search(&text, false, 100_000);
    let got = search(&t, matching(&text, Operator::Or), 100_000, None).await;
    assert_same_top(&got, &want, "every match");
}

#[tokio::test(flavor = "multi_thread")]
async fn appended_deleted_and_updated_rows_then_optimize() {
    let Indexed {
        db: _db,
        mut corpus,
        mut texts,
        mut ids,
        t,
    } = indexed(11, 4000).await;
    // Appended rows are searchable at once, scored with statistics that include them.
    for round in 0..3 {
        let more = corpus.docs(700);
        let more_ids: Vec<i64> = (ids.len() as i64..(ids.len() + more.len()) as i64).collect();
        t.append(
            batches_stream(vec![batch(&more_ids, &more)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
        texts.extend(more);
        ids.extend(more_ids);
        let reference = reference(&ids, &texts);
        for q in 0..40 {
            let text = corpus.query();
            let got = search(&t, matching(&text, Operator::Or), 10, None).await;
            let want = reference.search(&text, false, 10);
            assert_same_top(&got, &want, &format!("round {round} query {q} {text:?}"));
        }
        if round == 1 {
            let stats = optimize_indices(&t).await.expect("optimize");
            assert_eq!(stats.indexes_optimized, 1);
        }
    }
    // Deleted rows are never returned.
    t.delete("id % 3 = 0").await.expect("delete");
    let text = corpus.query();
    let got = search(&t, matching(&text, Operator::Or), 1000, None).await;
    assert!(got.iter().all(|(id, _)| id % 3 != 0), "{got:?}");
    // After optimize, statistics are those of the live rows.
    optimize_indices(&t).await.expect("optimize");
    let stats = index_stats(&t, "text_idx").expect("stats");
    assert_eq!(stats.num_unindexed_rows, 0);
    let live: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] % 3 != 0).collect();
    let live_ids: Vec<i64> = live.iter().map(|&i| ids[i]).collect();
    let live_texts: Vec<Option<String>> = live.iter().map(|&i| texts[i].clone()).collect();
    let reference = reference(&live_ids, &live_texts);
    for q in 0..60 {
        let text = corpus.query();
        for (operator, and) in [(Operator::Or, false), (Operator::And, true)] {
            let got = search(&t, matching(&text, operator), 10, None).await;
            let want = reference.search(&text, and, 10);
            assert_same_top(&got, &want, &format!("after delete {q} {text:?}"));
        }
    }
    // A prefilter: only matching rows, exactly ranked among them.
    let text = corpus.query();
    let got = search(&t, matching(&text, Operator::Or), 10, Some("id < 2000")).await;
    let mut want: Vec<(i64, f32)> = reference
        .search(&text, false, 1_000_000)
        .into_iter()
        .filter(|(id, _)| *id < 2000)
        .collect();
    want.truncate(10);
    assert_same_top(&got, &want, "prefiltered");
    // A postfilter: the best rows of all, then those matching (so fewer may come back).
    let request = TextSearch {
        query: matching(&text, Operator::Or),
        k: 10,
        offset: 0,
        columns: Some(vec!["id".into()]),
        with_row_id: false,
        filter: Some(t.parse_filter("id < 2000").expect("filter")),
        postfilter: true,
    };
    let (batch, plan) = analyze_text_search(&t, &request).await.expect("postfilter");
    let got: Vec<i64> = batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let best = reference.search(&text, false, 10);
    let want: Vec<i64> = best
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| *id < 2000)
        .collect();
    let kth = best.last().map_or(0.0, |b| b.1);
    // Ties at the 10th score aside, the same rows in the same order.
    let sure = |ids: &[i64]| -> Vec<i64> {
        ids.iter()
            .copied()
            .filter(|id| best.iter().any(|(b, s)| b == id && *s > kth + 1e-4))
            .collect()
    };
    assert_eq!(sure(&got), sure(&want), "postfiltered");
    let post = plan.find("Postfilter").expect("a Postfilter operator");
    assert_eq!(
        post.metrics.as_ref().map(|m| m.output_rows),
        Some(got.len() as u64)
    );
    assert!(plan.find("Prefilter").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unindexed_rows_are_tokenized_once_per_fragment_and_stay_exact() {
    let Indexed {
        db: _db,
        mut corpus,
        mut texts,
        mut ids,
        t,
    } = indexed(5, 1500).await;
    let tokenized = |plan: &quiver_engine::plan::PlanNode| -> (u64, u64) {
        let source = plan.find("Bm25Source").expect("source");
        let n = |k: &str| source.detail(k).expect(k).parse::<u64>().expect(k);
        (n("unindexed_rows"), n("unindexed_rows_tokenized"))
    };
    let request = |text: &str| top_ids(matching(text, Operator::Or));
    // Two appends: each fragment is tokenized by the first search that needs it, once.
    let mut appended = 0;
    for round in 0..2 {
        let more = corpus.docs(300);
        let more_ids: Vec<i64> = (ids.len() as i64..(ids.len() + more.len()) as i64).collect();
        t.append(
            batches_stream(vec![batch(&more_ids, &more)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
        let documents = more.iter().flatten().count() as u64;
        texts.extend(more);
        ids.extend(more_ids);
        appended += documents;
        let text = corpus.query();
        let (_, first) = analyze_text_search(&t, &request(&text))
            .await
            .expect("search");
        assert_eq!(tokenized(&first), (appended, documents), "round {round}");
        let (_, again) = analyze_text_search(&t, &request(&text))
            .await
            .expect("search");
        assert_eq!(tokenized(&again), (appended, 0), "round {round}");
        let reference = reference(&ids, &texts);
        for q in 0..20 {
            let text = corpus.query();
            let got = search(&t, matching(&text, Operator::Or), 10, None).await;
            assert_same_top(
                &got,
                &reference.search(&text, false, 10),
                &format!("{round} {q}"),
            );
        }
    }
    // Deleting unindexed rows makes a new deletion file: that fragment is tokenized again,
    // without them, so statistics stay those of the live unindexed rows.
    let last = ids.len() as i64 - 300;
    t.delete(&format!("id >= {last} AND id % 2 = 0"))
        .await
        .expect("delete");
    let live: Vec<usize> = (0..ids.len())
        .filter(|&i| ids[i] < last || ids[i] % 2 != 0)
        .collect();
    let documents = |from: i64| {
        live.iter()
            .filter(|&&i| ids[i] >= from && texts[i].is_some())
            .count() as u64
    };
    let (_, plan) = analyze_text_search(&t, &request(&corpus.query()))
        .await
        .expect("search");
    assert_eq!(tokenized(&plan), (documents(1500), documents(last)));
    let reference = reference(
        &live.iter().map(|&i| ids[i]).collect::<Vec<_>>(),
        &live.iter().map(|&i| texts[i].clone()).collect::<Vec<_>>(),
    );
    // The index's own rows are all live, so only unindexed statistics changed: compare the
    // appended rows' scores, found by ids above the index's.
    for q in 0..20 {
        let text = corpus.query();
        let got = search(&t, matching(&text, Operator::Or), 10, Some("id >= 1500")).await;
        let mut want: Vec<(i64, f32)> = reference
            .search(&text, false, 1_000_000)
            .into_iter()
            .filter(|(id, _)| *id >= 1500)
            .collect();
        want.truncate(10);
        assert_same_top(&got, &want, &format!("after delete {q}"));
    }
}

/// Positions of each word of a document (the reference's tokens).
fn phrase_in(doc: &[String], phrase: &[String], slop: u32) -> bool {
    let positions = |w: &String| -> Vec<u32> {
        doc.iter()
            .enumerate()
            .filter(|(_, d)| *d == w)
            .map(|(i, _)| i as u32)
            .collect()
    };
    let lists: Vec<Vec<u32>> = phrase.iter().map(positions).collect();
    // Brute force: any choice of increasing positions, the span at most len − 1 + slop.
    fn choose(lists: &[Vec<u32>], i: usize, prev: Option<u32>, first: u32, limit: u32) -> bool {
        if i == lists.len() {
            return true;
        }
        lists[i].iter().any(|&p| {
            let after = prev.is_none_or(|q| p > q);
            let start = if i == 0 { p } else { first };
            after && p - start <= limit && choose(lists, i + 1, Some(p), start, limit)
        })
    }
    choose(&lists, 0, None, 0, phrase.len() as u32 - 1 + slop)
}

#[tokio::test(flavor = "multi_thread")]
async fn phrases_agree_with_a_brute_force_scan_and_fuzzy_matches_find_edits() {
    let Indexed {
        db: _db,
        corpus: _,
        texts,
        ids,
        t,
    } = indexed(5, 3000).await;
    let docs: Vec<(i64, Vec<String>)> = ids
        .iter()
        .zip(&texts)
        .filter_map(|(&id, t)| t.as_ref().map(|t| (id, words_of(t))))
        .collect();
    let mut rng = StdRng::seed_from_u64(3);
    let mut checked = 0;
    while checked < 60 {
        // A phrase taken from a document, sometimes with a word skipped.
        let (_, doc) = &docs[rng.random_range(0..docs.len())];
        if doc.len() < 4 {
            continue;
        }
        let start = rng.random_range(0..doc.len() - 3);
        let mut phrase: Vec<String> = doc[start..start + rng.random_range(2..4)].to_vec();
        if rng.random_bool(0.3) {
            phrase.swap(0, 1);
        }
        let slop = rng.random_range(0..3);
        let query = FtsQuery::Phrase {
            column: "text".into(),
            text: phrase.join(" "),
            slop,
        };
        let got: HashSet<i64> = search(&t, query, 100_000, None)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let want: HashSet<i64> = docs
            .iter()
            .filter(|(_, d)| phrase_in(d, &phrase, slop))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(got, want, "phrase {phrase:?} slop {slop}");
        checked += 1;
    }
    // Fuzzy: a word with one letter changed finds the word.
    let word = docs[0].1[0].clone();
    let mut typo: Vec<char> = word.chars().collect();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == 'z' { 'y' } else { 'z' };
    let typo: String = typo.into_iter().collect();
    let query = FtsQuery::Match {
        column: "text".into(),
        text: typo.clone(),
        boost: 1.0,
        fuzziness: Fuzziness::Edits(1),
        max_expansions: 50,
        operator: Operator::Or,
        prefix_length: 0,
    };
    let got: HashSet<i64> = search(&t, query, 100_000, None)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(got.contains(&docs[0].0), "{typo} finds {word}");
    // Boolean: must / must not.
    let (a, b) = (docs[0].1[0].clone(), docs[1].1[0].clone());
    let query = FtsQuery::Boolean(vec![
        (Occur::Must, matching(&a, Operator::Or)),
        (Occur::MustNot, matching(&b, Operator::Or)),
    ]);
    let got = search(&t, query, 100_000, None).await;
    for (id, _) in &got {
        let d = &docs.iter().find(|(i, _)| i == id).expect("doc").1;
        assert!(d.contains(&a) && !d.contains(&b));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn phrase_queries_need_positions_and_bad_columns_are_typed_errors() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let mut corpus = Corpus::new(1);
    let texts = corpus.docs(300);
    let ids: Vec<i64> = (0..texts.len() as i64).collect();
    let t = make_table(&db, "t", &ids, &texts).await;
    let none = TextSearch {
        query: FtsQuery::plain("", "hello"),
        k: 10,
        offset: 0,
        columns: None,
        with_row_id: false,
        filter: None,
        postfilter: false,
    };
    let err = text_search(&t, &none).await.expect_err("no index");
    assert!(err.to_string().contains("no full-text index"), "{err}");
    fts_index(&t, FtsParams::default()).await;
    let phrase = TextSearch {
        query: FtsQuery::Phrase {
            column: "text".into(),
            text: "a b".into(),
            slop: 0,
        },
        ..none.clone()
    };
    let err = text_search(&t, &phrase).await.expect_err("no positions");
    assert!(err.to_string().contains("withPosition"), "{err}");
    let err = create_index(
        &t,
        "id",
        CreateIndexOptions {
            config: Some(IndexConfig::Fts(FtsParams::default())),
            ..Default::default()
        },
    )
    .await
    .expect_err("not text");
    assert!(err.to_string().contains("string columns"), "{err}");
}

/// An analyzed search counts the posting lists it read from storage, through its own store
/// handle even when an earlier, unmeasured search opened the index; a repeat finds them
/// cached and reads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzed_searches_count_the_lists_they_read_from_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8");
    let db = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let texts = Corpus::new(11).docs(3000);
    let ids: Vec<i64> = (0..texts.len() as i64).collect();
    fts_index(&make_table(&db, "t", &ids, &texts).await, plain_params()).await;
    // Two words of one document: each has a posting list of its own.
    let words: Vec<&str> = texts
        .iter()
        .flatten()
        .next()
        .expect("a document")
        .split_whitespace()
        .collect();
    let (opener, word) = (
        words[0],
        *words.iter().find(|w| **w != words[0]).expect("two words"),
    );
    let fresh = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = fresh.open_table("t").await.expect("open");
    assert!(!search(&t, matching(opener, Operator::Or), 10, None)
        .await
        .is_empty());
    let request = top_ids(matching(word, Operator::Or));
    let figures = |plan: &quiver_engine::plan::PlanNode| {
        let node = plan.find("FullTextSearch").expect("search node");
        let m = node.metrics.clone().expect("measured");
        (m.parts_loaded, m.iops)
    };
    let (_, first) = analyze_text_search(&t, &request).await.expect("search");
    let (_, again) = analyze_text_search(&t, &request).await.expect("search");
    let (first, again) = (figures(&first), figures(&again));
    assert!(first.0 >= 1 && first.1 >= first.0, "{first:?}");
    assert_eq!(again, (0, 0));
}
