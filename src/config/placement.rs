//! Which broker URL a connection tries first: spreading processes over the
//! nodes of a cluster.

use crate::error::Error;

/// The order in which a connection tries its broker URLs ([`Config::url_order`](super::Config::url_order)).
///
/// Whatever the order, a round of attempts tries every URL once, and after
/// losing a connection the next round starts at the URL *after* the one
/// lost (its node is likely the one that died).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlOrder {
    /// Each connection starts at a URL of its own, picked at random when it
    /// is created, then goes on in the listed order: processes given the
    /// same list of a cluster's nodes spread over them, so that the loss of
    /// one node moves only its share of the clients.
    #[default]
    Spread,
    /// Every connection starts at the first URL: for a preferred node, with
    /// the others as standbys.
    InOrder,
}

impl UrlOrder {
    /// The index of the URL to try first, among `n`.
    pub(crate) fn first(self, n: usize) -> usize {
        match self {
            Self::InOrder => 0,
            Self::Spread => (super::retry::random() * n as f64) as usize % n.max(1),
        }
    }
}

impl std::str::FromStr for UrlOrder {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "spread" => Ok(Self::Spread),
            "in-order" | "inorder" => Ok(Self::InOrder),
            other => Err(Error::Config(format!(
                "`{other}` is not a URL order; use `spread` or `in-order`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_starts_at_the_first_url() {
        assert_eq!(UrlOrder::InOrder.first(3), 0);
    }

    #[test]
    fn spread_starts_anywhere_in_range() {
        let firsts: std::collections::BTreeSet<usize> =
            (0..200).map(|_| UrlOrder::Spread.first(3)).collect();
        assert_eq!(firsts, [0, 1, 2].into());
        assert_eq!(UrlOrder::Spread.first(1), 0);
    }

    #[test]
    fn parses_both_names_and_refuses_others() {
        assert_eq!("spread".parse::<UrlOrder>().unwrap(), UrlOrder::Spread);
        assert_eq!(" In_Order ".parse::<UrlOrder>().unwrap(), UrlOrder::InOrder);
        assert!(matches!(
            "random".parse::<UrlOrder>(),
            Err(Error::Config(_))
        ));
    }
}
