//! Who a message is for: service ids, service types and the four addresses.
//!
//! A service *type* names what a service does (`calculator`); a service *id*
//! names one running instance of it. Both end up inside AMQP queue names and
//! topic routing keys, so they are restricted to `[A-Za-z0-9_-]`: a dot would
//! split a routing key and a `*` or `#` would act as a wildcard.

use std::fmt;
use std::sync::Arc;

/// The longest id or type name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 120;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What was being named (`service id`, `service type`, `method`).
        what: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{what} `{name}` is {len} bytes long; the limit is {max}")]
    TooLong {
        /// What was being named.
        what: &'static str,
        /// The refused name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character that is not allowed.
    #[error("{what} `{name}` contains {found:?}; use only {allowed}")]
    BadChar {
        /// What was being named.
        what: &'static str,
        /// The refused name.
        name: String,
        /// The first offending character.
        found: char,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
    /// Text that is not an address (see [`Address`]'s `FromStr`).
    #[error(
        "`{text}` is not an address; write instance(<id>), any(<type>), every(<type>) or all()"
    )]
    Address {
        /// The refused text.
        text: String,
    },
}

/// The bytes a name may hold: ASCII letters, digits, `-` and `_`.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0u8;
    loop {
        table[b as usize] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

/// Checks that `name` is not empty, at most `max` bytes long, and made of
/// ASCII bytes `ok` accepts (`allowed` describes them).
fn check_name(
    what: &'static str,
    name: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(u8) -> bool,
) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            what,
            name: name.to_owned(),
            len: name.len(),
            max,
        });
    }
    // The first byte refused starts a character (all before it are
    // ASCII), which the error names.
    if let Some(at) = name.bytes().position(|b| !ok(b)) {
        return Err(NameError::BadChar {
            what,
            name: name.to_owned(),
            found: name[at..].chars().next().unwrap_or_default(),
            allowed,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `name` and wraps it.
            ///
            /// # Errors
            /// [`NameError`] if the name is empty, longer than
            /// [`MAX_NAME_LEN`] or holds anything but `[A-Za-z0-9_-]`.
            pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
                let name = name.as_ref();
                // Bytes through a table, not chars: a reply's sender is
                // checked on every call.
                let ok = |b: u8| NAME_BYTES[usize::from(b)];
                check_name($what, name, MAX_NAME_LEN, "ASCII letters, digits, `-` and `_`", ok)?;
                Ok(Self(Arc::from(name)))
            }

            /// The name as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        /// Reads as the name, so `peer.id.as_deref() == Some("calc-1")`.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The id of one running service instance (`calc-7f3a`).
    ServiceId,
    "service id"
);
name_type!(
    /// The type of a service: what it does (`calculator`). All instances of
    /// a type share a work queue.
    ServiceType,
    "service type"
);

impl ServiceId {
    /// A fresh random id: a UUID v4 in its hyphenated form.
    #[must_use]
    pub fn random() -> Self {
        Self(Arc::from(uuid::Uuid::new_v4().to_string()))
    }
}

/// Who a request is for.
///
/// | address | delivered to | replies |
/// | --- | --- | --- |
/// | [`Address::Instance`] | that one instance | one |
/// | [`Address::Any`] | exactly one instance of the type (its work queue) | one |
/// | [`Address::Every`] | every instance of the type | many |
/// | [`Address::All`] | every instance of every type | many |
///
/// ```
/// use warren::Address;
///
/// # fn main() -> Result<(), warren::Error> {
/// let one = Address::instance("billing-7f3a")?; // routing key message.billing-7f3a
/// let any = Address::any("billing")?; // the type's work queue
/// let every = Address::every("billing")?; // message.billing
/// assert!(!one.is_multicast() && !any.is_multicast());
/// assert!(every.is_multicast() && Address::all().is_multicast());
///
/// // Names are checked: no spaces, dots or wildcards in a routing key part.
/// assert!(Address::any("bill ing").is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// One instance, by id: routing key `message.<id>`.
    Instance(ServiceId),
    /// Any one instance of a type: the type's work queue (competing consumers).
    Any(ServiceType),
    /// Every instance of a type: routing key `message.<type>`.
    Every(ServiceType),
    /// Every instance of every type: routing key `message.all`.
    All,
}

impl Address {
    /// One instance, by id.
    ///
    /// # Errors
    /// [`NameError`] if `id` is not a valid [`ServiceId`].
    pub fn instance(id: impl AsRef<str>) -> Result<Self, NameError> {
        ServiceId::new(id).map(Self::Instance)
    }

    /// Any one instance of a type (load-balanced).
    ///
    /// # Errors
    /// [`NameError`] if `service` is not a valid [`ServiceType`].
    pub fn any(service: impl AsRef<str>) -> Result<Self, NameError> {
        ServiceType::new(service).map(Self::Any)
    }

    /// Every instance of a type (scatter-gather).
    ///
    /// # Errors
    /// [`NameError`] if `service` is not a valid [`ServiceType`].
    pub fn every(service: impl AsRef<str>) -> Result<Self, NameError> {
        ServiceType::new(service).map(Self::Every)
    }

    /// Every instance of every type.
    #[must_use]
    pub fn all() -> Self {
        Self::All
    }

    /// Whether more than one instance may receive (and answer) a request.
    #[must_use]
    pub fn is_multicast(&self) -> bool {
        matches!(self, Self::Every(_) | Self::All)
    }

    /// Whether this address reaches instance `id` of `service`, as the
    /// broker routes it (`message.<id>`, `message.<type>`, `message.all`);
    /// `Local`, the HTTP endpoint and the HTTP peer registry route the same.
    pub(crate) fn reaches(&self, id: &ServiceId, service: &ServiceType) -> bool {
        match self {
            Self::Instance(want) => want == id,
            Self::Any(t) | Self::Every(t) => t == service,
            Self::All => true,
        }
    }
}

/// Reads an address as it prints: `instance(calc-1)`, `any(calc)`,
/// `every(calc)`, `all()` (or `all`).
///
/// ```
/// use warren::Address;
/// let a: Address = "any(calculator)".parse()?;
/// assert_eq!(a, Address::any("calculator")?);
/// assert!("calculator".parse::<Address>().is_err());
/// # Ok::<(), warren::NameError>(())
/// ```
impl std::str::FromStr for Address {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        if s == "all" || s == "all()" {
            return Ok(Self::All);
        }
        let bad = || NameError::Address { text: s.to_owned() };
        let (kind, rest) = s.split_once('(').ok_or_else(bad)?;
        let name = rest.strip_suffix(')').ok_or_else(bad)?;
        match kind {
            "instance" => Self::instance(name),
            "any" => Self::any(name),
            "every" => Self::every(name),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Instance(id) => write!(f, "instance({id})"),
            Self::Any(t) => write!(f, "any({t})"),
            Self::Every(t) => write!(f, "every({t})"),
            Self::All => f.write_str("all()"),
        }
    }
}

/// Who sent a message or answered it, as far as its headers say.
///
/// A name a peer sent that is not a valid [`ServiceId`] or [`ServiceType`]
/// (a foreign client's application name with a dot, say) reads as `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Peer {
    /// The sender's instance id, if it gave one.
    pub id: Option<ServiceId>,
    /// The sender's service type, if it gave one.
    pub service: Option<ServiceType>,
}

impl Peer {
    /// A peer of type `service` (if known), instance `id` (if known).
    #[must_use]
    pub fn new(service: Option<ServiceType>, id: Option<ServiceId>) -> Self {
        Self { id, service }
    }
}

/// A method name as sent on the wire, such as `Calculator.add`.
///
/// Any non-empty printable ASCII without spaces, at most 255 bytes (an AMQP
/// short string). Returns the name unchanged or a [`NameError`].
///
/// # Errors
/// [`NameError`] when the name is empty, too long, or holds a space or a
/// non-printable character.
pub fn check_method(name: &str) -> Result<(), NameError> {
    let allowed = "printable ASCII without spaces";
    check_name("method", name, 255, allowed, |b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_routing_key_syntax() {
        assert!(ServiceType::new("calculator").is_ok());
        assert!(ServiceId::new("calc_1-A").is_ok());
        for bad in ["a.b", "a*", "#", "a b", "é"] {
            let err = ServiceType::new(bad).unwrap_err();
            assert!(matches!(err, NameError::BadChar { .. }), "{bad}: {err}");
        }
        assert_eq!(
            ServiceId::new("").unwrap_err(),
            NameError::Empty { what: "service id" }
        );
        assert!(matches!(
            ServiceId::new("x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = ServiceType::new("a.b").unwrap_err().to_string();
        assert_eq!(
            msg,
            "service type `a.b` contains '.'; use only ASCII letters, digits, `-` and `_`"
        );
        // A character beyond ASCII is named whole.
        let msg = ServiceId::new("ab-\u{e9}1").unwrap_err().to_string();
        assert!(msg.contains("contains '\u{e9}'"), "{msg}");
    }

    #[test]
    fn methods() {
        assert!(check_method("Calculator.add").is_ok());
        assert!(check_method("").is_err());
        assert!(check_method("a b").is_err());
        assert!(check_method(&"m".repeat(256)).is_err());
    }

    #[test]
    fn multicast() {
        assert!(Address::every("t").unwrap().is_multicast());
        assert!(Address::all().is_multicast());
        assert!(!Address::any("t").unwrap().is_multicast());
        assert_eq!(Address::any("calc").unwrap().to_string(), "any(calc)");
    }
}
