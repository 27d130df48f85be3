//! How many replicas each of a Deployment's ReplicaSets gets: the strategy's bounds (maxSurge,
//! maxUnavailable), the new ReplicaSet's next size during a rolling update, and the
//! proportional resize of every active ReplicaSet when spec.replicas changes mid-rollout or
//! while paused. The one place ReplicaSets are resized, with the ScalingReplicaSet Event.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::context::{ControllerError, EventType};
use super::deployment::{available_replicas, rs_name, spec_replicas, Rollout};
use super::deployment_history::{
    by_creation, desired_replicas, max_replicas, set_replicas_annotations,
};

/// How a Deployment replaces its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// New pods come up while old ones go, within maxSurge and maxUnavailable.
    RollingUpdate,
    /// Every old pod goes before any new one comes.
    Recreate,
}

/// A Deployment spec's numbers with the API's defaults applied and percentages resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// spec.replicas (default 1).
    pub replicas: i32,
    /// spec.strategy.type (default RollingUpdate).
    pub strategy: Strategy,
    /// Pods above `replicas` a rolling update may run (rounded up); 0 for Recreate.
    pub max_surge: i32,
    /// Pods below `replicas` a rolling update may leave unavailable (rounded down, 1 when both
    /// bounds come to 0, at most `replicas`); 0 for Recreate.
    pub max_unavailable: i32,
    /// spec.minReadySeconds.
    pub min_ready_seconds: i32,
    /// spec.progressDeadlineSeconds (default 600); None when it is "never" (MaxInt32).
    pub progress_deadline: Option<i32>,
    /// spec.revisionHistoryLimit (default 10); None when unlimited (MaxInt32).
    pub history_limit: Option<i32>,
    /// spec.paused.
    pub paused: bool,
}

/// The API server's default for both rolling update bounds.
const DEFAULT_BOUND: &str = "25%";

impl Plan {
    /// The plan `spec` asks for, or why its strategy cannot be used.
    pub fn of(spec: &DeploymentSpec) -> Result<Plan, String> {
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let (kind, max_surge, max_unavailable) = match strategy.type_.as_deref() {
            None | Some("RollingUpdate") => {
                let rolling = strategy.rolling_update.unwrap_or_default();
                let default = IntOrString::String(DEFAULT_BOUND.to_string());
                let surge = scaled(
                    rolling.max_surge.as_ref().unwrap_or(&default),
                    replicas,
                    true,
                )?;
                let unavailable = scaled(
                    rolling.max_unavailable.as_ref().unwrap_or(&default),
                    replicas,
                    false,
                )?;
                // Rounding can take both to zero, which could never progress; like Kubernetes,
                // allow one unavailable pod rather than rely on surge capacity.
                let unavailable = if surge == 0 && unavailable == 0 {
                    1
                } else {
                    unavailable
                };
                let unavailable = if replicas == 0 {
                    0
                } else {
                    unavailable.min(replicas)
                };
                (Strategy::RollingUpdate, surge, unavailable)
            }
            Some("Recreate") => (Strategy::Recreate, 0, 0),
            Some(other) => return Err(format!("unexpected deployment strategy type: {other}")),
        };
        Ok(Plan {
            replicas,
            strategy: kind,
            max_surge,
            max_unavailable,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            progress_deadline: match spec.progress_deadline_seconds {
                None => Some(600),
                Some(i32::MAX) => None,
                Some(seconds) => Some(seconds),
            },
            history_limit: match spec.revision_history_limit {
                None => Some(10),
                Some(i32::MAX) => None,
                Some(limit) => Some(limit.max(0)),
            },
            paused: spec.paused.unwrap_or(false),
        })
    }

    /// The most replicas all ReplicaSets together may ask for: replicas + maxSurge.
    pub fn max_total(&self) -> i32 {
        self.replicas.saturating_add(self.max_surge)
    }
}

/// An int-or-percent bound as a count of `total` (GetScaledValueFromIntOrPercent).
fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: {s:?} is not a percentage")
                })?;
            let part = percent * i64::from(total);
            let count = if round_up {
                -((-part).div_euclid(100))
            } else {
                part.div_euclid(100)
            };
            Ok(count.clamp(0, i64::from(i32::MAX)) as i32)
        }
    }
}

impl Rollout<'_> {
    /// The size a rolling update may give the new ReplicaSet now (NewRSNewReplicas): up to
    /// replicas+maxSurge over all ReplicaSets, never above replicas. Recreate: replicas.
    pub(crate) fn new_rs_next_size(&self, new_rs_size: i32) -> i32 {
        if self.plan.strategy == Strategy::Recreate {
            return self.plan.replicas;
        }
        let others: i32 = self.old_rss.iter().map(spec_replicas).sum();
        let current = others + new_rs_size;
        if current >= self.plan.max_total() {
            return new_rs_size;
        }
        let room = (self.plan.max_total() - current).min(self.plan.replicas - new_rs_size);
        new_rs_size + room.max(0)
    }

    /// Resizes the ReplicaSet `name` to `size` if it differs (scaleReplicaSetAndRecordEvent).
    pub(crate) async fn scale_if_needed(
        &mut self,
        name: &str,
        size: i32,
    ) -> Result<bool, ControllerError> {
        match self.rs(name) {
            Some(rs) if spec_replicas(rs) != size => self.scale(name, size).await,
            _ => Ok(false),
        }
    }

    /// Writes `size` and the desired/max replicas annotations of the ReplicaSet `name` when
    /// either changed; true when the size did (then the ScalingReplicaSet Event is recorded).
    pub(crate) async fn scale(&mut self, name: &str, size: i32) -> Result<bool, ControllerError> {
        let Some(rs) = self.rs(name) else {
            return Ok(false);
        };
        let from = spec_replicas(rs);
        let mut updated = rs.clone();
        let annotated =
            set_replicas_annotations(&mut updated, self.plan.replicas, self.plan.max_total());
        if from == size && !annotated {
            return Ok(false);
        }
        updated.spec.get_or_insert_with(Default::default).replicas = Some(size);
        let stored = self.ctx.replace(&updated).await?;
        self.remember(stored);
        if from == size {
            return Ok(false);
        }
        let direction = if from < size { "up" } else { "down" };
        self.event(
            EventType::Normal,
            "ScalingReplicaSet",
            format!("Scaled {direction} replica set {name} from {from} to {size}"),
        );
        Ok(true)
    }

    /// Whether spec.replicas changed since the active ReplicaSets were last sized (their
    /// desired-replicas annotation), so the rollout must pause for a resize first.
    pub(crate) fn is_scaling_event(&self) -> bool {
        self.all_rss()
            .filter(|rs| spec_replicas(rs) > 0)
            .filter_map(desired_replicas)
            .any(|desired| desired != self.plan.replicas)
    }

    /// Kubernetes' `sync`: resize the ReplicaSets to spec.replicas without advancing the
    /// rollout, drop surplus history while paused, and report the counts.
    pub(crate) async fn sync_scale(&mut self) -> Result<(), ControllerError> {
        self.scale_replica_sets().await?;
        if self.plan.paused {
            self.cleanup_history().await?;
        }
        self.status = self.calculate_status();
        Ok(())
    }

    async fn scale_replica_sets(&mut self) -> Result<(), ControllerError> {
        let replicas = self.plan.replicas;
        if let Some(target) = self.active_or_latest() {
            return self.scale_if_needed(&target, replicas).await.map(drop);
        }
        let active: Vec<ReplicaSet> = self
            .all_rss()
            .filter(|rs| spec_replicas(rs) > 0)
            .cloned()
            .collect();
        if self.new_rs_saturated() {
            // Only old ones are left to go (e.g. after adopting a saturated new ReplicaSet).
            let new_name = self.new_rs.as_ref().map(rs_name);
            for old in active
                .iter()
                .map(rs_name)
                .filter(|name| Some(name) != new_name.as_ref())
            {
                self.scale_if_needed(&old, 0).await?;
            }
            return Ok(());
        }
        if self.plan.strategy == Strategy::RollingUpdate {
            for (name, size) in self.proportional_sizes(active) {
                self.scale(&name, size).await?;
            }
        }
        Ok(())
    }

    /// The one ReplicaSet to give every replica to when at most one is active: the active one,
    /// else the new one, else the newest old one (FindActiveOrLatest).
    fn active_or_latest(&self) -> Option<String> {
        let active: Vec<&ReplicaSet> = self.all_rss().filter(|rs| spec_replicas(rs) > 0).collect();
        match active.as_slice() {
            [] => self
                .new_rs
                .as_ref()
                .or_else(|| self.old_rss.iter().max_by(|a, b| by_creation(a, b)))
                .map(rs_name),
            [only] => Some(rs_name(only)),
            _ => None,
        }
    }

    /// The new ReplicaSet runs every replica, available, sized for the current spec.
    fn new_rs_saturated(&self) -> bool {
        let replicas = self.plan.replicas;
        self.new_rs.as_ref().is_some_and(|rs| {
            spec_replicas(rs) == replicas
                && desired_replicas(rs) == Some(replicas)
                && available_replicas(rs) == replicas
        })
    }

    /// Spreads the difference between replicas+maxSurge and what the active ReplicaSets ask
    /// for over them in proportion to their size (Kubernetes' proportional scaling): larger
    /// ones first, newer first when growing and older first when shrinking; the rounding
    /// leftover goes to the first.
    fn proportional_sizes(&self, mut active: Vec<ReplicaSet>) -> Vec<(String, i32)> {
        let total: i32 = active.iter().map(spec_replicas).sum();
        let allowed = if self.plan.replicas > 0 {
            self.plan.max_total()
        } else {
            0
        };
        let to_add = allowed - total;
        active.sort_by(|a, b| {
            let bigger_first = spec_replicas(b).cmp(&spec_replicas(a));
            let age = if to_add > 0 {
                by_creation(b, a)
            } else {
                by_creation(a, b)
            };
            bigger_first.then(age)
        });
        let mut added = 0;
        let mut sizes: BTreeMap<usize, i32> = BTreeMap::new();
        for (i, rs) in active.iter().enumerate() {
            let share = self.proportion(rs, to_add, added);
            sizes.insert(i, spec_replicas(rs) + share);
            added += share;
        }
        if to_add != 0 {
            if let Some(first) = sizes.get_mut(&0) {
                *first = (*first + to_add - added).max(0);
            }
        }
        active
            .iter()
            .enumerate()
            .map(|(i, rs)| (rs_name(rs), sizes.get(&i).copied().unwrap_or(0)))
            .collect()
    }

    /// This ReplicaSet's share of `to_add`, bounded by what is left (GetReplicaSetProportion).
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        let size = spec_replicas(rs);
        if size == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let left = to_add - added;
        match to_add.cmp(&0) {
            Ordering::Greater => fraction.min(left),
            _ => fraction.max(left),
        }
    }

    /// How much this ReplicaSet would grow (or shrink) if it kept its share of the
    /// deployment's size as recorded in its max-replicas annotation.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        let size = spec_replicas(rs);
        if self.plan.replicas == 0 {
            return -size;
        }
        let before = match max_replicas(rs) {
            Some(max) if max != 0 => max,
            // Without the annotation, the deployment's last known size stands in for it.
            _ => match self.deployment.status.as_ref().and_then(|s| s.replicas) {
                Some(replicas) if replicas != 0 => replicas,
                _ => return 0,
            },
        };
        let scaled = f64::from(size) * f64::from(self.plan.max_total()) / f64::from(before);
        scaled.round() as i32 - size
    }
}

#[cfg(test)]
#[path = "deployment_scale_tests.rs"]
mod tests;
