//! Core: [`Fronts`] in a frank built without the `postgres` feature. Several fronts share one
//! PostgreSQL database; without PostgreSQL a front is always alone, so `Fronts` has no value
//! (an empty enum) and `Option<Fronts>` is always `None`. The methods mirror [`super`]'s
//! PostgreSQL `Fronts` so the callers compile unchanged; none of them can be called.

use super::*;

/// No value: a front without PostgreSQL has no other fronts.
#[derive(Clone)]
pub enum Fronts {}

impl Fronts {
    pub fn note_bind(&self, _: Holder) {
        match *self {}
    }

    pub fn bound_elsewhere_since(&self, _: u64, _: u64) -> bool {
        match *self {}
    }

    pub fn id(&self) -> u64 {
        match *self {}
    }

    pub async fn bind(&self, _: &SharedSession) -> anyhow::Result<u64> {
        match *self {}
    }

    pub async fn get(
        &self,
        _: u64,
        _: u64,
        _: u64,
        _: Duration,
    ) -> anyhow::Result<Option<SharedSession>> {
        match *self {}
    }

    pub fn detach(&self, _: u64, _: u64, _: u64) {
        match *self {}
    }

    pub async fn forget(&self, _: Vec<u64>, _: Vec<String>, _: u64) -> anyhow::Result<u64> {
        match *self {}
    }

    pub async fn holders(&self, _: Vec<u64>) -> anyhow::Result<Vec<Holder>> {
        match *self {}
    }

    pub async fn publish(&self, _: Vec<ViewsMessage>) -> anyhow::Result<()> {
        match *self {}
    }
}
