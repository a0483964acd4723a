//! What the SMTP session and the transports share about one message on its way: its envelope.
//! A module of its own so that `smtp` (which speaks it) and `transport` (which hands it over)
//! both depend on it and not on each other.

use lettre::Address;

/// The SMTP envelope of one message (RFC 5321 §3.3), apart from the message itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Where failure notices go: the From address, or a VERP address naming the delivery.
    pub from: Address,
    pub to: Address,
    /// When set, a server that offers DSN (RFC 3461) is asked for failure notices only
    /// (`NOTIFY=FAILURE`), carrying the headers only (`RET=HDRS`), with this `ENVID`.
    pub dsn_envid: Option<String>,
}
