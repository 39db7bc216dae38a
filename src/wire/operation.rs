//! The request types' names (sans-I/O): one enum, one table. The name is the envelope's
//! `type` (docs/PROTOCOL.md §Requests), the `operation` a request MAC covers
//! ([`super::reqmac`]) and the `op` label of the vendor's request metrics. Every other module
//! names an operation through [`Operation`], never as a string literal.

/// Declares [`Operation`] from one table of `Variant => "wire_name"`: the enum, [`Operation::ALL`]
/// and [`Operation::as_str`] all come from it, so a name cannot be missing or differ.
macro_rules! operations {
    ($($variant:ident => $name:literal,)*) => {
        /// One request type of the protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Operation {
            $($variant,)*
        }

        impl Operation {
            /// Every operation, in the table's order.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            /// The wire name (`clock_check`, `refund_decide`, …): ASCII lowercase and `_`, at
            /// most [`super::reqmac::OPERATION_BYTES_MAX`] bytes.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)*
                }
            }
        }
    };
}

operations! {
    Enroll => "enroll",
    Login => "login",
    Resume => "resume",
    Ping => "ping",
    ClockCheck => "clock_check",
    Balance => "balance",
    Quote => "quote",
    Fund => "fund",
    Authorize => "authorize",
    Commit => "commit",
    Void => "void",
    Statement => "statement",
    RefundRequest => "refund_request",
    Piece => "piece",
    Pieces => "pieces",
    PrinterStatus => "printer_status",
    SubscribeTerminals => "subscribe_terminals",
    Scan => "scan",
    Tender => "tender",
    DayReport => "day_report",
    RefundsAwaiting => "refunds_awaiting",
    RefundDecide => "refund_decide",
    Bundles => "bundles",
    BundleFile => "bundle_file",
}

impl Operation {
    /// The operation of a wire name (exact bytes); `None` for a name this protocol does not
    /// have.
    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.as_str() == name)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_to_one_and_parse_back() {
        let mut names = std::collections::BTreeSet::new();
        for &op in Operation::ALL {
            let name = op.as_str();
            assert!(names.insert(name), "{name} twice");
            assert_eq!(Operation::parse(name), Some(op));
            assert!(name.len() <= crate::wire::reqmac::OPERATION_BYTES_MAX);
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!(Operation::ALL.len(), 24);
        // The contract names each one (docs/PROTOCOL.md §Requests).
        let protocol = include_str!("../../docs/PROTOCOL.md");
        for op in Operation::ALL {
            assert!(
                protocol.contains(&format!("`{op}`")),
                "{op} not in PROTOCOL.md"
            );
        }
        assert_eq!(Operation::parse("Fund"), None);
        assert_eq!(Operation::parse("fund "), None);
        assert_eq!(Operation::parse(""), None);
    }
}
