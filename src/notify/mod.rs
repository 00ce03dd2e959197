//! `notify`'s domain: its `notify:` configuration (`config`), what is announced (`message`), the
//! Slack and webhook bodies (`payload`) and their delivery with retries (`deliver`).

pub(crate) mod config;
pub(crate) mod deliver;
pub(crate) mod message;
pub(crate) mod payload;
