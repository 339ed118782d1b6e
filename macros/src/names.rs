//! Names on the wire: the service type and method names, checked at
//! compile time with the rules `warren` applies at run time.

/// The longest service type, as `warren::MAX_NAME_LEN`.
const MAX_TYPE_LEN: usize = 120;
/// The longest method name: an AMQP short string.
const MAX_METHOD_LEN: usize = 255;

/// `UserProfile` → `user_profile`, `HTTPServer` → `http_server`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower);
            if boundary && prev != '_' {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Why `name` is not a valid service type, if it is not one. Mirrors
/// `warren::ServiceType::new`: `[A-Za-z0-9_-]`, 1 to 120 bytes.
pub(crate) fn service_type_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the service type must not be empty".into());
    }
    if name.len() > MAX_TYPE_LEN {
        return Some(format!(
            "the service type `{name}` is {} bytes long; the limit is {MAX_TYPE_LEN}",
            name.len()
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        .map(|c| {
            format!(
                "the service type `{name}` contains {c:?}; \
                 use only ASCII letters, digits, `-` and `_`"
            )
        })
}

/// Why `name` is not a valid method name, if it is not one. Mirrors
/// `warren::check_method`: printable ASCII without spaces, 1 to
/// 255 bytes.
pub(crate) fn method_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the method name must not be empty".into());
    }
    if name.len() > MAX_METHOD_LEN {
        return Some(format!(
            "the method name is {} bytes long; the limit is {MAX_METHOD_LEN}",
            name.len()
        ));
    }
    name.chars().find(|c| !c.is_ascii_graphic()).map(|c| {
        format!("the method name `{name}` contains {c:?}; use printable ASCII without spaces")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases_trait_names() {
        for (from, to) in [
            ("Calculator", "calculator"),
            ("UserProfile", "user_profile"),
            ("HTTPServer", "http_server"),
            ("Api2Gateway", "api2_gateway"),
            ("Already_Snake", "already_snake"),
            ("X", "x"),
        ] {
            assert_eq!(snake_case(from), to, "{from}");
        }
    }

    #[test]
    fn checks_names_like_warren() {
        assert_eq!(service_type_problem("user_profile-2"), None);
        assert!(service_type_problem("a.b").unwrap().contains("'.'"));
        assert!(service_type_problem("").is_some());
        assert!(service_type_problem(&"x".repeat(121)).is_some());
        assert_eq!(method_problem("Calculator.sum"), None);
        assert!(method_problem("a b").is_some());
        assert!(method_problem("").is_some());
    }
}
