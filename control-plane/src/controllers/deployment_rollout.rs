//! One step of a rollout, by strategy. RollingUpdate: grow the new ReplicaSet within
//! replicas+maxSurge, else shrink old ones while replicas-maxUnavailable stay available (old
//! ReplicaSets' unavailable pods first). Recreate: shrink every old ReplicaSet to zero, wait
//! until their pods are gone, then create or grow the new one. Each step is recomputed from
//! what is stored, so a step cut short is simply taken again.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::context::{controller_of, ControllerError};
use super::deployment::{available_replicas, rs_name, spec_replicas, status_replicas, Rollout};
use super::deployment_history::by_creation;
use super::pods;
use super::reconciler::Action;

impl Rollout<'_> {
    /// A rolling update step (rolloutRolling).
    pub(crate) async fn rollout_rolling(&mut self) -> Result<Action, ControllerError> {
        self.create_new_rs().await?;
        if self.grow_new_rs().await? || self.shrink_old_rss().await? {
            return Ok(self.sync_rollout_status());
        }
        if self.complete(&self.status) {
            self.cleanup_history().await?;
        }
        Ok(self.sync_rollout_status())
    }

    /// Sizes the new ReplicaSet towards spec.replicas as far as maxSurge allows
    /// (reconcileNewReplicaSet); true when it changed.
    async fn grow_new_rs(&mut self) -> Result<bool, ControllerError> {
        let Some(new_rs) = &self.new_rs else {
            return Ok(false);
        };
        let (name, size) = (rs_name(new_rs), spec_replicas(new_rs));
        let wanted = self.plan.replicas;
        if size == wanted {
            return Ok(false);
        }
        let next = if size > wanted {
            wanted
        } else {
            self.new_rs_next_size(size)
        };
        self.scale_if_needed(&name, next).await
    }

    /// Shrinks old ReplicaSets as far as availability allows (reconcileOldReplicaSets); true
    /// when any changed.
    async fn shrink_old_rss(&mut self) -> Result<bool, ControllerError> {
        let mut active: Vec<ReplicaSet> = self
            .old_rss
            .iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .cloned()
            .collect();
        if active.is_empty() {
            return Ok(false);
        }
        active.sort_by(by_creation);
        let names: Vec<String> = active.iter().map(rs_name).collect();
        let all_pods: i32 = self.all_rss().map(spec_replicas).sum();
        let min_available = self.plan.replicas - self.plan.max_unavailable;
        let new_unavailable = self
            .new_rs
            .as_ref()
            .map_or(0, |rs| spec_replicas(rs) - available_replicas(rs));
        // Pods that may go without the new ReplicaSet's pending pods dipping below the floor.
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.drop_unhealthy(&names, max_scaled_down).await?;
        let scaled = self.drop_available(&names, min_available).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Removes old ReplicaSets' unavailable pods first, oldest ReplicaSet first, at most
    /// `limit` (cleanupUnhealthyReplicas): they serve nobody and would block the rollout.
    async fn drop_unhealthy(
        &mut self,
        names: &[String],
        limit: i32,
    ) -> Result<i32, ControllerError> {
        let mut dropped = 0;
        for name in names {
            if dropped >= limit {
                break;
            }
            let Some(rs) = self.rs(name) else {
                continue;
            };
            let (size, available) = (spec_replicas(rs), available_replicas(rs));
            if size == 0 || size <= available {
                continue;
            }
            let count = (limit - dropped).min(size - available);
            self.scale_if_needed(name, size - count).await?;
            dropped += count;
        }
        Ok(dropped)
    }

    /// Shrinks old ReplicaSets, oldest first, by what is available beyond
    /// replicas-maxUnavailable (scaleDownOldReplicaSetsForRollingUpdate).
    async fn drop_available(
        &mut self,
        names: &[String],
        min_available: i32,
    ) -> Result<i32, ControllerError> {
        let available: i32 = names
            .iter()
            .filter_map(|name| self.rs(name))
            .chain(self.new_rs.iter())
            .map(available_replicas)
            .sum();
        if available <= min_available {
            return Ok(0);
        }
        let budget = available - min_available;
        let mut dropped = 0;
        for name in names {
            if dropped >= budget {
                break;
            }
            let Some(size) = self.rs(name).map(spec_replicas).filter(|size| *size > 0) else {
                continue;
            };
            let count = size.min(budget - dropped);
            self.scale_if_needed(name, size - count).await?;
            dropped += count;
        }
        Ok(dropped)
    }

    /// A Recreate step (rolloutRecreate).
    pub(crate) async fn rollout_recreate(&mut self) -> Result<Action, ControllerError> {
        let active: Vec<String> = self
            .old_rss
            .iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .map(rs_name)
            .collect();
        let mut scaled_down = false;
        for name in &active {
            scaled_down |= self.scale_if_needed(name, 0).await?;
        }
        if scaled_down || self.old_pods_running()? {
            return Ok(self.sync_rollout_status());
        }
        self.create_new_rs().await?;
        if let Some(name) = self.new_rs.as_ref().map(rs_name) {
            self.scale_if_needed(&name, self.plan.replicas).await?;
        }
        if self.complete(&self.status) {
            self.cleanup_history().await?;
        }
        Ok(self.sync_rollout_status())
    }

    /// Whether an old ReplicaSet still has pods that have not finished, terminating ones
    /// included: Recreate promises old and new pods never run together.
    fn old_pods_running(&self) -> Result<bool, ControllerError> {
        if self.old_rss.iter().map(status_replicas).sum::<i32>() > 0 {
            return Ok(true);
        }
        for rs in &self.old_rss {
            let Some(uid) = rs.metadata.uid.as_deref() else {
                continue;
            };
            let running = self
                .ctx
                .owned::<Pod>(self.namespace(), uid)?
                .iter()
                .filter(|pod| controller_of(&pod.metadata).is_some_and(|r| r.uid == uid))
                .any(|pod| !pods::is_finished(pod));
            if running {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
#[path = "deployment_rollout_tests.rs"]
mod tests;
