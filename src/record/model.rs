//! The deployment record (seed 004 §8): its shape lives in the state contract
//! (`state::deployment_record`, which `schema/deployment-record.schema.json` is generated from);
//! here is what the record's readers and writers add to it.

pub(crate) use crate::state::deployment_record::*;
