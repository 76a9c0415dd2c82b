//! Snapshot deltas (`SnapshotDelta` in `sync.proto`). The control plane
//! computes one per version, against the previous version, and sends it to
//! every node known to run that version; the node rebuilds the new config
//! from its current one. When one rule of thousands changes, the message,
//! its encoding, decoding and conversion cost in proportion to the change,
//! not to the config.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::config::Config;
use crate::convert::{
    backend_from_proto, blob_ref, limits_from_proto, listener_from_proto, remote_from_proto,
    rule_from_proto, source_from_proto, BlobRef, ConvertError,
};
use crate::proto;

/// Why a delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("malformed delta: {0}")]
    Malformed(String),
}

/// The delta from `base` (the config of `base_version` and `base_hash`) to
/// `next`, both in wire form (file sources carry their blob digests).
pub fn diff(
    base_version: u64,
    base_hash: &str,
    base: &proto::Config,
    version: u64,
    hash: &str,
    next: &proto::Config,
) -> proto::SnapshotDelta {
    let (removed, index, set) = diff_list(&base.listeners, &next.listeners, |l| &l.name);
    let listeners = proto::ListenerChanges {
        removed,
        index,
        set,
    };
    let (removed, index, set) = diff_list(&base.backends, &next.backends, |b| &b.name);
    let backends = proto::BackendChanges {
        removed,
        index,
        set,
    };
    let (removed, index, set) =
        diff_list(&base.content_sources, &next.content_sources, |s| &s.name);
    let content_sources = proto::ContentSourceChanges {
        removed,
        index,
        set,
    };
    let (removed, index, set) = diff_list(&base.rules, &next.rules, |r| &r.name);
    let rules = proto::RuleChanges {
        removed,
        index,
        set,
    };
    proto::SnapshotDelta {
        base_version,
        base_hash: base_hash.to_owned(),
        version,
        hash: hash.to_owned(),
        limits: next.limits,
        remote_content: next.remote_content,
        listeners: Some(listeners),
        backends: Some(backends),
        content_sources: Some(content_sources),
        rules: Some(rules),
    }
}

/// How many named items a delta sets or removes (for logs and tests).
pub fn size(delta: &proto::SnapshotDelta) -> usize {
    let l = delta
        .listeners
        .as_ref()
        .map_or(0, |c| c.removed.len() + c.set.len());
    let b = delta
        .backends
        .as_ref()
        .map_or(0, |c| c.removed.len() + c.set.len());
    let s = delta
        .content_sources
        .as_ref()
        .map_or(0, |c| c.removed.len() + c.set.len());
    let r = delta
        .rules
        .as_ref()
        .map_or(0, |c| c.removed.len() + c.set.len());
    l + b + s + r
}

/// The changes that turn the named list `old` into `new`: the names that
/// are gone, and the items (with their new index) that are new, changed or
/// moved. Unchanged items that keep their relative order are left out; the
/// largest such set is found as a longest increasing subsequence of their
/// old indexes, so moving one rule sends one rule.
fn diff_list<T: Clone + PartialEq>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
) -> (Vec<String>, Vec<u32>, Vec<T>) {
    let old_index: HashMap<&str, usize> =
        old.iter().enumerate().map(|(i, t)| (name(t), i)).collect();
    let new_names: HashSet<&str> = new.iter().map(&name).collect();
    let removed = old
        .iter()
        .map(&name)
        .filter(|n| !new_names.contains(n))
        .map(str::to_owned)
        .collect();
    // (new index, old index) of every unchanged item, in new order.
    let same: Vec<(usize, usize)> = new
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let j = *old_index.get(name(t))?;
            (old[j] == *t).then_some((i, j))
        })
        .collect();
    let keep = longest_increasing(&same, new.len());
    let mut index = Vec::new();
    let mut set = Vec::new();
    for (i, t) in new.iter().enumerate() {
        if !keep[i] {
            index.push(u32::try_from(i).unwrap_or(u32::MAX));
            set.push(t.clone());
        }
    }
    (removed, index, set)
}

/// Flags (by new index) the members of a longest subsequence of `pairs`
/// whose old indexes increase (patience sorting, O(n log n)).
fn longest_increasing(pairs: &[(usize, usize)], len: usize) -> Vec<bool> {
    // tails[k]: the pair ending the best increasing run of length k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; pairs.len()];
    for (k, &(_, j)) in pairs.iter().enumerate() {
        let pos = tails.partition_point(|&t| pairs[t].1 < j);
        if pos > 0 {
            prev[k] = Some(tails[pos - 1]);
        }
        if pos == tails.len() {
            tails.push(k);
        } else {
            tails[pos] = k;
        }
    }
    let mut keep = vec![false; len];
    let mut cur = tails.last().copied();
    while let Some(k) = cur {
        keep[pairs[k].0] = true;
        cur = prev[k];
    }
    keep
}

/// Applies `delta` to the config a node runs (`base`, whose file sources
/// refer to `base_blobs`) and returns the new config and its file blobs.
/// The caller has checked that it runs the delta's base version; the result
/// still goes through validation like any snapshot.
pub fn apply(
    base: &Config,
    base_blobs: &BTreeMap<String, BlobRef>,
    delta: proto::SnapshotDelta,
) -> Result<(Config, BTreeMap<String, BlobRef>), DeltaError> {
    let l = delta.listeners.unwrap_or_default();
    let b = delta.backends.unwrap_or_default();
    let s = delta.content_sources.unwrap_or_default();
    let r = delta.rules.unwrap_or_default();
    for (what, indexes, items) in [
        ("listeners", l.index.len(), l.set.len()),
        ("backends", b.index.len(), b.set.len()),
        ("content_sources", s.index.len(), s.set.len()),
        ("rules", r.index.len(), r.set.len()),
    ] {
        if indexes != items {
            return Err(DeltaError::Malformed(format!(
                "{what}: {indexes} indexes for {items} items"
            )));
        }
    }

    let mut blobs = base_blobs.clone();
    for name in &s.removed {
        blobs.remove(name);
    }
    for source in &s.set {
        match blob_ref(source) {
            Some(blob) => blobs.insert(source.name.clone(), blob),
            None => blobs.remove(&source.name),
        };
    }

    let listeners = l.set.into_iter().map(|x| Ok(listener_from_proto(x)));
    let backends = b
        .set
        .into_iter()
        .zip(&b.index)
        .map(|(x, &i)| backend_from_proto(i as usize, x));
    let sources = s
        .set
        .into_iter()
        .zip(&s.index)
        .map(|(x, &i)| source_from_proto(i as usize, x));
    let rules = r
        .set
        .into_iter()
        .zip(&r.index)
        .map(|(x, &i)| rule_from_proto(i as usize, x));
    let config = Config {
        listeners: patch(
            &base.listeners,
            |x| &x.name,
            &l.removed,
            &l.index,
            listeners,
        )?,
        limits: limits_from_proto(delta.limits),
        remote_content: remote_from_proto(delta.remote_content),
        backends: patch(&base.backends, |x| &x.name, &b.removed, &b.index, backends)?,
        content_sources: patch(
            &base.content_sources,
            |x| &x.name,
            &s.removed,
            &s.index,
            sources,
        )?,
        rules: patch(&base.rules, |x| &x.name, &r.removed, &r.index, rules)?,
    };
    Ok((config, blobs))
}

/// Rebuilds one named list: the base items neither removed nor set, in
/// their order, with every set item placed at its index.
fn patch<T: Clone>(
    base: &[T],
    name: impl Fn(&T) -> &str,
    removed: &[String],
    index: &[u32],
    set: impl Iterator<Item = Result<T, ConvertError>>,
) -> Result<Vec<T>, DeltaError> {
    // `apply` checked that `index` and `set` have the same length.
    let set: Vec<T> = set.collect::<Result<_, _>>()?;
    let dropped: HashSet<String> = removed
        .iter()
        .cloned()
        .chain(set.iter().map(|t| name(t).to_owned()))
        .collect();
    let mut kept = base.iter().filter(|t| !dropped.contains(name(t)));
    let mut set = index.iter().map(|&i| i as usize).zip(set).peekable();
    let mut out = Vec::with_capacity(base.len() + set.len());
    loop {
        if let Some((_, item)) = set.next_if(|(i, _)| *i == out.len()) {
            out.push(item);
            continue;
        }
        match kept.next() {
            Some(t) => out.push(t.clone()),
            None => break,
        }
    }
    match set.next() {
        None => Ok(out),
        Some((i, _)) => Err(DeltaError::Malformed(format!(
            "index {i} is out of order or past the end of a list of {}",
            out.len()
        ))),
    }
}

#[cfg(test)]
mod tests;
