//! The purchase request body, and a parser for its usual shape.
//!
//! serde_json spent ~1,800 instructions per purchase on this three-field
//! object, about a twelfth of the server's user time per admission.
//! [`PurchaseBody::parse_plain`] reads the plain shape clients send (keys
//! and strings without escapes, integers in decimal) in a few hundred, and
//! gives up on anything else: then serde decides, with its error messages.
//! A property test holds the two to the same answer wherever the plain
//! parser answers.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurchaseBody<'a> {
    /// Body mode only: the credential names the buyer in the other modes.
    #[serde(borrow, default)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(default = "one")]
    pub qty: u32,
    #[serde(borrow, default)]
    pub request_id: Option<Cow<'a, str>>,
}

fn one() -> u32 {
    1
}

impl<'a> PurchaseBody<'a> {
    /// Parses `{"user_id":"S","qty":N,"request_id":"S"}` (any order, any
    /// JSON whitespace, every key optional). `None` when the body is
    /// anything else, including valid JSON this does not read: escapes,
    /// non-ASCII, `null`, floats, exponents, repeated or unknown keys,
    /// integers out of range.
    pub(crate) fn parse_plain(body: &'a [u8]) -> Option<PurchaseBody<'a>> {
        let mut p = Plain { body, at: 0 };
        let mut user_id = None;
        let mut qty = None;
        let mut request_id = None;
        p.ws();
        p.byte(b'{')?;
        p.ws();
        if p.peek() == Some(b'}') {
            // `{}`: rare enough to leave to serde.
            return None;
        }
        loop {
            let key = p.string()?;
            p.ws();
            p.byte(b':')?;
            p.ws();
            match key {
                b"user_id" if user_id.is_none() => {
                    // Printable ASCII only (see `string`): valid UTF-8.
                    user_id = Some(std::str::from_utf8(p.string()?).ok()?);
                }
                b"qty" if qty.is_none() => qty = Some(u32::try_from(p.integer()?).ok()?),
                b"request_id" if request_id.is_none() => {
                    // Printable ASCII only (see `string`): valid UTF-8.
                    request_id = Some(std::str::from_utf8(p.string()?).ok()?);
                }
                _ => return None,
            }
            p.ws();
            match p.next()? {
                b',' => p.ws(),
                b'}' => break,
                _ => return None,
            }
        }
        p.ws();
        if p.at != body.len() {
            return None;
        }
        Some(PurchaseBody {
            user_id: user_id.map(Cow::Borrowed),
            qty: qty.unwrap_or(1),
            request_id: request_id.map(Cow::Borrowed),
        })
    }
}

struct Plain<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Plain<'a> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON whitespace.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The bytes of a string of printable ASCII without escapes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let rest = &self.body[self.at..];
        let len = rest.iter().position(|&b| b == b'"')?;
        let s = &rest[..len];
        if !s.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'\\') {
            return None;
        }
        self.at += len + 1;
        Some(s)
    }

    /// A non-negative decimal integer that fits a u64, as JSON writes it
    /// (no leading zeros) and not followed by a fraction or an exponent.
    fn integer(&mut self) -> Option<u64> {
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.body[start] == b'0') {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde(body: &[u8]) -> Option<PurchaseBody<'_>> {
        serde_json::from_slice(body).ok()
    }

    #[test]
    fn reads_the_usual_shapes() {
        for (body, want) in [
            (
                r#"{"user_id":"123456789012","qty":1,"request_id":"w1-7"}"#,
                (Some("123456789012"), 1, Some("w1-7")),
            ),
            (r#"{"user_id":"u_81723"}"#, (Some("u_81723"), 1, None)),
            (
                " {\n\t\"qty\" : 3 ,\"user_id\":\"0\" ,\r\"request_id\":\"a b\"} ",
                (Some("0"), 3, Some("a b")),
            ),
            (r#"{"qty":2}"#, (None, 2, None)),
            (
                r#"{"user_id":"550e8400-e29b-41d4-a716-446655440000"}"#,
                (Some("550e8400-e29b-41d4-a716-446655440000"), 1, None),
            ),
        ] {
            let got = PurchaseBody::parse_plain(body.as_bytes()).expect(body);
            assert_eq!(
                (got.user_id.as_deref(), got.qty, got.request_id.as_deref()),
                want,
                "{body}"
            );
            assert_eq!(Some(got), serde(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn leaves_the_rest_to_serde() {
        for body in [
            r#"{}"#,
            r#"{"user_id":"1","user_id":"2"}"#,
            r#"{"user_id":1}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":"é"}"#,
            r#"{"user_id":"a\u0041"}"#,
            r#"{"user_id":"1","qty":01}"#,
            r#"{"user_id":"1","qty":-1}"#,
            r#"{"user_id":"1","qty":1.0}"#,
            r#"{"user_id":"1","qty":1e3}"#,
            r#"{"user_id":"1","qty":4294967296}"#,
            r#"{"user_id":"1","request_id":null}"#,
            r#"{"user_id":"1","request_id":"a\"b"}"#,
            r#"{"user_id":"1","request_id":"é"}"#,
            r#"{"user_id":"1","extra":true}"#,
            r#"{"user_id":"1",}"#,
            r#"{"user_id":"1"} x"#,
            r#"{"user_id":"1""#,
            r#"{"user\u005fid":"1"}"#,
            "",
            "not json",
        ] {
            assert_eq!(PurchaseBody::parse_plain(body.as_bytes()), None, "{body}");
        }
    }

    /// Bodies built from pieces, mostly plain, sometimes not, and then
    /// maybe damaged: wherever the plain parser answers, serde answers the
    /// same. (About a fifth of them are plain enough for the plain parser.)
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let ws = prop::sample::select(vec!["", "", "", " ", "\n", "\t ", "\r"]);
        let number = prop_oneof![
            8 => any::<u64>().prop_map(|n| n.to_string()),
            8 => (0u64..20).prop_map(|n| n.to_string()),
            1 => Just("01".to_string()),
            1 => Just("-3".to_string()),
            1 => Just("1.5".to_string()),
            1 => Just("2e2".to_string()),
            1 => Just("18446744073709551616".to_string()),
            1 => Just("4294967296".to_string()),
            1 => Just("null".to_string()),
        ];
        let string = prop_oneof![
            8 => "[a-z0-9-]{1,12}".prop_map(|s| format!("\"{s}\"")),
            4 => "[ -~]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            1 => Just("\"é\"".to_string()),
            1 => Just("\"a\\u0041\"".to_string()),
            1 => Just("null".to_string()),
            1 => Just("7".to_string()),
        ];
        let key = prop_oneof![
            12 => Just("user_id"),
            6 => Just("qty"),
            6 => Just("request_id"),
            1 => Just("other"),
            1 => Just("user\\u005fid"),
        ];
        let member = (key, ws.clone(), ws.clone(), number, string).prop_map(
            |(key, w1, w2, number, string)| {
                let value = if key == "qty" { number } else { string };
                (key, format!("\"{key}\"{w1}:{w2}{value}"))
            },
        );
        (
            prop::collection::vec((member, ws.clone(), ws.clone()), 0..4),
            prop::bool::weighted(0.9),
            ws.clone(),
            ws,
            prop::option::weighted(0.2, (any::<prop::sample::Index>(), any::<u8>())),
        )
            .prop_map(|(members, unique, lead, trail, damage)| {
                let mut seen = Vec::new();
                let inner: Vec<String> = members
                    .into_iter()
                    // Mostly one of each key (repeats are refused by both).
                    .filter(|((key, _), _, _)| {
                        !unique
                            || !seen.contains(key) && {
                                seen.push(*key);
                                true
                            }
                    })
                    .map(|((_, m), a, b)| format!("{a}{m}{b}"))
                    .collect();
                let mut body = format!("{lead}{{{}}}{trail}", inner.join(",")).into_bytes();
                if let Some((at, byte)) = damage {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
                body
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn agrees_with_serde(body in body()) {
            if let Some(plain) = PurchaseBody::parse_plain(&body) {
                prop_assert_eq!(Some(plain), serde(&body));
            }
        }
    }

    /// Any JSON that is not an object at the top level, including what
    /// serde's derived struct would read positionally (`[731]`,
    /// `[733,1,"rid-arr"]`).
    fn non_object() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("1.5".to_string()),
        ];
        let value = leaf.prop_recursive(3, 16, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(",")))
        });
        (value, "[ \n\t]{0,2}").prop_map(|(v, ws)| format!("{ws}{v}").into_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The whole purchase path's parsing (the plain parser, then the
        /// object-only serde fallback) agrees with itself on any body, and
        /// takes only objects.
        #[test]
        fn fast_path_and_fallback_agree(body in prop_oneof![body(), non_object()]) {
            let fallback = crate::http::body::parse::<PurchaseBody<'_>>(&body).ok();
            let taken = fallback.is_some();
            if let Some(plain) = PurchaseBody::parse_plain(&body) {
                prop_assert_eq!(Some(plain), fallback);
            }
            if taken {
                prop_assert_eq!(body.trim_ascii_start().first(), Some(&b'{'));
            }
        }

        #[test]
        fn non_objects_are_refused(body in non_object()) {
            prop_assert_eq!(PurchaseBody::parse_plain(&body), None);
            prop_assert!(crate::http::body::parse::<PurchaseBody<'_>>(&body).is_err());
        }
    }

    /// The plain parser does answer for what wrk and the load test send,
    /// so the fast path is the one taken.
    #[test]
    fn answers_for_generated_traffic() {
        let body = br#"{"user_id":"123456789012","qty":1,"request_id":"w2-99"}"#;
        assert!(PurchaseBody::parse_plain(body).is_some());
        let body = br#"{"qty":1,"request_id":"w2-99"}"#;
        assert!(PurchaseBody::parse_plain(body).is_some());
    }
}
