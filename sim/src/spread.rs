//! How fast each slot spread once its first copy was verified somewhere: the part of a
//! fleet's time that no utilization figure shows. A crowd whose origin link is busy to
//! the end can still finish late because its last xorbs take seconds to reach every node.

use crate::node::Node;
use crate::params::Shape;

/// Per slot (file, slot index): when some node first held all of it, and when every
/// node then pulling and alive did. Sampled every [`EVERY_S`] simulated seconds.
#[derive(Default)]
pub struct SlotSpread {
    first_held: Vec<Vec<Option<f64>>>,
    all_held: Vec<Vec<Option<f64>>>,
    next_sample: f64,
    /// Node and file of every hold since the last sample. A slot nobody held can only
    /// come to be held where a hold happened (what nodes hold only grows), so a sample
    /// looks for first copies there instead of in every node: at 10,000 nodes that scan
    /// was almost a third of the serial part of a tick.
    grown: Vec<(usize, usize)>,
}

/// What [`SlotSpread`] measured, for the report.
pub struct SpreadFigures {
    /// Seconds from a slot's first verified copy to every pulling node holding it.
    pub p50_s: f64,
    pub max_s: f64,
}

/// Sampling interval: a slot takes seconds to spread, and a sample may look at every node.
const EVERY_S: f64 = 0.25;

impl SlotSpread {
    /// Whether [`SlotSpread::sample`] should run at `now`: a sample is due, or `last` (the
    /// run ends). Asked first, so the tick pays nothing between samples.
    pub fn due(&self, now: f64, last: bool) -> bool {
        last || now >= self.next_sample
    }

    /// Node `n` came to hold more of file `f` (or arrived holding it).
    pub fn grew(&mut self, n: usize, f: usize) {
        self.grown.push((n, f));
    }

    /// Samples at `now`. `pulling` are the live nodes that pull.
    pub fn sample(&mut self, now: f64, shape: &Shape, nodes: &[Node], pulling: &[usize]) {
        self.next_sample = now + EVERY_S;
        if self.first_held.is_empty() {
            self.first_held = shape
                .files
                .iter()
                .map(|f| vec![None; f.slots.len()])
                .collect();
            self.all_held = self.first_held.clone();
        }
        // Where a first copy may be, per file.
        let mut grown: Vec<Vec<usize>> = vec![Vec::new(); shape.files.len()];
        for (n, f) in self.grown.drain(..) {
            if let Some(g) = grown.get_mut(f) {
                g.push(n);
            }
        }
        for g in &mut grown {
            g.sort_unstable();
            g.dedup();
        }
        for (f, file) in shape.files.iter().enumerate() {
            for (k, &(a, b)) in file.slots.iter().enumerate() {
                if self.all_held[f][k].is_some() {
                    continue;
                }
                let holds = |n: &Node| {
                    n.files
                        .get(f)
                        .is_some_and(|fr| fr.public.holds_all(&[(a, b)]))
                };
                if self.first_held[f][k].is_none()
                    && grown[f].iter().any(|&n| nodes[n].alive && holds(&nodes[n]))
                {
                    self.first_held[f][k] = Some(now);
                }
                if self.first_held[f][k].is_some()
                    && !pulling.is_empty()
                    && pulling.iter().all(|&n| holds(&nodes[n]))
                {
                    self.all_held[f][k] = Some(now);
                }
            }
        }
    }

    pub fn figures(&self) -> SpreadFigures {
        let mut spans: Vec<f64> = self
            .first_held
            .iter()
            .flatten()
            .zip(self.all_held.iter().flatten())
            .filter_map(|(first, all)| Some(all.as_ref()? - first.as_ref()?))
            .collect();
        spans.sort_by(f64::total_cmp);
        SpreadFigures {
            p50_s: spans.get(spans.len() / 2).copied().unwrap_or(0.0),
            max_s: spans.last().copied().unwrap_or(0.0),
        }
    }
}
