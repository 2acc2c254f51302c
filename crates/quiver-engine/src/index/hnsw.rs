//! HNSW graphs (hierarchical navigable small worlds): each node links to about `m` near
//! nodes per layer (`2m` on layer 0), and a search walks greedily down the sparse upper
//! layers, then best-first over layer 0 keeping the `ef` nearest nodes seen. Built by
//! inserting nodes in parallel (links read without locks, written under one per node), with
//! the paper's neighbour heuristic (a candidate is linked only if it is nearer to the new node
//! than to any node already linked), so clusters stay connected to each other; a full list the
//! heuristic chose takes one more node by comparing that node alone (`admit`). A stored graph
//! takes appended nodes by the same inserts ([`extend`]) and loses deleted ones by repairing
//! the links around them ([`without`]).
//!
//! The graph knows node numbers only; a [`GraphSpace`] gives distances (between scalar- or
//! product-quantized codes). Layout on disk: FORMAT.md §6.2.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::vocab::Candidate;

/// No link (padding of a node's fixed-size link slots).
pub const NONE: u32 = u32::MAX;
/// Highest layer a node may be on.
const MAX_LEVEL: u8 = 16;
/// Candidates a search reserves room for up front.
const PREALLOCATE_NODES: usize = 1024;
/// Candidates of the walk that links a node no other node reaches (a few per build).
const REPAIR_EF: usize = 100;
/// Neighbours whose data a walk requests ahead of the distance it computes. Requesting every
/// neighbour's at once (up to 2m × a code's cache lines) stalls on the CPU's few outstanding
/// misses before the first distance; a short window keeps them in flight while it computes
/// (a 30K-node sphere build: 5.0–6.9 s at once, 4.3–4.9 s with 4 ahead; 2 to 8 measured alike).
const PREFETCH_AHEAD: usize = 4;

/// Distances between the nodes of a graph (and prepared queries).
pub trait GraphSpace: Sync {
    type Query: Send + Sync;
    /// The query a node makes (for linking it).
    fn node_query(&self, node: u32) -> Self::Query;
    fn distance(&self, query: &Self::Query, node: u32) -> f32;
    /// Hints that `node`'s data is about to be read (a walk's next distances are random
    /// reads; asking for them together overlaps their memory latency).
    fn prefetch(&self, _node: u32) {}
}

/// How a graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on the upper layers (layer 0 has twice as many).
    pub m: usize,
    /// Candidates kept while linking a new node.
    pub ef_construction: usize,
}

/// One upper layer: the nodes on it (ascending) and `m` link slots each.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub nodes: Vec<u32>,
    pub links: Vec<u32>,
}

/// A built graph over nodes `0..n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub m: usize,
    pub entry: u32,
    pub levels: Vec<u8>,
    /// `n × 2m` link slots, [`NONE`]-padded.
    pub layer0: Vec<u32>,
    /// Layer `l` (1-based) at `upper[l - 1]`.
    pub upper: Vec<Layer>,
}

/// Nodes seen by one search, cleared by moving to a new epoch (and in full once every 255
/// searches). A byte per node: a walk's random probes stay in the nearer caches.
pub struct Visited {
    marks: Vec<u8>,
    epoch: u8,
    /// Nodes marked since the search started (the distances it computed).
    count: u64,
}

impl Visited {
    pub fn new(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            epoch: 0,
            count: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.count = 0;
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; false when it was marked already.
    #[inline]
    fn insert(&mut self, node: u32) -> bool {
        let slot = &mut self.marks[node as usize];
        if *slot == self.epoch {
            false
        } else {
            *slot = self.epoch;
            self.count += 1;
            true
        }
    }
}

/// The layer of node `i`: geometric with ratio 1/m, from a hash of `seed` and `i` (the same
/// graph for the same input whatever the thread count).
fn level_of(i: u64, seed: u64, m: usize) -> u8 {
    let mut x = i.wrapping_add(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let level = -u.ln() / (m as f64).ln();
    (level as u64).min(u64::from(MAX_LEVEL)) as u8
}

/// Best-first search of one layer from `entry` (ascending by distance), keeping the `ef`
/// nearest nodes `allow` admits; nodes it rejects are still walked through.
#[allow(clippy::too_many_arguments)]
fn search_layer<S, N, A>(
    space: &S,
    query: &S::Query,
    entry: &[Candidate],
    ef: usize,
    level: usize,
    visited: &mut Visited,
    neighbours: &N,
    allow: &A,
    buf: &mut Vec<u32>,
) -> Vec<Candidate>
where
    S: GraphSpace + ?Sized,
    N: Fn(u32, usize, &mut Vec<u32>),
    A: Fn(u32) -> bool,
{
    let ef = ef.max(1);
    // (`ef` may come from a caller or a file: the heaps grow only with the nodes reached.)
    let reserve = ef.min(PREALLOCATE_NODES);
    let mut candidates: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(reserve * 2);
    let mut results: BinaryHeap<u64> = BinaryHeap::with_capacity(reserve + 1);
    for &c in entry {
        let node = c.row_id as u32;
        if visited.insert(node) {
            let key = key_of(c.distance, node);
            candidates.push(Reverse(key));
            if allow(node) {
                results.push(key);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    while let Some(Reverse(current)) = candidates.pop() {
        if results.len() >= ef && results.peek().is_some_and(|&w| current > w) {
            break;
        }
        buf.clear();
        neighbours(current as u32, level, buf);
        // Unvisited neighbours only, their data requested a few distances ahead.
        buf.retain(|&nb| visited.insert(nb));
        for &nb in buf.iter().take(PREFETCH_AHEAD) {
            space.prefetch(nb);
        }
        for (j, &nb) in buf.iter().enumerate() {
            if let Some(&next) = buf.get(j + PREFETCH_AHEAD) {
                space.prefetch(next);
            }
            let key = key_of(space.distance(query, nb), nb);
            if results.len() < ef || results.peek().is_some_and(|&w| key < w) {
                candidates.push(Reverse(key));
                if allow(nb) {
                    results.push(key);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
    }
    let mut found: Vec<Candidate> = results
        .into_vec()
        .into_iter()
        .map(|key| Candidate {
            distance: distance_of(key),
            row_id: key & u64::from(u32::MAX),
        })
        .collect();
    found.sort_unstable();
    found
}

/// A candidate as one integer ordered as [`Candidate`]s are (distance in total order, then
/// node): the walk's heaps compare and move 8 bytes instead of 16.
#[inline]
fn key_of(distance: f32, node: u32) -> u64 {
    let bits = distance.to_bits();
    // Negative floats reversed, all below the positive ones.
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    u64::from(ordered) << 32 | u64::from(node)
}

#[inline]
fn distance_of(key: u64) -> f32 {
    let ordered = (key >> 32) as u32;
    f32::from_bits(if ordered >> 31 == 1 {
        ordered & !(1 << 31)
    } else {
        !ordered
    })
}

/// Greedy descent: the nearest node reachable from `start` on `level`.
fn greedy<S, N>(
    space: &S,
    query: &S::Query,
    start: Candidate,
    level: usize,
    neighbours: &N,
    buf: &mut Vec<u32>,
) -> Candidate
where
    S: GraphSpace + ?Sized,
    N: Fn(u32, usize, &mut Vec<u32>),
{
    let mut best = start;
    loop {
        buf.clear();
        neighbours(best.row_id as u32, level, buf);
        let mut moved = false;
        for &nb in buf.iter() {
            let distance = space.distance(query, nb);
            if distance < best.distance {
                best = Candidate {
                    distance,
                    row_id: u64::from(nb),
                };
                moved = true;
            }
        }
        if !moved {
            return best;
        }
    }
}

/// The paper's heuristic: of `candidates` (ascending), up to `m` nodes each nearer to the
/// new node than to any node chosen before it (ascending, with their distances).
fn select<S: GraphSpace + ?Sized>(space: &S, candidates: &[Candidate], m: usize) -> Vec<Candidate> {
    let mut chosen: Vec<(Candidate, S::Query)> = Vec::with_capacity(m);
    for c in candidates {
        if chosen.len() >= m {
            break;
        }
        let node = c.row_id as u32;
        if chosen
            .iter()
            .all(|(_, q)| space.distance(q, node) >= c.distance)
        {
            chosen.push((*c, space.node_query(node)));
        }
    }
    chosen.into_iter().map(|(c, _)| c).collect()
}

/// The heuristic's choice among a full list it chose (`list`: ascending, `cap` long) and one
/// more candidate `new`, comparing `new` alone: every listed node passed against the nodes
/// before it, and still does, so only the pairs `new` forms can change the outcome (the same
/// result as [`select`] over all of them, with at most `cap` distances instead of up to
/// `cap²/2`). `None` when the list stays as it is.
fn admit<S: GraphSpace + ?Sized>(
    space: &S,
    list: &[Candidate],
    new: Candidate,
    cap: usize,
) -> Option<Vec<Candidate>> {
    let nearer = list.partition_point(|c| *c < new);
    if nearer >= cap {
        return None;
    }
    let new_node = new.row_id as u32;
    let dominated = list[..nearer]
        .iter()
        .any(|c| space.distance(&space.node_query(c.row_id as u32), new_node) < new.distance);
    if dominated {
        return None;
    }
    let new_query = space.node_query(new_node);
    let mut chosen = Vec::with_capacity(cap);
    chosen.extend_from_slice(&list[..nearer]);
    chosen.push(new);
    for c in &list[nearer..] {
        if chosen.len() >= cap {
            break;
        }
        if space.distance(&new_query, c.row_id as u32) >= c.distance {
            chosen.push(*c);
        }
    }
    Some(chosen)
}

/// Builds the graph of `n` nodes of `space` (`on_node` is called as nodes are linked).
pub fn build<S: GraphSpace>(
    space: &S,
    n: usize,
    params: HnswParams,
    seed: u64,
    on_node: &(dyn Fn() + Sync),
) -> Graph {
    extend(None, space, n, params, seed, on_node)
}

/// `base` (a graph over nodes `0..base.len()` of `space`, or none) with nodes up to `n`
/// inserted as the build inserts them: appended rows join a graph without relinking the
/// nodes it holds (those only gain links to new nodes, as in a build). Keeps `base`'s `m`.
pub fn extend<S: GraphSpace>(
    base: Option<&Graph>,
    space: &S,
    n: usize,
    params: HnswParams,
    seed: u64,
    on_node: &(dyn Fn() + Sync),
) -> Graph {
    let base = base.filter(|g| !g.is_empty() && g.len() <= n);
    let m = base.map_or(params.m.max(2), |g| g.m);
    let ef_construction = params.ef_construction.max(m);
    let old = base.map_or(0, Graph::len);
    let levels: Vec<u8> = (0..n)
        .map(|i| match base {
            Some(g) if i < old => g.levels[i],
            _ => level_of(i as u64, seed, m),
        })
        .collect();
    if n == 0 {
        return Graph {
            m,
            entry: 0,
            levels,
            layer0: Vec::new(),
            upper: Vec::new(),
        };
    }
    let links = BuildLinks::new(&levels, m);
    let insert = Inserter {
        space,
        links: &links,
        m,
        ef_construction,
        n,
    };
    let top_of = |nodes: std::ops::Range<usize>| {
        nodes
            .max_by_key(|&i| (levels[i], std::cmp::Reverse(i)))
            .map(|i| i as u32)
    };
    // The entry: the first node of the highest layer, fixed before the parallel inserts. A
    // new node above every old one is linked first, from the old entry, then becomes it.
    let entry = match base {
        None => top_of(0..n).unwrap_or(0),
        Some(g) => {
            links.load(g);
            let mut entry = g.entry;
            if let Some(high) = top_of(old..n) {
                if levels[high as usize] > levels[entry as usize] {
                    insert.node(high, entry, &levels, &mut Scratch::new(n));
                    on_node();
                    entry = high;
                }
            }
            entry
        }
    };
    (old as u32..n as u32)
        .into_par_iter()
        .filter(|&i| i != entry)
        .for_each_init(
            || Scratch::new(n),
            |scratch, node| {
                insert.node(node, entry, &levels, scratch);
                on_node();
            },
        );
    let mut graph = links.into_graph(m, entry, levels);
    graph.reach_every_node(space, REPAIR_EF);
    graph
}

/// The graph of `kept` (old node numbers, ascending), renumbered `0..kept.len()` in that
/// order, over `space` in the new numbering: nodes that lost links to dropped nodes choose
/// again by the heuristic among their remaining links and the dropped nodes' surviving
/// neighbours (so the regions a dropped node joined stay joined); the others keep their
/// links. The entry stays, or passes to the first node of the highest remaining layer.
pub fn without<S: GraphSpace>(graph: &Graph, kept: &[u32], space: &S) -> Graph {
    let m = graph.m;
    let mut new_of = vec![NONE; graph.len()];
    let kept: Vec<u32> = kept
        .iter()
        .copied()
        .filter(|&old| (old as usize) < graph.len())
        .collect();
    for (new, &old) in kept.iter().enumerate() {
        new_of[old as usize] = new as u32;
    }
    let levels: Vec<u8> = kept.iter().map(|&old| graph.levels[old as usize]).collect();
    let links = BuildLinks::new(&levels, m);
    (0..kept.len()).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(list, around, candidates): &mut (Vec<u32>, Vec<u32>, Vec<Candidate>), new| {
            let old = kept[new];
            for level in 0..=usize::from(levels[new]) {
                list.clear();
                graph.neighbours(old, level, list);
                let survives = |nb: u32| new_of.get(nb as usize).is_some_and(|&n| n != NONE);
                if list.iter().all(|&nb| survives(nb) && nb != old) {
                    list.iter_mut().for_each(|nb| *nb = new_of[*nb as usize]);
                    links.store(new as u32, level, list);
                    continue;
                }
                let mut pool: Vec<u32> = Vec::with_capacity(list.len() * 2);
                for &nb in list.iter() {
                    if nb == old {
                        continue;
                    }
                    if survives(nb) {
                        pool.push(nb);
                    } else {
                        around.clear();
                        graph.neighbours(nb, level, around);
                        pool.extend(around.iter().copied().filter(|&x| x != old && survives(x)));
                    }
                }
                pool.sort_unstable();
                pool.dedup();
                let query = space.node_query(new as u32);
                candidates.clear();
                candidates.extend(pool.iter().map(|&x| {
                    let x = new_of[x as usize];
                    Candidate {
                        distance: space.distance(&query, x),
                        row_id: u64::from(x),
                    }
                }));
                candidates.sort_unstable();
                let cap = if level == 0 { 2 * m } else { m };
                let chosen = select(space, candidates, cap);
                links.store_scored(new as u32, level, &chosen);
            }
        },
    );
    let entry = match new_of.get(graph.entry as usize) {
        Some(&e) if e != NONE => e,
        _ => (0..levels.len())
            .max_by_key(|&i| (levels[i], std::cmp::Reverse(i)))
            .unwrap_or(0) as u32,
    };
    let mut graph = links.into_graph(m, entry, levels);
    graph.reach_every_node(space, REPAIR_EF);
    graph
}

/// Per-thread buffers of inserts.
struct Scratch {
    visited: Visited,
    buf: Vec<u32>,
    list: Vec<Candidate>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Scratch {
            visited: Visited::new(n),
            buf: Vec::new(),
            list: Vec::new(),
        }
    }
}

/// Links one node into a graph being built.
struct Inserter<'a, S> {
    space: &'a S,
    links: &'a BuildLinks,
    m: usize,
    ef_construction: usize,
    n: usize,
}

impl<S: GraphSpace> Inserter<'_, S> {
    /// Links `node`, searching from `entry` (on its layer, the highest).
    fn node(&self, node: u32, entry: u32, levels: &[u8], scratch: &mut Scratch) {
        let space = self.space;
        let neighbours =
            |node: u32, level: usize, out: &mut Vec<u32>| self.links.read(node, level, out);
        let everything = |_: u32| true;
        let query = space.node_query(node);
        let level = usize::from(levels[node as usize]);
        let top = usize::from(levels[entry as usize]);
        let mut ep = Candidate {
            distance: space.distance(&query, entry),
            row_id: u64::from(entry),
        };
        for l in (level + 1..=top).rev() {
            ep = greedy(space, &query, ep, l, &neighbours, &mut scratch.buf);
        }
        let mut entry_points = vec![ep];
        for l in (0..=level.min(top)).rev() {
            scratch.visited.start(self.n);
            let mut found = search_layer(
                space,
                &query,
                &entry_points,
                self.ef_construction,
                l,
                &mut scratch.visited,
                &neighbours,
                &everything,
                &mut scratch.buf,
            );
            // A concurrent insert may already link back to this node on this layer, so the
            // walk can reach it: at distance 0 it would be chosen first, and the heuristic
            // would then reject every other candidate.
            found.retain(|c| c.row_id != u64::from(node));
            let chosen = select(space, &found, self.m);
            let cap = if l == 0 { 2 * self.m } else { self.m };
            self.links.write_locked(node, l, &chosen, cap);
            for other in &chosen {
                let back = Candidate {
                    distance: other.distance,
                    row_id: u64::from(node),
                };
                self.links
                    .link_back(space, other.row_id as u32, back, l, cap, &mut scratch.list);
            }
            entry_points = found;
        }
    }
}

/// A graph's links while it is built: fixed slots per node and layer, [`NONE`]-padded, read
/// without locks (a search racing a rewrite may see a mix of the old and new list: every slot
/// always holds some valid node, so it only walks a link more or less), written under one
/// lock per node. Beside each link, its distance to its node (written and read under the
/// lock), so relinking a full list computes no distance twice.
struct BuildLinks {
    m: usize,
    layer0: Vec<AtomicU32>,
    /// The f32 bits of each slot's distance (NaN for links loaded from a stored graph).
    layer0_distances: Vec<AtomicU32>,
    /// Upper layers' slots: node `i`'s `levels[i] × m` slots start at `upper_start[i]`.
    upper: Vec<AtomicU32>,
    upper_distances: Vec<AtomicU32>,
    upper_start: Vec<usize>,
    /// A lock per node over its layers' "closed" bits: bit `l` is set while the node's list
    /// on layer `l` is full and was chosen by the heuristic, ascending (so a new candidate is
    /// weighed by [`admit`]).
    writers: Vec<Mutex<u32>>,
}

/// Unknown distance (a link loaded from a stored graph).
const UNKNOWN: u32 = f32::NAN.to_bits();

impl BuildLinks {
    fn new(levels: &[u8], m: usize) -> Self {
        let mut upper_start = Vec::with_capacity(levels.len());
        let mut upper_slots = 0usize;
        for &l in levels {
            upper_start.push(upper_slots);
            upper_slots += usize::from(l) * m;
        }
        let slots = |n: usize, v: u32| (0..n).map(|_| AtomicU32::new(v)).collect::<Vec<_>>();
        BuildLinks {
            m,
            layer0: slots(levels.len() * 2 * m, NONE),
            layer0_distances: slots(levels.len() * 2 * m, UNKNOWN),
            upper: slots(upper_slots, NONE),
            upper_distances: slots(upper_slots, UNKNOWN),
            upper_start,
            writers: (0..levels.len()).map(|_| Mutex::new(0)).collect(),
        }
    }

    /// The slots of `node` on `level` and their distances (empty when the node is not on
    /// it).
    #[inline]
    fn slots(&self, node: u32, level: usize) -> (&[AtomicU32], &[AtomicU32]) {
        let node = node as usize;
        if level == 0 {
            let range = node * 2 * self.m..(node + 1) * 2 * self.m;
            return (&self.layer0[range.clone()], &self.layer0_distances[range]);
        }
        let start = self.upper_start[node] + (level - 1) * self.m;
        let end = self
            .upper_start
            .get(node + 1)
            .copied()
            .unwrap_or(self.upper.len());
        if start + self.m > end {
            return (&[], &[]);
        }
        let range = start..start + self.m;
        (&self.upper[range.clone()], &self.upper_distances[range])
    }

    /// Copies the links of `graph` (over the first nodes, with the same `m`).
    fn load(&self, graph: &Graph) {
        for (slot, &nb) in self.layer0.iter().zip(&graph.layer0) {
            slot.store(nb, Ordering::Relaxed);
        }
        for (l, layer) in graph.upper.iter().enumerate() {
            for (k, &node) in layer.nodes.iter().enumerate() {
                let from = layer.links.get(k * self.m..(k + 1) * self.m).unwrap_or(&[]);
                for (slot, &nb) in self.slots(node, l + 1).0.iter().zip(from) {
                    slot.store(nb, Ordering::Relaxed);
                }
            }
        }
    }

    #[inline]
    fn read(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        for slot in self.slots(node, level).0 {
            let nb = slot.load(Ordering::Relaxed);
            if nb == NONE {
                break;
            }
            out.push(nb);
        }
    }

    /// Replaces the list of `node` on `level` (the caller holds the node's lock).
    fn store(&self, node: u32, level: usize, list: &[u32]) {
        let (slots, distances) = self.slots(node, level);
        for (i, (slot, distance)) in slots.iter().zip(distances).enumerate() {
            slot.store(list.get(i).copied().unwrap_or(NONE), Ordering::Relaxed);
            distance.store(UNKNOWN, Ordering::Relaxed);
        }
    }

    /// [`Self::store`] with the links' distances.
    fn store_scored(&self, node: u32, level: usize, list: &[Candidate]) {
        let (slots, distances) = self.slots(node, level);
        for (i, (slot, distance)) in slots.iter().zip(distances).enumerate() {
            let (nb, d) = list
                .get(i)
                .map_or((NONE, UNKNOWN), |c| (c.row_id as u32, c.distance.to_bits()));
            slot.store(nb, Ordering::Relaxed);
            distance.store(d, Ordering::Relaxed);
        }
    }

    fn lock(&self, node: u32) -> std::sync::MutexGuard<'_, u32> {
        self.writers[node as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the list of `node` on `level` to `list`, chosen by the heuristic (ascending).
    fn write_locked(&self, node: u32, level: usize, list: &[Candidate], cap: usize) {
        let mut closed = self.lock(node);
        self.store_scored(node, level, list);
        set_closed(&mut closed, level, list.len() >= cap);
    }

    /// Adds a link `node → new` (`new.distance`: theirs) on `level`; when `node` has `cap`
    /// links already, its links are chosen again by the heuristic among them and `new`.
    fn link_back<S: GraphSpace>(
        &self,
        space: &S,
        node: u32,
        new: Candidate,
        level: usize,
        cap: usize,
        list: &mut Vec<Candidate>,
    ) {
        let mut closed = self.lock(node);
        let new_node = new.row_id as u32;
        let (slots, distances) = self.slots(node, level);
        list.clear();
        for (slot, distance) in slots.iter().zip(distances) {
            let nb = slot.load(Ordering::Relaxed);
            if nb == NONE {
                break;
            }
            if nb == new_node {
                return;
            }
            list.push(Candidate {
                distance: f32::from_bits(distance.load(Ordering::Relaxed)),
                row_id: u64::from(nb),
            });
        }
        if new_node == node {
            return;
        }
        let cap = cap.min(slots.len());
        if list.len() < cap {
            slots[list.len()].store(new_node, Ordering::Relaxed);
            distances[list.len()].store(new.distance.to_bits(), Ordering::Relaxed);
            return;
        }
        let chosen = if *closed & (1 << level) != 0 {
            match admit(space, list, new, cap) {
                Some(chosen) => chosen,
                None => return,
            }
        } else {
            let query = space.node_query(node);
            // (A self-link, which graphs built before this check could hold, is dropped.)
            list.retain(|c| c.row_id != u64::from(node));
            for c in list.iter_mut().filter(|c| c.distance.is_nan()) {
                c.distance = space.distance(&query, c.row_id as u32);
            }
            list.push(new);
            list.sort_unstable();
            select(space, list, cap)
        };
        self.store_scored(node, level, &chosen);
        set_closed(&mut closed, level, chosen.len() >= cap);
    }

    fn into_graph(self, m: usize, entry: u32, levels: Vec<u8>) -> Graph {
        let top = levels.iter().copied().max().unwrap_or(0);
        let layer0 = self.layer0.into_iter().map(AtomicU32::into_inner).collect();
        let upper_links: Vec<u32> = self.upper.into_iter().map(AtomicU32::into_inner).collect();
        let upper = (1..=usize::from(top))
            .map(|l| {
                let nodes: Vec<u32> = (0..levels.len() as u32)
                    .filter(|&i| usize::from(levels[i as usize]) >= l)
                    .collect();
                let mut slots = Vec::with_capacity(nodes.len() * m);
                for &i in &nodes {
                    let start = self.upper_start[i as usize] + (l - 1) * m;
                    slots.extend_from_slice(&upper_links[start..start + m]);
                }
                Layer {
                    nodes,
                    links: slots,
                }
            })
            .collect();
        Graph {
            m,
            entry,
            levels,
            layer0,
            upper,
        }
    }
}

/// Marks (or clears) `level`'s bit of a node's closed bits.
fn set_closed(bits: &mut u32, level: usize, closed: bool) {
    if closed {
        *bits |= 1 << level;
    } else {
        *bits &= !(1 << level);
    }
}

impl Graph {
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Links every node the entry cannot reach on layer 0 from the nearest node a walk
    /// towards it finds, and gives it the links an insert would choose now: the heuristic
    /// may drop a node from every list that held it (nodes linked early in a parallel build,
    /// when the graph held few and far nodes, or whose neighbours later chose nearer ones),
    /// and a node no walk reaches is never found, nor is a copy of it appended later (its
    /// insert finds other nodes). The new link goes in a free slot, or replaces the last
    /// link (lists hold the nearest first, save links added back since) whose node others
    /// also reach.
    fn reach_every_node<S: GraphSpace>(&mut self, space: &S, ef: usize) {
        let n = self.len();
        let m0 = 2 * self.m;
        if n < 2 || self.layer0.len() != n * m0 {
            return;
        }
        let mut reached = vec![false; n];
        let mut stack = Vec::new();
        self.mark_reached(self.entry, &mut reached, &mut stack);
        if reached.iter().all(|&r| r) {
            return;
        }
        let mut in_degree = vec![0u32; n];
        for &nb in &self.layer0 {
            if let Some(d) = in_degree.get_mut(nb as usize) {
                *d += 1;
            }
        }
        let mut visited = Visited::new(n);
        for node in 0..n as u32 {
            if reached[node as usize] {
                continue;
            }
            let query = space.node_query(node);
            let found = self.search(space, &query, ef, ef, &|_| true, &mut visited, Some(node));
            let chosen = select(space, &found, self.m);
            let own = node as usize * m0;
            if !chosen.is_empty() {
                for (k, slot) in self.layer0[own..own + m0].iter_mut().enumerate() {
                    if let Some(d) = in_degree.get_mut(*slot as usize) {
                        *d -= 1;
                    }
                    *slot = chosen.get(k).map_or(NONE, |c| c.row_id as u32);
                    if let Some(d) = in_degree.get_mut(*slot as usize) {
                        *d += 1;
                    }
                }
            }
            let linked = found
                .iter()
                .any(|c| self.link_to(c.row_id as u32, node, &mut in_degree));
            if linked {
                self.mark_reached(node, &mut reached, &mut stack);
            }
        }
    }

    /// Marks `from` and every node it leads to on layer 0.
    fn mark_reached(&self, from: u32, reached: &mut [bool], stack: &mut Vec<u32>) {
        let m0 = 2 * self.m;
        if reached.get(from as usize).is_none_or(|&r| r) {
            return;
        }
        reached[from as usize] = true;
        stack.push(from);
        while let Some(node) = stack.pop() {
            let start = node as usize * m0;
            for &nb in self.layer0[start..start + m0]
                .iter()
                .take_while(|&&nb| nb != NONE)
            {
                if let Some(r) = reached.get_mut(nb as usize) {
                    if !*r {
                        *r = true;
                        stack.push(nb);
                    }
                }
            }
        }
    }

    /// Adds the link `from → to` on layer 0 in a free slot, or in place of the last link
    /// whose node has other links to it; false when `from` has neither.
    fn link_to(&mut self, from: u32, to: u32, in_degree: &mut [u32]) -> bool {
        let m0 = 2 * self.m;
        let Some(slots) = self
            .layer0
            .get_mut(from as usize * m0..(from as usize + 1) * m0)
        else {
            return false;
        };
        if slots.contains(&to) {
            return true;
        }
        let slot = match slots.iter().position(|&nb| nb == NONE) {
            Some(free) => Some(free),
            None => slots
                .iter()
                .rposition(|&nb| in_degree.get(nb as usize).is_some_and(|&d| d >= 2)),
        };
        let Some(slot) = slot else {
            return false;
        };
        if let Some(d) = in_degree.get_mut(slots[slot] as usize) {
            *d -= 1;
        }
        slots[slot] = to;
        in_degree[to as usize] += 1;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Appends the links of `node` on `level` to `out`.
    #[inline]
    pub fn neighbours(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        let slots = if level == 0 {
            let m0 = 2 * self.m;
            self.layer0
                .get(node as usize * m0..(node as usize + 1) * m0)
        } else {
            self.upper.get(level - 1).and_then(|layer| {
                let k = layer.nodes.binary_search(&node).ok()?;
                layer.links.get(k * self.m..(k + 1) * self.m)
            })
        };
        if let Some(slots) = slots {
            out.extend(slots.iter().copied().take_while(|&s| s != NONE));
        }
    }

    /// The `want` nearest nodes `allow` admits (ascending), searching layer 0 with `ef`.
    /// `absent` names a node the search treats as not in the graph (never reached, never
    /// walked through): calibration searches for a node's own vector as a query from outside
    /// would be, not one its links lead straight to its neighbours from.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search<S: GraphSpace + ?Sized, A: Fn(u32) -> bool>(
        &self,
        space: &S,
        query: &S::Query,
        ef: usize,
        want: usize,
        allow: &A,
        visited: &mut Visited,
        absent: Option<u32>,
    ) -> Vec<Candidate> {
        if self.is_empty() || absent == Some(self.entry) {
            return Vec::new();
        }
        let mut buf = Vec::with_capacity(2 * self.m);
        let neighbours =
            |node: u32, level: usize, out: &mut Vec<u32>| self.neighbours(node, level, out);
        let neighbours = |node: u32, level: usize, out: &mut Vec<u32>| {
            neighbours(node, level, out);
            if let Some(absent) = absent {
                out.retain(|&n| n != absent);
            }
        };
        let mut ep = Candidate {
            distance: space.distance(query, self.entry),
            row_id: u64::from(self.entry),
        };
        for l in (1..=self.upper.len()).rev() {
            ep = greedy(space, query, ep, l, &neighbours, &mut buf);
        }
        visited.start(self.len());
        let mut found = search_layer(
            space,
            query,
            &[ep],
            ef.max(want),
            0,
            visited,
            &neighbours,
            allow,
            &mut buf,
        );
        found.truncate(want);
        found
    }

    /// Bytes held in memory.
    pub fn heap_bytes(&self) -> usize {
        self.levels.len()
            + self.layer0.len() * 4
            + self
                .upper
                .iter()
                .map(|l| (l.nodes.len() + l.links.len()) * 4)
                .sum::<usize>()
    }

    /// The stored form: entry (u32 LE), one level byte per node, layer 0's `n × 2m` slots,
    /// then per upper layer `m` slots for each node on it (nodes ascending), all u32 LE.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        out.extend_from_slice(&self.entry.to_le_bytes());
        out.extend_from_slice(&self.levels);
        for s in self
            .layer0
            .iter()
            .chain(self.upper.iter().flat_map(|l| l.links.iter()))
        {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    /// Decodes `n` nodes of a graph with `m` links per upper layer; `None` when the bytes do
    /// not hold exactly such a graph or it links outside it.
    pub fn decode(bytes: &[u8], n: usize, m: usize) -> Option<Graph> {
        if !(2..=1024).contains(&m) {
            return None;
        }
        if n == 0 {
            return bytes.is_empty().then(|| Graph {
                m,
                entry: 0,
                levels: Vec::new(),
                layer0: Vec::new(),
                upper: Vec::new(),
            });
        }
        let (entry, rest) = bytes.split_first_chunk::<4>()?;
        let entry = u32::from_le_bytes(*entry);
        let levels = rest.get(..n)?.to_vec();
        let top = levels.iter().copied().max()?;
        if top > MAX_LEVEL || levels.get(entry as usize) != Some(&top) {
            return None;
        }
        let on_level = |l: usize| levels.iter().filter(|&&v| usize::from(v) >= l).count();
        let slots = n.checked_mul(2 * m)?
            + (1..=usize::from(top))
                .map(|l| on_level(l) * m)
                .sum::<usize>();
        let body = &rest[n..];
        if body.len() != slots.checked_mul(4)? {
            return None;
        }
        let mut words = body
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        if body.chunks_exact(4).any(|c| {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            v != NONE && v as usize >= n
        }) {
            return None;
        }
        let layer0: Vec<u32> = words.by_ref().take(n * 2 * m).collect();
        let upper = (1..=usize::from(top))
            .map(|l| {
                let nodes: Vec<u32> = (0..n as u32)
                    .filter(|&i| usize::from(levels[i as usize]) >= l)
                    .collect();
                let links: Vec<u32> = words.by_ref().take(nodes.len() * m).collect();
                Layer { nodes, links }
            })
            .collect();
        Some(Graph {
            m,
            entry,
            levels,
            layer0,
            upper,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn walk_keys_order_as_candidates_do(
            a in any::<u32>(), b in any::<u32>(), x in any::<u32>(), y in any::<u32>(),
        ) {
            let (da, db) = (f32::from_bits(a), f32::from_bits(b));
            let ca = Candidate { distance: da, row_id: u64::from(x) };
            let cb = Candidate { distance: db, row_id: u64::from(y) };
            prop_assert_eq!(key_of(da, x).cmp(&key_of(db, y)), ca.cmp(&cb));
            prop_assert_eq!(distance_of(key_of(da, x)).to_bits(), a);
        }

        /// Offering one more node to a full list the heuristic chose gives what choosing again
        /// among all of them gives.
        #[test]
        fn admitting_to_a_chosen_list_is_choosing_again(
            coords in proptest::collection::vec((0u16..1000, 0u16..1000), 8..60),
            cap in 2usize..8,
        ) {
            let space = Points(coords.iter().map(|&(x, y)| [f32::from(x) / 10.0, f32::from(y) / 10.0]).collect());
            let (owner, new) = (0u32, coords.len() as u32 - 1);
            let query = space.node_query(owner);
            let score = |node: u32| Candidate { distance: space.distance(&query, node), row_id: u64::from(node) };
            let mut pool: Vec<Candidate> = (1..new).map(score).collect();
            pool.sort_unstable();
            let list = select(&space, &pool, cap);
            prop_assume!(list.len() == cap);
            let mut all = list.clone();
            all.push(score(new));
            all.sort_unstable();
            let again = select(&space, &all, cap);
            let admitted = admit(&space, &list, score(new), cap).unwrap_or(list);
            prop_assert_eq!(admitted, again);
        }
    }

    /// Points on a plane, compared by squared l2.
    struct Points(Vec<[f32; 2]>);

    impl GraphSpace for Points {
        type Query = [f32; 2];
        fn node_query(&self, node: u32) -> [f32; 2] {
            self.0[node as usize]
        }
        fn distance(&self, q: &[f32; 2], node: u32) -> f32 {
            let p = self.0[node as usize];
            (q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)
        }
    }

    fn points(n: usize) -> Points {
        Points(
            (0..n)
                .map(|i| {
                    let x = ((i * 7919) % 1000) as f32 / 10.0;
                    let y = ((i * 104_729) % 997) as f32 / 10.0;
                    [x, y]
                })
                .collect(),
        )
    }

    /// Graph settings of the tests (small graphs of plane points).
    const SMALL: HnswParams = HnswParams {
        m: 8,
        ef_construction: 64,
    };

    /// Recall@10 of `graph` over `space` on 100 queries spread over the plane.
    fn recall(graph: &Graph, space: &Points) -> f64 {
        let n = space.0.len();
        let mut visited = Visited::new(n);
        let mut hits = 0;
        for q in 0..100 {
            let query = [(q * 13 % 100) as f32 + 0.3, (q * 29 % 100) as f32 + 0.6];
            let got = graph.search(space, &query, 64, 10, &|_| true, &mut visited, None);
            let mut exact: Vec<Candidate> = (0..n as u32)
                .map(|i| Candidate {
                    distance: space.distance(&query, i),
                    row_id: u64::from(i),
                })
                .collect();
            exact.sort_unstable();
            let truth: Vec<u64> = exact[..10].iter().map(|c| c.row_id).collect();
            hits += got.iter().filter(|c| truth.contains(&c.row_id)).count();
        }
        hits as f64 / 1000.0
    }

    #[test]
    fn appended_nodes_join_a_graph_without_relinking_it() {
        let params = SMALL;
        let space = points(3000);
        // Grown in steps (as `optimize()` after appends), from one node up.
        let mut graph = build(&space, 1, params, 7, &|| {});
        for n in [2, 40, 1000, 1001, 3000] {
            let inserted = std::sync::atomic::AtomicUsize::new(0);
            let before = graph.clone();
            graph = extend(Some(&graph), &space, n, params, 7, &|| {
                inserted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            assert_eq!(graph.len(), n);
            assert_eq!(
                inserted.into_inner(),
                n - before.len(),
                "only new nodes linked"
            );
            assert_eq!(&graph.levels[..before.len()], &before.levels[..]);
            // Old nodes keep their links, new ones only added beside them or chosen anew
            // among them and the new node.
            let mut out = Vec::new();
            let m0 = 2 * graph.m;
            let kept = (0..before.len())
                .filter(|&i| {
                    out.clear();
                    graph.neighbours(i as u32, 0, &mut out);
                    before.layer0[i * m0..(i + 1) * m0]
                        .iter()
                        .take_while(|&&s| s != NONE)
                        .all(|nb| {
                            out.contains(nb) || out.iter().any(|&o| o as usize >= before.len())
                        })
                })
                .count();
            assert_eq!(kept, before.len());
        }
        // No node links to itself (concurrent inserts can lead a walk back to the node
        // being linked; it must not choose itself).
        let mut out = Vec::new();
        for node in 0..graph.len() as u32 {
            for level in 0..=usize::from(graph.levels[node as usize]) {
                out.clear();
                graph.neighbours(node, level, &mut out);
                assert!(
                    !out.contains(&node),
                    "node {node} links to itself on {level}"
                );
            }
        }
        // The entry is on the highest layer, whichever step brought it.
        let top = graph.levels.iter().copied().max();
        assert_eq!(Some(graph.levels[graph.entry as usize]), top);
        let grown = recall(&graph, &space);
        let whole = recall(&build(&space, 3000, params, 7, &|| {}), &space);
        assert!(
            grown >= 0.97 && grown >= whole - 0.02,
            "grown {grown} whole {whole}"
        );
        // It round-trips like a built graph.
        let mut bytes = Vec::new();
        graph.encode(&mut bytes);
        assert_eq!(Graph::decode(&bytes, 3000, graph.m), Some(graph));
    }

    /// Nodes reached from the entry on layer 0.
    fn reached_from_entry(graph: &Graph) -> usize {
        let mut reached = vec![false; graph.len()];
        graph.mark_reached(graph.entry, &mut reached, &mut Vec::new());
        reached.iter().filter(|&&r| r).count()
    }

    /// The heuristic can drop a node from every list that held it (in this plane's lattice,
    /// early nodes of a parallel build often are): builds, appends and drops leave every
    /// node reachable from the entry.
    #[test]
    fn every_node_is_reachable_from_the_entry() {
        let space = points(3000);
        for seed in 0..8 {
            let graph = build(&space, 2990, SMALL, seed, &|| {});
            assert_eq!(reached_from_entry(&graph), 2990, "built, seed {seed}");
            let graph = extend(Some(&graph), &space, 3000, SMALL, seed, &|| {});
            assert_eq!(reached_from_entry(&graph), 3000, "extended, seed {seed}");
            let kept: Vec<u32> = (0..3000).filter(|i| i % 5 != 0).collect();
            let remaining = Points(kept.iter().map(|&i| space.0[i as usize]).collect());
            let graph = without(&graph, &kept, &remaining);
            assert_eq!(
                reached_from_entry(&graph),
                kept.len(),
                "dropped, seed {seed}"
            );
        }
    }

    #[test]
    fn dropped_nodes_leave_a_searchable_graph() {
        let params = SMALL;
        let space = points(3000);
        let graph = build(&space, 3000, params, 7, &|| {});
        // Every seventh node, a block of 200, and the entry go.
        let kept: Vec<u32> = (0..3000u32)
            .filter(|&i| i % 7 != 3 && !(1000..1200).contains(&i) && i != graph.entry)
            .collect();
        let remaining = Points(kept.iter().map(|&i| space.0[i as usize]).collect());
        let repaired = without(&graph, &kept, &remaining);
        assert_eq!(repaired.len(), kept.len());
        for (new, &old) in kept.iter().enumerate() {
            assert_eq!(repaired.levels[new], graph.levels[old as usize]);
        }
        let top = repaired.levels.iter().copied().max();
        assert_eq!(Some(repaired.levels[repaired.entry as usize]), top);
        let mut out = Vec::new();
        for node in 0..kept.len() as u32 {
            out.clear();
            repaired.neighbours(node, 0, &mut out);
            assert!(out
                .iter()
                .all(|&nb| (nb as usize) < kept.len() && nb != node));
        }
        let fresh = build(&remaining, kept.len(), params, 7, &|| {});
        let (kept_recall, rebuilt) = (recall(&repaired, &remaining), recall(&fresh, &remaining));
        assert!(
            kept_recall >= 0.97 && kept_recall >= rebuilt - 0.02,
            "repaired {kept_recall} rebuilt {rebuilt}"
        );
        // Then appended nodes join it.
        let mut grown = remaining.0.clone();
        grown.extend((0..300).map(|i| [(i % 100) as f32 + 0.5, (i / 3) as f32 + 0.25]));
        let grown = Points(grown);
        let extended = extend(Some(&repaired), &grown, grown.0.len(), params, 7, &|| {});
        assert!(recall(&extended, &grown) >= 0.97);
        // Nothing kept: an empty graph.
        assert!(without(&graph, &[], &Points(Vec::new())).is_empty());
    }

    #[test]
    fn finds_nearest_neighbours_and_round_trips() {
        let space = points(3000);
        let graph = build(
            &space,
            3000,
            HnswParams {
                m: 8,
                ef_construction: 64,
            },
            7,
            &|| {},
        );
        let found = recall(&graph, &space);
        assert!(found >= 0.98, "recall {found}");
        let mut visited = Visited::new(3000);
        // Only admitted nodes come back, and still `want` of them.
        let even = graph.search(
            &space,
            &[50.0, 50.0],
            64,
            10,
            &|n| n % 2 == 0,
            &mut visited,
            None,
        );
        assert_eq!(even.len(), 10);
        assert!(even.iter().all(|c| c.row_id % 2 == 0));

        let mut bytes = Vec::new();
        graph.encode(&mut bytes);
        assert_eq!(Graph::decode(&bytes, 3000, 8).as_ref(), Some(&graph));
        assert!(Graph::decode(&bytes[..bytes.len() - 1], 3000, 8).is_none());
        assert!(Graph::decode(&bytes, 2999, 8).is_none());
        let mut bad = bytes.clone();
        let at = 4 + 3000 + 4;
        bad[at..at + 4].copy_from_slice(&5000u32.to_le_bytes());
        assert!(
            Graph::decode(&bad, 3000, 8).is_none(),
            "a link outside the graph"
        );
    }

    #[test]
    fn tiny_graphs() {
        let space = points(1);
        let graph = build(
            &space,
            1,
            HnswParams {
                m: 4,
                ef_construction: 8,
            },
            1,
            &|| {},
        );
        let mut visited = Visited::new(1);
        assert_eq!(
            graph
                .search(&space, &[0.0, 0.0], 10, 10, &|_| true, &mut visited, None)
                .len(),
            1
        );
        let empty = build(
            &space,
            0,
            HnswParams {
                m: 4,
                ef_construction: 8,
            },
            1,
            &|| {},
        );
        assert!(empty
            .search(&space, &[0.0, 0.0], 10, 10, &|_| true, &mut visited, None)
            .is_empty());
        let mut bytes = Vec::new();
        empty.encode(&mut bytes);
        assert!(bytes.is_empty());
        assert_eq!(Graph::decode(&bytes, 0, 4).as_ref(), Some(&empty));
    }
}
